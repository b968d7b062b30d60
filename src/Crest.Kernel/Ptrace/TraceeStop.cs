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

/// <summary>The tracee terminated while Crest expected a stop.</summary>
public sealed class TraceeExitedException(int tid, WaitStatus status)
    : Exception($"task {tid} terminated: {status}")
{
    public int Tid { get; } = tid;
    public WaitStatus Status { get; } = status;
}
