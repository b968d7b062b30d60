// The images of a tree of processes (each with its threads: core-TID.img per thread), read and cross-checked before anything is created
// (fail early: a missing or corrupt image is reported before any task exists). Names and kinds: ENGINE.md §6.
// pstree.img lists parents before their children; files.img and pipes-data.img are one for the tree; each
// live process has core, mm, ids, fs, fdinfo-(files_id), pagemap and its pages; a zombie (core tc.task_state
// TASK_DEAD) has its core alone.
using Crest.Images;
using Crest.Images.Pages;
using Crest.Images.Protos;
using Google.Protobuf;

namespace Crest.Engine.Restore;

internal sealed class RestoreImages
{
    private RestoreImages(string dir) => Directory = dir;

    public string Directory { get; }

    public required PstreeEntry Task { get; init; }
    public required CoreEntry Core { get; init; }

    /// <summary>The other threads (pstree `threads` after the main one) with their core-TID.img, in image order.</summary>
    public IReadOnlyList<RestoreThreads.ThreadImages> Threads { get; init; } = [];
    public required MmEntry Mm { get; init; }
    public TaskKobjIdsEntry? Ids { get; init; }
    public FsEntry? Fs { get; init; }
    public required IReadOnlyDictionary<uint, FileEntry> Files { get; init; }
    public required IReadOnlyList<FdinfoEntry> Fds { get; init; }
    /// <summary>Present pages, resolved through the parent chain of a pre-dump (PageChain.cs).</summary>
    public required IReadOnlyList<PageRun> Pages { get; init; }
    /// <summary>The pages files <see cref="Pages"/> read from (more than one when the images have parents).</summary>
    public required IReadOnlyList<PageSource> PageSources { get; init; }
    public required long PagesBytes { get; init; }
    /// <summary>The main thread's seccomp filters, oldest first (empty without filter mode).</summary>
    public IReadOnlyList<SeccompFilter> SeccompChain { get; init; } = [];

    public int Pid => (int)Task.Pid;

    /// <summary>CRIU's task_state of a zombie (TASK_DEAD).</summary>
    public const uint TaskDead = 2;

    /// <summary>Every image of the tree in <paramref name="dir"/>, checked.</summary>
    public static RestoreTree LoadTree(string dir)
    {
        if (!System.IO.Directory.Exists(dir))
            throw new RestoreException($"images directory {dir} does not exist");
        try
        {
            if (File.Exists(Path.Combine(dir, "inventory.img")))
                ReadAll(dir, "inventory.img", ImageKinds.Inventory, InventoryEntry.Parser);
            var entries = ReadAll(dir, "pstree.img", ImageKinds.Pstree, PstreeEntry.Parser);
            if (entries.Count == 0) throw new RestoreException($"pstree.img in {dir} lists no task");
            var files = new Dictionary<uint, FileEntry>();
            if (File.Exists(Path.Combine(dir, "files.img")))
                foreach (var f in ReadAll(dir, "files.img", ImageKinds.Files, FileEntry.Parser))
                    files[f.Id] = f;
            var tree = new RestoreTree(dir, entries, files);
            var live = new HashSet<uint>();
            for (int i = 0; i < entries.Count; i++)
            {
                var entry = entries[i];
                if (i == 0 && entry.Ppid != 0 && entries.Exists(e => e.Pid == entry.Ppid))
                    throw new RestoreException($"pstree.img: the first task {entry.Pid} has its parent {entry.Ppid} in the images");
                if (i > 0 && !live.Contains(entry.Ppid))
                    throw new RestoreException($"pstree.img: task {entry.Pid} comes before its parent {entry.Ppid}, or its parent is not a live task of the images");
                if (entry.Pid == 0 || entries.Count(e => e.Pid == entry.Pid) != 1)
                    throw new RestoreException($"pstree.img: pid {entry.Pid} is listed {entries.Count(e => e.Pid == entry.Pid)} times");
                int pid = (int)entry.Pid;
                var core = ReadOne(dir, $"core-{pid}.img", ImageKinds.Core, CoreEntry.Parser);
                if (core.Tc is { TaskState: TaskDead } tc)
                {
                    if (i == 0) throw new RestoreException($"the root task {pid} of the images is a zombie");
                    tree.Zombies[pid] = tc;
                    continue;
                }
                tree.Processes[pid] = Load(dir, entry, core, files);
                live.Add(entry.Pid);
            }
            return tree;
        }
        catch (ImageFormatException e)
        {
            throw new RestoreException($"corrupt image: {e.Message}", e);
        }
    }

    private static RestoreImages Load(string dir, PstreeEntry task, CoreEntry core, Dictionary<uint, FileEntry> files)
    {
        try
        {
            int pid = (int)task.Pid;
            if (core.Mtype != CoreEntry.Types.March.X8664 || core.ThreadInfo is null)
                throw new RestoreException($"core-{pid}.img is not an x86_64 task ({core.Mtype})");
            var mm = ReadOne(dir, $"mm-{pid}.img", ImageKinds.Mm, MmEntry.Parser);
            var ids = ReadOptional(dir, $"ids-{pid}.img", ImageKinds.Ids, TaskKobjIdsEntry.Parser) ?? core.Ids;
            var fs = ReadOptional(dir, $"fs-{pid}.img", ImageKinds.Fs, FsEntry.Parser);
            IReadOnlyList<FdinfoEntry> fds = [];
            if (ids is not null)
            {
                string fdinfo = $"fdinfo-{ids.FilesId}.img";
                if (File.Exists(Path.Combine(dir, fdinfo)))
                    fds = ReadAll(dir, fdinfo, ImageKinds.Fdinfo, FdinfoEntry.Parser);
            }

            string pagemapPath = Path.Combine(dir, $"pagemap-{pid}.img");
            if (!File.Exists(pagemapPath)) throw new RestoreException($"image pagemap-{pid}.img is missing from {dir}");
            // PE_PARENT entries are followed up the chain of "parent" links (pre-dump, --prev-images-dir).
            // PE_LAZY pages (post-copy migration) are runs of PageChain.LazySource: the lazy-pages daemon has them.
            var chain = PageChain.Resolve(dir, (ulong)pid, allowLazy: true);

            var seccomp = ReadOptional(dir, "seccomp.img", ImageKinds.Seccomp, SeccompEntry.Parser);
            var seccompChain = RestoreSeccomp.ChainOf(seccomp, core.ThreadCore, pid);

            return new RestoreImages(dir)
            {
                SeccompChain = seccompChain,
                Threads = LoadThreads(dir, task, seccomp),
                Task = task, Core = core, Mm = mm, Ids = ids, Fs = fs, Files = files, Fds = fds,
                Pages = chain.Runs, PageSources = chain.Sources, PagesBytes = chain.Bytes,
            };
        }
        catch (ImageFormatException e)
        {
            throw new RestoreException($"corrupt image: {e.Message}", e);
        }
    }

    /// <summary>core-TID.img of every thread but the main one; the main thread must come first in `threads`.</summary>
    private static List<RestoreThreads.ThreadImages> LoadThreads(string dir, PstreeEntry task, SeccompEntry? seccomp)
    {
        var threads = new List<RestoreThreads.ThreadImages>();
        if (task.Threads.Count == 0) return threads;
        if (task.Threads[0] != task.Pid)
            throw new RestoreException($"pstree.img: the threads of task {task.Pid} do not start with the main thread ({task.Threads[0]})");
        var seen = new HashSet<uint> { task.Pid };
        foreach (uint tid in task.Threads.Skip(1))
        {
            if (tid == 0 || tid > int.MaxValue || !seen.Add(tid))
                throw new RestoreException($"pstree.img: task {task.Pid} lists thread {tid} twice or out of range");
            var core = ReadOne(dir, $"core-{tid}.img", ImageKinds.Core, CoreEntry.Parser);
            if (core.Mtype != CoreEntry.Types.March.X8664 || core.ThreadInfo?.Gpregs is null || core.ThreadInfo.Fpregs is null)
                throw new RestoreException($"core-{tid}.img is not an x86_64 thread with registers ({core.Mtype})");
            threads.Add(new RestoreThreads.ThreadImages((int)tid, core, RestoreSeccomp.ChainOf(seccomp, core.ThreadCore, (int)tid)));
        }
        return threads;
    }

    public RegFileEntry RegularFile(uint id, string purpose)
    {
        if (!Files.TryGetValue(id, out var file))
            throw new RestoreException($"files.img has no file id {id} ({purpose})");
        if (file.Type != FdTypes.Reg || file.Reg is null)
            throw new RestoreException($"file id {id} ({purpose}) is a {file.Type}, not a regular file");
        return file.Reg;
    }

    private static T ReadOne<T>(string dir, string name, ImageKind kind, MessageParser<T> parser) where T : class, IMessage<T>
    {
        var all = ReadAll(dir, name, kind, parser);
        if (all.Count != 1) throw new RestoreException($"image {name} holds {all.Count} entries, expected one");
        return all[0];
    }

    private static T? ReadOptional<T>(string dir, string name, ImageKind kind, MessageParser<T> parser) where T : class, IMessage<T> =>
        File.Exists(Path.Combine(dir, name)) ? ReadOne(dir, name, kind, parser) : null;

    private static List<T> ReadAll<T>(string dir, string name, ImageKind kind, MessageParser<T> parser) where T : class, IMessage<T>
    {
        string path = Path.Combine(dir, name);
        if (!File.Exists(path)) throw new RestoreException($"image {name} is missing from {dir}");
        using var reader = ImageReader.Open(path, kind);
        return reader.ReadEntries(parser).ToList();
    }
}
