// Seccomp of a restored thread (ENGINE.md §4.6): strict mode with prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT),
// filter mode with seccomp(SECCOMP_SET_MODE_FILTER, flags, &sock_fprog) once per filter of the thread's chain,
// oldest first, so the kernel stacks them as they were. Installed while the task is still privileged (no
// no_new_privs needed yet) and before its credentials drop. From then on the kernel would filter Crest's own
// injected syscalls too, so the tracee gets PTRACE_O_SUSPEND_SECCOMP first; the option ends with the detach.
using Crest.Diagnostics;
using Crest.Images.Protos;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Ptrace;

namespace Crest.Engine.Restore;

internal static class RestoreSeccomp
{
    private const long PR_SET_SECCOMP = 22, SECCOMP_MODE_STRICT = 1, SECCOMP_SET_MODE_FILTER = 1;

    /// <summary>Flags a filter may be installed with again: SECCOMP_FILTER_FLAG_LOG and _SPEC_ALLOW.</summary>
    private const uint ReplayableFlags = 2 | 4;

    /// <summary>
    /// The filters of <paramref name="thread"/>, oldest first, from seccomp.img; checked when the images are
    /// read, so a dangling or cyclic chain fails the restore before any task exists.
    /// </summary>
    public static IReadOnlyList<SeccompFilter> ChainOf(SeccompEntry? table, ThreadCoreEntry? thread, int tid)
    {
        if (thread is null || thread.SeccompMode != SeccompMode.Filter) return [];
        if (!thread.HasSeccompFilter)
            throw new RestoreException($"core-{tid}.img: thread {tid} is in seccomp filter mode but names no filter");
        if (table is null)
            throw new RestoreException($"thread {tid} is in seccomp filter mode but seccomp.img is missing");
        var chain = new List<SeccompFilter>();
        uint index = thread.SeccompFilter;
        while (true)
        {
            if (index >= table.SeccompFilters.Count)
                throw new RestoreException($"seccomp.img: thread {tid} refers to filter {index}, but the image holds {table.SeccompFilters.Count}");
            if (chain.Count >= table.SeccompFilters.Count)
                throw new RestoreException($"seccomp.img: the filter chain of thread {tid} loops");
            var filter = table.SeccompFilters[(int)index];
            if (filter.Filter.Length == 0 || filter.Filter.Length % 8 != 0 || filter.Filter.Length / 8 > ushort.MaxValue)
                throw new RestoreException($"seccomp.img: filter {index} is {filter.Filter.Length} bytes, not a classic BPF program");
            chain.Add(filter);
            if (!filter.HasPrev) break;
            index = filter.Prev;
        }
        chain.Reverse();
        return chain;
    }

    /// <summary>Put the thread's seccomp mode and filters back; call before the credentials are restored.</summary>
    public static void Install(StubInjector task, ThreadCoreEntry? thread, IReadOnlyList<SeccompFilter> chain)
    {
        if (thread is null || thread.SeccompMode == SeccompMode.Disabled) return;
        task.Tracee.SetOptions(task.Tracee.Options | PtraceOptions.SuspendSeccomp);
        if (thread.SeccompMode == SeccompMode.Strict)
        {
            task.Check("prctl(PR_SET_SECCOMP)", "strict mode", SyscallNumbers.prctl, PR_SET_SECCOMP, SECCOMP_MODE_STRICT);
            Log.Info($"{task.Pid}: restore: seccomp strict mode");
            return;
        }
        int number = 0;
        Span<byte> program = stackalloc byte[16];
        foreach (var filter in chain)
        {
            number++;
            ulong instructions = task.Put(filter.Filter.Span);
            // struct sock_fprog: unsigned short len, padding, struct sock_filter *filter.
            program.Clear();
            BitConverter.TryWriteBytes(program, (ushort)(filter.Filter.Length / 8));
            BitConverter.TryWriteBytes(program[8..], instructions);
            uint flags = filter.HasFlags ? filter.Flags & ReplayableFlags : 0;
            task.Check("seccomp(SECCOMP_SET_MODE_FILTER)", $"filter {number} of {chain.Count} ({filter.Filter.Length / 8} instructions, flags 0x{flags:x})",
                SyscallNumbers.seccomp, SECCOMP_SET_MODE_FILTER, flags, (long)task.Put(program));
            task.ResetScratch();
        }
        Log.Info($"{task.Pid}: restore: {chain.Count} seccomp filters installed");
    }
}
