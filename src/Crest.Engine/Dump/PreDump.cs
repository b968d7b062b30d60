// pre-dump (CRIU's pre-dump command): the memory of a running tree is written while it is frozen, and the
// tree runs on as it was. What a pre-dump directory holds, as CRIU's does:
//   pagemap-PID.img + pages-N.img   every present private page, or, with a parent, the written ones and
//                                   PE_PARENT entries for the pages the parent images hold unchanged
//   inventory.img                   img_version, dump_uptime, pre_dump_mode (1: splice, CRIU's default)
//   stats-dump                      the figures of the round
//   parent -> PREV                  with --prev-images-dir, the text as given (resolved from this directory)
//   crest-track-mem                 Crest's own: where each task keeps its dirty-page tracker (DirtyTracking.cs)
// No core, mm, files or pstree: the final dump writes those. While the tree is frozen a round scans the pages and
// then sets up or moves on the tracker (the last step, undone if it fails); the pages are read after the release
// (see PageDumper.WriteFromRunningTask for why that is sound), and a failure there puts the tracker back where the
// last good round left it.
using System.Diagnostics;
using System.Globalization;
using Crest.Diagnostics;
using Crest.Engine.Files;
using Crest.Engine.Memory;
using Crest.Images;
using Crest.Images.Pages;
using Crest.Images.Protos;
using Crest.Kernel;
using Crest.Kernel.Ptrace;

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

    /// <summary>
    /// Before the freeze: the page chains of every task the parent images hold, by pid. They do not change (earlier
    /// rounds), and resolving a long chain (five levels of tens of thousands of entries) took 30 ms on a quiet machine
    /// and several hundred under load inside the freeze of every later round and of the final dump. A chain that
    /// cannot be read is left out, for the frozen dump to read and report.
    /// </summary>
    public static Dictionary<int, PageChain?> ResolveParentsEarly(string? parentDir)
    {
        var chains = new Dictionary<int, PageChain?>();
        if (parentDir is null) return chains;
        var clock = Stopwatch.StartNew();
        foreach (string path in Directory.EnumerateFiles(parentDir, "pagemap-*.img"))
        {
            string name = Path.GetFileName(path);
            if (!int.TryParse(name["pagemap-".Length..^".img".Length], NumberStyles.None, CultureInfo.InvariantCulture, out int pid)) continue;
            try
            {
                chains[pid] = PageChain.TryResolve(parentDir, (ulong)pid);
            }
            catch (Exception e) when (e is ImageFormatException or IOException)
            {
                Log.Info($"{pid}: track-mem: the parent images in {parentDir} are read again once frozen: {e.Message}");
            }
        }
        Log.Info($"track-mem: {chains.Count} parent page chains of {parentDir} resolved before the freeze in {clock.Elapsed.TotalMilliseconds:0.#} ms");
        return chains;
    }

    /// <summary>What an incremental dump of one task needs: its tracker, when it knows the changes, and its pages up the parent chain.</summary>
    public static IncrementalPages? Incremental(DirtyTracker tracker, string? parentDir)
    {
        if (parentDir is null || !tracker.Knows) return null;
        try
        {
            var chain = tracker.EarlyParentChain is { } early ? early.Chain : PageChain.TryResolve(parentDir, (ulong)tracker.Pid);
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

    /// <summary>
    /// The memory images of every task of the frozen tree, then the trackers armed for the next round. Into the images
    /// directory, only the scan is done here: the pages are read once the tree runs again (<paramref name="later"/>,
    /// for <see cref="WriteAfterRelease"/>), so the freeze lasts the scan and the arming, not the copy of the memory.
    /// </summary>
    public static PageDumpResult DumpTree(FrozenTree tree, ImageDirectory images, DumpOptions options, List<DirtyTracker> trackers, string? parentDir,
        out List<PageTargets.ScannedTask>? later)
    {
        DumpEngine.Stage("frozen");
        var total = new PageDumpResult(0, 0, TimeSpan.Zero, TimeSpan.Zero);
        var vmasOf = new List<List<DumpedVma>>();
        var unionsByNamespace = new Dictionary<string, UnionMounts>();
        var scanned = new List<PageTargets.ScannedTask>();
        for (int i = 0; i < tree.Tasks.Count; i++)
        {
            int pid = tree.Tasks[i].Pid;
            uint pagesId = (uint)i + 1;
            long begin = Stopwatch.GetTimestamp();
            // maps, not smaps: enough to choose the pages and the VMAs to track, where smaps walks every page table for
            // its counters (25-30 ms per GiB here, 150-330 ms under load, all of it frozen). The VmFlags checks of
            // memory a dump cannot take (hugetlb, device, another userfaultfd) are the final dump's, which reads smaps.
            var vmas = VmaDumper.Collect(pid, VmaDumper.ReadMaps(pid), new FileTable(), UnionMounts.Read(pid, unionsByNamespace), crestTracks: trackers[i].TaskFds.Count > 0);
            vmasOf.Add(vmas);
            var mapsTime = Stopwatch.GetElapsedTime(begin);
            if (PageTargets.ScanForLater(options, pid, pagesId, vmas, trackers[i], parentDir) is { } scan)
            {
                scanned.Add(scan);
                Log.Info($"{pid}: pre-dump: {vmas.Count} vmas read in {mapsTime.TotalMilliseconds:0.#} ms, pages scanned in {scan.Pages.ScanTime.TotalMilliseconds:0.#} ms " +
                    $"({scan.Pages.Runs.Count} runs); they are read once the tree runs again");
                continue;
            }
            var pages = PageTargets.Dump(options, images, pid, pagesId, vmas, trackers[i], parentDir);
            total = Add(total, pages);
            Log.Info($"{pid}: pre-dump: {vmas.Count} vmas, {pages.PagesWritten} pages written, {pages.PagesInParent} in the parent");
        }
        later = scanned.Count > 0 ? scanned : null;
        if (later is null) Complete(images, trackers, armed: false);

        // The trackers for the next round: last while frozen. The images are complete, or (later) every page they
        // will hold is either read as it is now or written by the task after this, and so dumped again next round.
        DumpEngine.Stage("tracking");
        long armBegin = Stopwatch.GetTimestamp();
        for (int i = 0; i < tree.Tasks.Count; i++) trackers[i].Arm(tree.Tasks[i], vmasOf[i]);
        Log.Info($"{tree.Tasks[0].Pid}: pre-dump: trackers armed in {Stopwatch.GetElapsedTime(armBegin).TotalMilliseconds:0.#} ms");
        if (later is null) WriteTrackerState(images, trackers);
        return total;
    }

    /// <summary>
    /// After the release: the pages the scan found, read from the running tasks, then the rest of the images. If
    /// that fails, the trackers go back to where the last good round left them (each task frozen again for it) and
    /// the images are removed; the tree runs on as it was.
    /// </summary>
    public static PageDumpResult WriteAfterRelease(Tracer tracer, ImageDirectory images, DumpOptions options, List<DirtyTracker> trackers,
        List<PageTargets.ScannedTask> later)
    {
        var clock = Stopwatch.StartNew();
        var total = new PageDumpResult(0, 0, TimeSpan.Zero, TimeSpan.Zero);
        try
        {
            foreach (var task in later)
            {
                var pages = PageTargets.WriteScanned(images, task);
                total = Add(total, pages);
                Log.Info($"{task.Pid}: pre-dump: {pages.PagesWritten} pages written, {pages.PagesInParent} in the parent");
            }
            Complete(images, trackers, armed: true);
            DumpEngine.Stage("written");
        }
        catch (Exception e)
        {
            Log.Error($"pre-dump: writing the pages after the release failed: {e.Message}; the trackers go back to the last round");
            UndoTrackers(tracer, options, trackers, later);
            images.RemoveCreated();
            if (e is DumpException) throw;
            throw new DumpException($"Writing the pages of the pre-dump failed: {e.Message}", e);
        }
        Log.Info($"pre-dump: the pages of {later.Count} processes written in {clock.Elapsed.TotalMilliseconds:0.#} ms after the release");
        return total;
    }

    /// <summary>The inventory and, once the trackers are armed, their record: what a pre-dump holds besides the pages, synced.</summary>
    private static void Complete(ImageDirectory images, List<DirtyTracker> trackers, bool armed)
    {
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
        if (armed) WriteTrackerState(images, trackers);
    }

    private static void WriteTrackerState(ImageDirectory images, List<DirtyTracker> trackers)
    {
        images.Track(DirtyTracker.StateFileName);
        DirtyTracker.WriteState(images.Path, trackers);
        images.SyncDirectory();
    }

    private static void UndoTrackers(Tracer tracer, DumpOptions options, List<DirtyTracker> trackers, List<PageTargets.ScannedTask> later)
    {
        foreach (var tracker in trackers)
        {
            if (!tracker.ArmedThisRound) continue;
            var dumped = later.FirstOrDefault(t => t.Pid == tracker.Pid)?.Pages.Dumped ?? [];
            try
            {
                var task = Freezer.Freeze(tracer, tracker.Pid, options.FreezeTimeout);
                try
                {
                    tracker.Undo(task, dumped);
                }
                finally
                {
                    Freezer.Release(task, ReleaseMode.AsItWas);
                }
            }
            catch (Exception e) when (e is DumpException or KernelException or TimeoutException or TraceeExitedException)
            {
                Log.Error($"{tracker.Pid}: track-mem: the tracker cannot go back to the last round ({e.Message}); the next round dumps every page");
            }
        }
    }
}
