// The process tree of a dump (ENGINE.md §2): every live process held in a ptrace stop, parents before
// their children (the order pstree.img lists them in and restore creates them in), and the zombies found
// among the children, which cannot be seized (PTRACE_SEIZE of an exited task fails) and are dumped from
// /proc/PID/stat alone: ppid, pgid, sid and the wait status (field 52, exit_code, Linux 3.5).
namespace Crest.Engine.Dump;

/// <summary>A child that exited and was not reaped: it keeps its pid, its group and its wait status.</summary>
internal sealed record ZombieTask(int Pid, int Ppid, int Pgid, int Sid, int ExitCode, string Comm);

internal sealed class FrozenTree
{
    /// <summary>Live processes, the root first, each parent before its children.</summary>
    public List<FrozenTask> Tasks { get; } = [];

    public List<ZombieTask> Zombies { get; } = [];

    /// <summary>The parent of each process of the tree except the root (pid to pid).</summary>
    public Dictionary<int, int> Parents { get; } = [];

    public FrozenTask Root => Tasks[0];

    /// <summary>The other threads of each process (main thread's pid to its threads), frozen with it.</summary>
    public Dictionary<int, List<FrozenTask>> Threads { get; } = [];

    public IReadOnlyList<FrozenTask> ThreadsOf(FrozenTask task) => Threads.TryGetValue(task.Pid, out var threads) ? threads : [];
}
