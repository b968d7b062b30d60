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
