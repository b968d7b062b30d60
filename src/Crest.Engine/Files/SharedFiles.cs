// Open file descriptions seen so far in the dumped tree. Descriptors of one or several processes that share
// one description (dup, fork, SCM_RIGHTS) get one files.img id: candidates are the descriptors already
// seen on the same inode (or pipe), compared with kcmp(KCMP_FILE) (Linux 3.5, CONFIG_KCMP), which works
// across processes as well as within one.
using Crest.Kernel.Processes;

namespace Crest.Engine.Files;

internal sealed class SharedFiles(ExternalFiles external, Ttys? ttys = null, UnixSocketPolicy? unixSockets = null)
{
    /// <summary>Terminals of the whole tree (pty pairs, the shell's terminal of a shell job).</summary>
    public Ttys Ttys { get; } = ttys ?? new Ttys(shellJob: false);

    /// <summary>The ids given with --external.</summary>
    public ExternalFiles External { get; } = external;

    private readonly Dictionary<(ulong Device, ulong Inode), List<(int Pid, int Fd, uint Id)>> _byInode = [];

    /// <summary>Pipes of the whole tree: one pipe id and one copy of its buffer however many tasks hold it.</summary>
    public Pipes Pipes { get; } = new();

    /// <summary>Unix sockets of the whole tree, and which connections to the outside may be dumped.</summary>
    public UnixSockets UnixSockets { get; } = new(unixSockets ?? UnixSocketPolicy.None);

    private readonly Dictionary<string, UnionMounts> _unionsByNamespace = [];

    /// <summary>The union mounts <paramref name="pid"/> sees, read once per mount namespace of the tree.</summary>
    public UnionMounts UnionsOf(int pid) => UnionMounts.Read(pid, _unionsByNamespace);

    /// <summary>The id of a description already seen that <paramref name="fd"/> of <paramref name="pid"/> shares, or 0.</summary>
    public uint Find(ulong device, ulong inode, int pid, int fd)
    {
        if (!_byInode.TryGetValue((device, inode), out var seen)) return 0;
        foreach (var (otherPid, otherFd, id) in seen)
        {
            if (Kcmp.SameFile(pid, otherPid, fd, otherFd)) return id;
        }
        return 0;
    }

    public void Add(ulong device, ulong inode, int pid, int fd, uint id)
    {
        if (!_byInode.TryGetValue((device, inode), out var seen)) _byInode[(device, inode)] = seen = [];
        seen.Add((pid, fd, id));
    }
}
