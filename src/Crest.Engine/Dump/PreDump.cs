// pre-dump (CRIU's pre-dump command): the memory of a running tree is written while it is frozen, and the
// tree runs on as it was. What a pre-dump directory holds, as CRIU's does:
//   pagemap-PID.img + pages-N.img   every present private page, or, with a parent, the written ones and
//                                   PE_PARENT entries for the pages the parent images hold unchanged
//   inventory.img                   img_version, dump_uptime, pre_dump_mode (1: splice, CRIU's default)
//   stats-dump                      the figures of the round
//   parent -> PREV                  with --prev-images-dir, the text as given (resolved from this directory)
//   crest-track-mem                 Crest's own: where each task keeps its dirty-page tracker (DirtyTracking.cs)
// No core, mm, files or pstree: the final dump writes those. A round changes nothing in the task before its
// images are complete; then the tracker is set up or moved on (the last step, undone if it fails).
using System.Globalization;
using Crest.Diagnostics;
using Crest.Engine.Files;
using Crest.Engine.Memory;
using Crest.Images;
using Crest.Images.Pages;
using Crest.Images.Protos;

namespace Crest.Engine.Dump;

internal static class PreDump
{
    /// <summary>CRIU's pre_dump_mode: 1 = splice (vmsplice of the pages), 2 = read (process_vm_readv).</summary>
    private const uint PreDumpModeSplice = 1;

    /// <summary>
    /// With --prev-images-dir: checks the parent directory and makes the "parent" link in the images
    /// directory (replacing an old link); returns the parent directory's full path, or null.
    /// </summary>
    public static string? LinkParent(DumpOptions options, ImageDirectory images)
    {
        if (options.ParentLink is not { } link) return null;
        string parent = Path.GetFullPath(link, images.Path);
        if (!Directory.Exists(parent))
            throw new DumpException($"The previous images directory {parent} (--prev-images-dir {link}) does not exist.");
        if (!File.Exists(Path.Combine(parent, "inventory.img")))
            throw new DumpException($"The previous images directory {parent} holds no inventory.img: not the images of a (pre-)dump.");
        string path = images.PathOf(PageChain.ParentLink);
        var existing = new FileInfo(path);
        if (existing.LinkTarget is not null) existing.Delete();
        else if (existing.Exists || Directory.Exists(path))
            throw new DumpException($"{path} exists and is not a link; it cannot become the link to the previous images.");
        try
        {
            File.CreateSymbolicLink(path, link);
        }
        catch (IOException e)
        {
            throw new DumpException($"Cannot make the link {path} -> {link}: {e.Message}", e);
        }
        images.Track(PageChain.ParentLink);
        return parent;
    }

    /// <summary>What an incremental dump of one task needs: its tracker, when it knows the changes, and its pages up the parent chain.</summary>
    public static IncrementalPages? Incremental(DirtyTracker tracker, string? parentDir)
    {
        if (parentDir is null || !tracker.Knows) return null;
        try
        {
            var chain = PageChain.TryResolve(parentDir, (ulong)tracker.Pid);
            if (chain is null)
            {
                Log.Warning($"{tracker.Pid}: track-mem: {parentDir} has no pagemap of this task; every page is dumped");
                return null;
            }
            return new IncrementalPages(tracker, chain.Runs);
        }
        catch (ImageFormatException e)
        {
            throw new DumpException($"The parent images of task {tracker.Pid} cannot be read: {e.Message}", e);
        }
    }

    public static PageDumpResult Add(PageDumpResult a, PageDumpResult b) =>
        new(a.PagesScanned + b.PagesScanned, a.PagesWritten + b.PagesWritten, a.MemdumpTime + b.MemdumpTime,
            a.MemwriteTime + b.MemwriteTime, a.PagesInParent + b.PagesInParent, a.PagesLazy + b.PagesLazy);

    /// <summary>CRIU's dump_uptime: the system's uptime in microseconds when the images were made.</summary>
    public static ulong UptimeMicroseconds()
    {
        string text = File.ReadAllText("/proc/uptime");
        string first = text.Split(' ')[0];
        return (ulong)(decimal.Parse(first, CultureInfo.InvariantCulture) * 1_000_000m);
    }

    /// <summary>The memory images of every task of the frozen tree, then the trackers armed for the next round.</summary>
    public static PageDumpResult DumpTree(FrozenTree tree, ImageDirectory images, DumpOptions options, List<DirtyTracker> trackers, string? parentDir)
    {
        DumpEngine.Stage("frozen");
        var total = new PageDumpResult(0, 0, TimeSpan.Zero, TimeSpan.Zero);
        var vmasOf = new List<List<DumpedVma>>();
        var unionsByNamespace = new Dictionary<string, UnionMounts>();
        for (int i = 0; i < tree.Tasks.Count; i++)
        {
            int pid = tree.Tasks[i].Pid;
            uint pagesId = (uint)i + 1;
            var vmas = VmaDumper.Collect(pid, VmaDumper.ReadSmaps(pid), new FileTable(), UnionMounts.Read(pid, unionsByNamespace), crestTracks: trackers[i].TaskFds.Count > 0);
            vmasOf.Add(vmas);
            var pages = PageTargets.Dump(options, images, pid, pagesId, vmas, trackers[i], parentDir);
            total = Add(total, pages);
            Log.Info($"{pid}: pre-dump: {vmas.Count} vmas, {pages.PagesWritten} pages written, {pages.PagesInParent} in the parent");
        }
        images.Write(ImageKinds.Inventory, 0, new InventoryEntry
        {
            ImgVersion = DumpEngine.ImageVersion,
            FdinfoPerId = true,
            NsPerId = true,
            Lsmtype = Lsmtype.NoLsm,
            DumpUptime = UptimeMicroseconds(),
            PreDumpMode = PreDumpModeSplice,
        });
        images.SyncAll();

        // Last: the trackers for the next round (the images of this round are complete).
        DumpEngine.Stage("tracking");
        for (int i = 0; i < tree.Tasks.Count; i++) trackers[i].Arm(tree.Tasks[i], vmasOf[i]);
        images.Track(DirtyTracker.StateFileName);
        DirtyTracker.WriteState(images.Path, trackers);
        images.SyncDirectory();
        return total;
    }
}
