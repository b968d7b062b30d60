using Crest.Kernel.Processes;

namespace Crest.Kernel.Ptrace;

/// <summary>A ptrace stop as waitpid reported it.</summary>
public readonly record struct TraceeStop(int Tid, WaitStatus Status)
{
    /// <summary>The stop signal (SIGTRAP for PTRACE_INTERRUPT and syscall stops, the signal for group stops).</summary>
    public int Signal => Status.StopSignal;

    /// <summary>The PTRACE_EVENT_* of an event stop, 0 otherwise.</summary>
    public int Event => Status.Event;

    public override string ToString() => $"{Tid}: {Status}";
}
