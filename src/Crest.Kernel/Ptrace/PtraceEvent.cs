namespace Crest.Kernel.Ptrace;

/// <summary>PTRACE_EVENT_* values reported in the wait status of an event stop.</summary>
public static class PtraceEvent
{
    public const int Fork = 1, VFork = 2, Clone = 3, Exec = 4, VForkDone = 5, Exit = 6, Seccomp = 7, Stop = 128;
}
