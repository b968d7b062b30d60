using Crest.Kernel.Ptrace;

namespace Crest.Kernel.Injection;

/// <summary>An injected syscall could not be run as planned (the task stopped for another reason).</summary>
public sealed class InjectionException(int tid, string message) : Exception($"task {tid}: {message}")
{
    public int Tid { get; } = tid;

    internal static InjectionException UnexpectedStop(TraceeStop stop, string expected) =>
        new(stop.Tid, $"expected {expected} while injecting, got {stop.Status}");
}
