namespace Crest.Kernel.Ptrace;

/// <summary>PTRACE_O_* options (include/uapi/linux/ptrace.h) for PTRACE_SEIZE and PTRACE_SETOPTIONS.</summary>
[Flags]
public enum PtraceOptions : long
{
    None = 0,
    TraceSysGood = 0x1,
    TraceFork = 0x2,
    TraceVFork = 0x4,
    TraceClone = 0x8,
    TraceExec = 0x10,
    TraceVForkDone = 0x20,
    TraceExit = 0x40,
    TraceSeccomp = 0x80,
    ExitKill = 0x100000,
    SuspendSeccomp = 0x200000,
}

/// <summary>PTRACE_EVENT_* values reported in the wait status of an event stop.</summary>
public static class PtraceEvent
{
    public const int Fork = 1, VFork = 2, Clone = 3, Exec = 4, VForkDone = 5, Exit = 6, Seccomp = 7, Stop = 128;
}
