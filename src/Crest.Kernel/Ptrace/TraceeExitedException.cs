using Crest.Kernel.Processes;

namespace Crest.Kernel.Ptrace;

/// <summary>The tracee terminated while Crest expected a stop.</summary>
public sealed class TraceeExitedException(int tid, WaitStatus status)
    : Exception($"task {tid} terminated: {status}")
{
    public int Tid { get; } = tid;
    public WaitStatus Status { get; } = status;
}
