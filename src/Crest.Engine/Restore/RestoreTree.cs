// The images of a whole tree (pstree.img order: parents before children) as RestoreImages.LoadTree read
// them: the live processes with their own images, the zombies with their task core, files.img shared.
using Crest.Images.Protos;

namespace Crest.Engine.Restore;

internal sealed class RestoreTree(string directory, IReadOnlyList<PstreeEntry> entries, IReadOnlyDictionary<uint, FileEntry> files)
{
    public string Directory { get; } = directory;

    /// <summary>pstree.img: the root first, each parent before its children.</summary>
    public IReadOnlyList<PstreeEntry> Entries { get; } = entries;

    public IReadOnlyDictionary<uint, FileEntry> Files { get; } = files;

    /// <summary>The images of each live process, by pid.</summary>
    public Dictionary<int, RestoreImages> Processes { get; } = [];

    /// <summary>The task core of each zombie (exit_code holds its wait status), by pid.</summary>
    public Dictionary<int, TaskCoreEntry> Zombies { get; } = [];

    public PstreeEntry Root => Entries[0];

    public int RootPid => (int)Root.Pid;

    /// <summary>Whether live process <paramref name="pid"/> has its parent's files_id (an fd table shared by CLONE_FILES).</summary>
    public bool SharesFdTableWithParent(int pid)
    {
        var entry = Entries.FirstOrDefault(e => e.Pid == (uint)pid);
        if (entry is null || entry == Root) return false;
        return Processes.TryGetValue(pid, out var child) && Processes.TryGetValue((int)entry.Ppid, out var parent)
            && child.Ids is { } c && parent.Ids is { } p && c.FilesId == p.FilesId;
    }

    public IEnumerable<PstreeEntry> ChildrenOf(int pid) => Entries.Where(e => e.Ppid == (uint)pid && e != Root);
}
