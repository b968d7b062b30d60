// Everything the dump learns about one task while it is frozen, from outside (ptrace, /proc) and from
// syscalls injected into it. The image builders read from here; nothing here touches the task.
using Crest.Kernel;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Proc;
using Crest.Kernel.Ptrace;

namespace Crest.Engine.Processes;

/// <summary>One kernel struct sigaction (x86_64): handler, flags, restorer, blocked mask.</summary>
internal readonly record struct SignalAction(int Signal, ulong Handler, ulong Flags, ulong Restorer, ulong Mask);

/// <summary>struct itimerval of getitimer(2): interval and value, in seconds and microseconds.</summary>
internal readonly record struct IntervalTimer(ulong IntervalSec, ulong IntervalUsec, ulong ValueSec, ulong ValueUsec);

/// <summary>stack_t of sigaltstack(2).</summary>
internal readonly record struct AltStack(ulong Sp, uint Flags, ulong Size);

internal sealed class TaskState
{
    public required int Pid { get; init; }

    // From outside.
    public required UserRegs Registers { get; init; }
    public required byte[] XState { get; init; }
    public required ulong SigMask { get; init; }
    public required RseqConfiguration Rseq { get; init; }
    public required ProcStat Stat { get; init; }
    public required ProcStatus Status { get; init; }
    public required string Comm { get; init; }
    public required uint Personality { get; init; }
    public required int? OomScoreAdj { get; init; }
    public required uint? LoginUid { get; init; }
    public required bool WasStopped { get; init; }

    /// <summary>Signals queued for the process (shared) and for the thread, as raw 128-byte siginfo.</summary>
    public required IReadOnlyList<byte[]> SharedSignals { get; init; }
    public required IReadOnlyList<byte[]> ThreadSignals { get; init; }

    // From injected syscalls.
    public IReadOnlyList<SignalAction> SignalActions { get; set; } = [];
    public AltStack AltStack { get; set; }
    /// <summary>ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF.</summary>
    public IntervalTimer[] IntervalTimers { get; set; } = [];
    /// <summary>timer_create timers, oldest first.</summary>
    public IReadOnlyList<Timers.PosixTimer> PosixTimers { get; set; } = [];
    public ulong ClearChildTid { get; set; }
    public ulong RobustListHead { get; set; }
    public ulong RobustListLength { get; set; }
    public ResourceLimit[] Limits { get; set; } = [];
    public uint SecureBits { get; set; }
    public uint ParentDeathSignal { get; set; }
    public int Dumpable { get; set; }
    public bool ChildSubreaper { get; set; }
    public bool ThpDisabled { get; set; }
    public ulong Brk { get; set; }
    public uint Umask { get; set; }
}
