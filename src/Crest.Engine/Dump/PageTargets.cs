// Where the memory of one task goes: pagemap-PID.img + pages-N.img in the images directory, or a page server
// (DumpOptions.PageDestination) that writes them on its side.
//
// With a page server the parent images are the server's. It says whether it holds them; the dump side still
// has to know which pages they hold (a page present now and unchanged since the last round is not always in
// it: pages dropped and faulted in again as zero pages, areas mapped since). So each round sent to a page
// server leaves its pagemap entries, without data, in the local images directory as crest-sent-pagemap-PID.img
// (CRIU's pagemap format; Crest's own file, like crest-track-mem): every PE_PRESENT or PE_PARENT entry of the
// last round is a page the server's chain holds (the server checked the PE_PARENT ones against its parent).
using Crest.Diagnostics;
using Crest.Engine.Memory;
using Crest.Images;
using Crest.Images.Pages;
using Crest.Images.Protos;
using Google.Protobuf;

namespace Crest.Engine.Dump;

internal static class PageTargets
{
    /// <summary>The local record of what a round sent to a page server.</summary>
    public static string SentPagemapName(int pid) => $"crest-sent-pagemap-{pid}.img";

    /// <summary>Dumps the pages of <paramref name="pid"/> to where <paramref name="options"/> say.</summary>
    /// <param name="restoreWrites">Pages the restore itself writes into (the threads' rseq areas): with --lazy-pages they
    /// go into the images all the same, so that the restore never waits for the dump's source.</param>
    public static PageDumpResult Dump(DumpOptions options, ImageDirectory images, int pid, uint pagesId, IReadOnlyList<DumpedVma> vmas,
        DirtyTracker tracker, string? parentDir, TaskWriteAccess? taskWrite = null, Action? writing = null,
        IReadOnlyList<(ulong Start, ulong End)>? restoreWrites = null)
    {
        if (options.PageDestination is { } destination) return Send(destination, images, pid, vmas, tracker, parentDir, writing);

        string pagemapName = ImageKinds.FileName(ImageKinds.Pagemap, (ulong)pid);
        string pagesName = ImageKinds.FileName(ImageKinds.Pages, pagesId);
        if (options.PagesOutput is { } output) return Stream(output, images, pid, pagesId, pagemapName, pagesName, vmas, tracker, parentDir, writing);
        return IntoImages(images, pid, pagesId, writer =>
        {
            if (options.LazyPages is not { } store) return PageDumper.Dump(pid, vmas, writer, PreDump.Incremental(tracker, parentDir), taskWrite, writing);
            // Private anonymous memory stays with this dump (PE_LAZY entries); the rest goes into pages-N.img.
            var sink = new LazySink(writer, store, pid, vmas,
                maySplice: !options.LeaveRunning && !options.LeaveStopped, eager: PageRanges(restoreWrites ?? []));
            var pages = PageDumper.Dump(pid, vmas, sink, PreDump.Incremental(tracker, parentDir), taskWrite, writing);
            pages = pages with { PagesWritten = pages.PagesWritten - sink.CopiedPages, PagesLazy = sink.LazyPages };
            Log.Info($"{pid}: pages: {sink.LazyPages} pages kept for the lazy-pages daemon, {pages.PagesWritten} written");
            return pages;
        });
    }

    /// <summary>pagemap-PID.img + pages-N.img in the images directory, written by <paramref name="write"/>.</summary>
    private static PageDumpResult IntoImages(ImageDirectory images, int pid, uint pagesId, Func<PageImageWriter, PageDumpResult> write)
    {
        string pagemapName = ImageKinds.FileName(ImageKinds.Pagemap, (ulong)pid);
        string pagesName = ImageKinds.FileName(ImageKinds.Pages, pagesId);
        images.Track(pagemapName);
        images.Track(pagesName);
        PageDumpResult pages;
        try
        {
            using var writer = PageImageWriter.Create(images.Path, (ulong)pid, pagesId, syncOnClose: false);
            pages = write(writer);
            DumpEngine.Stage("pages");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DumpException($"Cannot write the memory images of task {pid} into {images.Path}: {e.Message}", e);
        }
        images.Account(pagemapName);
        images.Account(pagesName);
        return pages;
    }

    /// <summary>A pre-dump's scan of one frozen task, whose pages are written once the tree runs again.</summary>
    public sealed record ScannedTask(int Pid, uint PagesId, PageDumper.ScannedPages Pages);

    /// <summary>
    /// Pre-dump into the images directory: the scan of the frozen task now, its pages after the release
    /// (<see cref="WriteScanned"/>); null where they go elsewhere (a page server: it is sent while frozen).
    /// </summary>
    public static ScannedTask? ScanForLater(DumpOptions options, int pid, uint pagesId, IReadOnlyList<DumpedVma> vmas, DirtyTracker tracker, string? parentDir)
    {
        if (!options.PreDump || options.PageDestination is not null || options.PagesOutput is not null || options.LazyPages is not null) return null;
        return new ScannedTask(pid, pagesId, PageDumper.Scan(pid, vmas, PreDump.Incremental(tracker, parentDir)));
    }

    /// <summary>The pages <see cref="ScanForLater"/> found, read from the task that runs again, into the images directory.</summary>
    public static PageDumpResult WriteScanned(ImageDirectory images, ScannedTask task) =>
        IntoImages(images, task.Pid, task.PagesId, writer => PageDumper.WriteFromRunningTask(task.Pages, writer));

    /// <summary>pages-N.img into <paramref name="output"/> as the memory is read (read and sent overlap); the pagemap here.</summary>
    private static PageDumpResult Stream(Func<string, Stream> output, ImageDirectory images, int pid, uint pagesId, string pagemapName, string pagesName,
        IReadOnlyList<DumpedVma> vmas, DirtyTracker tracker, string? parentDir, Action? writing)
    {
        images.Track(pagemapName);
        PageDumpResult pages;
        long sent;
        try
        {
            var pagemap = new FileStream(images.PathOf(pagemapName), FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
            Stream pagesOut;
            try
            {
                pagesOut = output(pagesName);
            }
            catch
            {
                pagemap.Dispose();
                throw;
            }
            using var writer = new PageImageWriter(pagemap, pagesOut, pagesId);
            pages = PageDumper.Dump(pid, vmas, writer, PreDump.Incremental(tracker, parentDir), writing: writing);
            DumpEngine.Stage("pages");
            sent = writer.PagesWritten;
        }
        catch (IOException e)
        {
            throw new DumpException($"Cannot send the memory of task {pid} ({pagesName}): {e.Message}", e);
        }
        images.Account(pagemapName);
        images.AccountSent((ulong)sent);
        Log.Info($"{pid}: pages: {pagesName} streamed out as it was read ({sent} bytes)");
        return pages;
    }

    private static PageDumpResult Send(IPageDestination destination, ImageDirectory images, int pid, IReadOnlyList<DumpedVma> vmas,
        DirtyTracker tracker, string? parentDir, Action? writing = null)
    {
        PageDumpResult result;
        var sent = new List<IMessage> { new PagemapHead { PagesId = 0 } };
        try
        {
            using var sink = new RecordingSink(destination.Open((ulong)pid, out bool parentHeld), sent);
            IncrementalPages? incremental = null;
            if (parentDir is not null && tracker.Knows)
            {
                var held = parentHeld ? SentBefore(parentDir, pid) : null;
                if (held is not null) incremental = new IncrementalPages(tracker, held);
                else Log.Warning($"{pid}: track-mem: {(parentHeld ? $"{parentDir} has no record of the pages sent to the page server" : $"the {destination.Name} holds no parent images of this task")}; every page is sent");
            }
            result = PageDumper.Dump(pid, vmas, sink, incremental, writing: writing);
            DumpEngine.Stage("pages");
        }
        catch (IOException e)
        {
            throw new DumpException($"Cannot send the memory of task {pid} to {destination.Name}: {e.Message}", e);
        }
        images.WriteNamed(SentPagemapName(pid), ImageKinds.Pagemap, sent);
        return result;
    }

    /// <summary>The pages the page server's images hold after the round of <paramref name="parentDir"/>, ascending; null when unknown.</summary>
    private static List<PageRun>? SentBefore(string parentDir, int pid)
    {
        string path = Path.Combine(parentDir, SentPagemapName(pid));
        if (!File.Exists(path)) return null;
        try
        {
            using var reader = PagemapReader.Open(path);
            var runs = new List<PageRun>();
            while (reader.TryRead(out var record))
            {
                if ((record.Flags & (PagemapFlags.Present | PagemapFlags.Parent)) != 0)
                    runs.Add(new PageRun(record.Vaddr, record.NrPages, 0, 0));
            }
            return runs;
        }
        catch (ImageFormatException e)
        {
            throw new DumpException($"The record of the pages task {pid} sent in {parentDir} cannot be read: {e.Message}", e);
        }
    }

    /// <summary>
    /// dump --lazy-pages: present pages of private anonymous VMAs are kept in the store and written as PE_LAZY entries
    /// without data; every other entry goes to the local writer as it comes (entries never straddle VMAs).
    /// </summary>
    private sealed class LazySink(IPageSink local, LazyPageStore store, int pid, IReadOnlyList<DumpedVma> vmas, bool maySplice,
        IReadOnlyList<(ulong Start, ulong End)> eager) : IPageSink, ILazyPageKeeper
    {
        public LazyPageStore Store => store;

        public bool MaySplice => maySplice;

        public IReadOnlyList<(ulong Start, ulong End)> Eager => eager;

        /// <summary>Lazy pages copied into the store (the others were spliced).</summary>
        public ulong CopiedPages { get; private set; }

        private List<(ulong Start, ulong End)>? _lazy;
        private ulong _at;
        private long _owed;

        public ulong LazyPages { get; private set; }

        public void BeginPresent(ulong vaddr, uint nrPages, PagemapFlags extraFlags = PagemapFlags.None)
        {
            if (_owed != 0) throw new InvalidOperationException($"the previous lazy entry still lacks {_owed} bytes of page data");
            if (!IsLazy(vaddr))
            {
                local.BeginPresent(vaddr, nrPages, extraFlags);
                return;
            }
            local.AddWithoutData(vaddr, nrPages, PagemapFlags.Lazy | (extraFlags & ~PagemapFlags.Present));
            _at = vaddr;
            _owed = (long)nrPages * 4096;
            LazyPages += nrPages;
            CopiedPages += nrPages;
        }

        public void WritePageData(ReadOnlySpan<byte> data)
        {
            if (_owed == 0)
            {
                local.WritePageData(data);
                return;
            }
            if (data.Length > _owed) throw new InvalidOperationException($"{data.Length} bytes of page data but only {_owed} are left in the lazy entry");
            store.Add((ulong)pid, _at, data);
            _at += (ulong)data.Length;
            _owed -= data.Length;
        }

        public void AddWithoutData(ulong vaddr, uint nrPages, PagemapFlags flags)
        {
            local.AddWithoutData(vaddr, nrPages, flags);
            if ((flags & PagemapFlags.Lazy) != 0) LazyPages += nrPages; // spliced into the store's pipes
        }

        public void Complete()
        {
            if (_owed != 0) throw new InvalidOperationException($"the last lazy entry lacks {_owed} bytes of page data");
            local.Complete();
        }

        public void Dispose()
        {
        }

        /// <summary>
        /// Private anonymous VMAs. Those where THP may back a fault are lazy too: the lazy-pages daemon collapses them
        /// into huge pages once they are filled (UFFDIO_COPY installs small pages).
        /// </summary>
        private List<(ulong Start, ulong End)> LazyVmas() =>
            vmas.Where(v => v.Pages == PageSelection.Anonymous).Select(v => (v.Vma.Start, v.Vma.End)).OrderBy(v => v.Start).ToList();

        public bool IsLazy(ulong vaddr)
        {
            if (Within(eager, vaddr)) return false;
            _lazy ??= LazyVmas();
            int lo = 0, hi = _lazy.Count;
            while (lo < hi)
            {
                int mid = (lo + hi) / 2;
                if (_lazy[mid].End <= vaddr) lo = mid + 1;
                else hi = mid;
            }
            return lo < _lazy.Count && _lazy[lo].Start <= vaddr;
        }
    }

    /// <summary>Byte ranges widened to whole pages, sorted and merged.</summary>
    private static List<(ulong Start, ulong End)> PageRanges(IReadOnlyList<(ulong Start, ulong End)> ranges)
    {
        var pages = ranges.Where(r => r.End > r.Start).Select(r => (Start: r.Start & ~4095UL, End: (r.End + 4095) & ~4095UL)).OrderBy(r => r.Start).ToList();
        var merged = new List<(ulong Start, ulong End)>(pages.Count);
        foreach (var r in pages)
        {
            if (merged.Count > 0 && r.Start <= merged[^1].End) merged[^1] = (merged[^1].Start, Math.Max(merged[^1].End, r.End));
            else merged.Add(r);
        }
        return merged;
    }

    /// <summary><paramref name="vaddr"/> lies in one of the sorted, disjoint <paramref name="ranges"/>.</summary>
    private static bool Within(IReadOnlyList<(ulong Start, ulong End)> ranges, ulong vaddr)
    {
        int lo = 0, hi = ranges.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) / 2;
            if (ranges[mid].End <= vaddr) lo = mid + 1;
            else hi = mid;
        }
        return lo < ranges.Count && ranges[lo].Start <= vaddr;
    }

    /// <summary>Passes entries on and notes them (without data) for the next round.</summary>
    private sealed class RecordingSink(IPageSink inner, List<IMessage> entries) : IPageSink
    {
        public void BeginPresent(ulong vaddr, uint nrPages, PagemapFlags extraFlags = PagemapFlags.None)
        {
            inner.BeginPresent(vaddr, nrPages, extraFlags);
            entries.Add(new PagemapEntry { Vaddr = vaddr, NrPages = nrPages, Flags = (uint)(PagemapFlags.Present | extraFlags) });
        }

        public void WritePageData(ReadOnlySpan<byte> data) => inner.WritePageData(data);

        public void AddWithoutData(ulong vaddr, uint nrPages, PagemapFlags flags)
        {
            inner.AddWithoutData(vaddr, nrPages, flags);
            entries.Add(new PagemapEntry { Vaddr = vaddr, NrPages = nrPages, Flags = (uint)flags });
        }

        public void Complete() => inner.Complete();

        public void Dispose() => inner.Dispose();
    }
}
