// A traced child's exit is reported once, to whichever waitpid(2) in our process sees it first: often the
// tracer thread waiting for a stop. The exit status is kept here so the owner of the child still learns it.
using System.Collections.Concurrent;

namespace Crest.Kernel.Processes;

internal static class ReapedChildren
{
    private static readonly ConcurrentDictionary<int, WaitStatus> Exits = new();

    internal static void Record(int pid, WaitStatus status) => Exits[pid] = status;

    internal static bool TryTake(int pid, out WaitStatus status) => Exits.TryRemove(pid, out status);
}
