// Seccomp state of the dumped threads (ENGINE.md §3): the mode from /proc/TID/status (`Seccomp`), and in filter
// mode every classic-BPF program of the thread's chain with PTRACE_SECCOMP_GET_FILTER (Linux 4.4; index 0 is
// the oldest: the kernel counts from the root of the chain) and the flags it was installed with from
// PTRACE_SECCOMP_GET_METADATA (4.16).
//
// seccomp.img (CRIU's layout): one SeccompEntry whose seccomp_filters are numbered from 0 in the order they
// are written; each filter names the one installed before it by `prev` (absent for the first of a chain).
// thread_core.seccomp_filter is the number of the thread's newest filter. Filters are inherited on fork and
// shared by TSYNC, so equal chains (same programs, flags and predecessors) are written once and shared.
using Crest.Engine.Dump;
using Crest.Images.Protos;
using Crest.Kernel.Proc;
using Crest.Kernel.Ptrace;
using Google.Protobuf;

namespace Crest.Engine.Processes;

/// <summary>The filters of the dumped tasks, in seccomp.img order, with equal chains shared.</summary>
internal sealed class SeccompTable
{
    /// <summary>SECCOMP_MODE_STRICT / SECCOMP_MODE_FILTER as /proc/PID/status shows them.</summary>
    public const int ModeStrict = 1, ModeFilter = 2;

    /// <summary>Longest chain read before giving up (the kernel caps a chain's total at 32768 instructions).</summary>
    private const int MaxChain = 4096;

    private readonly List<SeccompFilter> _filters = [];
    private readonly Dictionary<(uint? Prev, ulong Flags, ByteString Program), uint> _known = [];

    /// <summary>Number of filters collected so far; seccomp.img is written only when there is one.</summary>
    public int Count => _filters.Count;

    public SeccompEntry Entry
    {
        get
        {
            var entry = new SeccompEntry();
            entry.SeccompFilters.AddRange(_filters);
            return entry;
        }
    }

    /// <summary>
    /// Fill the seccomp fields of <paramref name="thread"/> for the stopped thread <paramref name="tracee"/>,
    /// adding its filters to the table.
    /// </summary>
    public void Describe(Tracee tracee, ProcStatus status, ThreadCoreEntry thread)
    {
        switch (status.Seccomp ?? 0)
        {
            case 0:
                thread.SeccompMode = SeccompMode.Disabled;
                return;
            case ModeStrict:
                thread.SeccompMode = SeccompMode.Strict;
                return;
            case ModeFilter:
                thread.SeccompMode = SeccompMode.Filter;
                thread.SeccompFilter = AddChain(tracee);
                return;
            case var mode:
                throw new DumpException($"Task {tracee.Tid}: unknown seccomp mode {mode} in /proc/{tracee.Tid}/status.");
        }
    }

    private uint AddChain(Tracee tracee)
    {
        var chain = new List<(byte[] Program, ulong Flags)>();
        for (int index = 0; ; index++)
        {
            if (index == MaxChain)
                throw new DumpException($"Task {tracee.Tid}: more than {MaxChain} seccomp filters.");
            byte[]? program = tracee.GetSeccompFilter(index);
            if (program is null) break;
            chain.Add((program, tracee.GetSeccompFilterFlags(index)));
        }
        if (chain.Count == 0)
            throw new DumpException($"Task {tracee.Tid} is in seccomp filter mode but PTRACE_SECCOMP_GET_FILTER returned no filter.");
        uint? prev = null;
        for (int i = 0; i < chain.Count; i++)
        {
            var program = ByteString.CopyFrom(chain[i].Program);
            var key = (prev, chain[i].Flags, program);
            if (!_known.TryGetValue(key, out uint number))
            {
                number = (uint)_filters.Count;
                var filter = new SeccompFilter { Filter = program };
                if (prev is uint p) filter.Prev = p;
                if (chain[i].Flags != 0) filter.Flags = (uint)chain[i].Flags;
                _filters.Add(filter);
                _known.Add(key, number);
            }
            prev = number;
        }
        return prev!.Value;
    }
}
