// Private memory into pagemap-PID.img + pages-1.img (ENGINE.md §1.6, §6). Present pages are found with
// PAGEMAP_SCAN (PagemapScan.cs). Three ways to get them into pages-1.img:
//  - the task writes them itself (PageDumper.TaskWrites.cs, the default when pages-1.img is a local file and
//    the task may): injected pwritev of its own memory, one copy per page;
//  - buffered (any sink, and the fallback): process_vm_readv in vectors of up to IOV_MAX ranges into one of two
//    large pinned buffers, written with large sequential writes while the next buffer is being read (reading
//    and writing overlap on two threads);
//  - mapped (MapPagesFile, off by default, see there): pages-1.img sized for all of them, mapped shared, and
//    read into straight by one reader per core.
// A page run of a VMA without PROT_READ is read through /proc/PID/mem instead, which may read what
// process_vm_readv may not (FOLL_FORCE). Guard regions found by the scan (MADV_GUARD_INSTALL) are recorded in
// the VMA's entry, for restore to install again.
using System.Diagnostics;
using System.Runtime.InteropServices;
using Crest.Diagnostics;
using Crest.Engine.Dump;
using Crest.Images.Pages;
using Crest.Kernel;
using Crest.Kernel.Files;
using Crest.Kernel.Memory;
using Crest.Kernel.Proc;

namespace Crest.Engine.Memory;

internal sealed record PageDumpResult(ulong PagesScanned, ulong PagesWritten, TimeSpan MemdumpTime, TimeSpan MemwriteTime, ulong PagesInParent = 0, ulong PagesLazy = 0);

/// <summary>An incremental dump: the task's tracker and its pages in the parent images (ascending runs).</summary>
internal sealed record IncrementalPages(DirtyTracker Tracker, IReadOnlyList<PageRun>? Parent);

internal static partial class PageDumper
{
    private const int PageSize = 4096;

    /// <summary>Size of each of the two transfer buffers.</summary>
    internal const int BufferSize = 16 << 20;

    /// <summary>Read straight into a shared mapping of pages-N.img when it is a file (tests compare).</summary>
    internal static bool MapPagesFile { get; set; } = MapPagesFileByDefault;

    // Off: on this machine (2 cores, tmpfs without huge pages) a page costs more CPU this way (the file page is
    // zeroed when populated, then its page table entry is made and zapped) than the buffered way's extra copy
    // into a cache-warm buffer: 1160-1280 ms against 880-1060 ms of CPU for 1 GiB in the same runs, and the
    // 1 GiB bench dumped at 36 % of the tmpfs write rate this way where the buffered way reached 55 % (idle)
    // to 96 % (loaded). Kept, measured by the tests, for file systems where it may pay.
    internal const bool MapPagesFileByDefault = false;

    /// <summary>Work unit of the readers into the mapped pages file.</summary>
    internal const int MappedChunkBytes = 8 << 20;

    /// <summary>Readers into the mapped pages file (tests compare one with several).</summary>
    internal static int Readers { get; set; } = Environment.ProcessorCount;

    /// <summary>A run of present pages; InParent: left in the parent images; Lazy: spliced for the lazy-pages daemon (no data here either).</summary>
    internal readonly record struct Run(ulong Start, ulong End, bool Readable, bool InParent = false, bool Lazy = false);

    /// <summary>Runs cut at the bounds of <paramref name="ranges"/> (sorted, disjoint), so that each piece lies wholly in or out of them.</summary>
    private static List<Run> SplitAt(List<Run> runs, IReadOnlyList<(ulong Start, ulong End)> ranges)
    {
        var split = new List<Run>(runs.Count + 2 * ranges.Count);
        int first = 0; // runs ascend: ranges that end before a run end before every later one
        foreach (var r in runs)
        {
            ulong at = r.Start;
            while (first < ranges.Count && ranges[first].End <= at) first++;
            for (int k = first; k < ranges.Count; k++)
            {
                var (start, end) = ranges[k];
                if (start >= r.End) break;
                foreach (ulong cut in new[] { start, end })
                {
                    if (cut <= at || cut >= r.End) continue;
                    split.Add(r with { Start = at, End = cut });
                    at = cut;
                }
            }
            split.Add(r with { Start = at });
        }
        return split;
    }

    /// <summary>A part of a run read into the buffer; a run whose pages stay in the parent images is one piece without data.</summary>
    private readonly record struct Piece(ulong RunStart, ulong RunPages, bool First, ulong Address, int Length, bool Readable, bool InParent = false, bool Lazy = false);

    /// <summary>
    /// The present pages of a frozen task found by <see cref="Scan"/>: runs in address order, to be written at once
    /// (<see cref="Dump"/>) or, by a pre-dump, once the task runs again (<see cref="WriteFromRunningTask"/>).
    /// </summary>
    internal sealed record ScannedPages(int Pid, List<Run> Runs, ulong Scanned, TimeSpan ScanTime)
    {
        /// <summary>The runs whose data goes into this round's pages (not left in the parent images).</summary>
        public IEnumerable<(ulong Start, ulong End)> Dumped => Runs.Where(r => !r.InParent && !r.Lazy).Select(r => (r.Start, r.End));
    }

    public static PageDumpResult Dump(int pid, IReadOnlyList<DumpedVma> vmas, IPageSink writer, IncrementalPages? incremental = null,
        TaskWriteAccess? taskWrite = null, Action? writing = null)
    {
        var clock = Stopwatch.StartNew();
        var cpu = Environment.CpuUsage.TotalTime;
        var pages = Scan(pid, vmas, incremental);
        return Write(pages, writer, taskWrite, writing, clock, cpu, runningTask: false);
    }

    /// <summary>
    /// Pre-dump: the pages a scan of the frozen task found, read once the task runs again. The tracker was armed before
    /// the task was released, so a page the task writes from then on is dumped again by the next round, whatever this
    /// read found in it; a page it unmaps or zaps is not present at the next round. So only the pages the task leaves
    /// alone need to read as they were at the freeze, and they do. Pages that cannot be read any more (unmapped since)
    /// are written as zeros.
    /// </summary>
    public static PageDumpResult WriteFromRunningTask(ScannedPages pages, IPageSink writer) =>
        Write(pages, writer, null, null, Stopwatch.StartNew(), Environment.CpuUsage.TotalTime, runningTask: true);

    /// <summary>Finds the present pages of the VMAs of a frozen task (and, for an incremental dump, which of them the parent images hold).</summary>
    public static ScannedPages Scan(int pid, IReadOnlyList<DumpedVma> vmas, IncrementalPages? incremental)
    {
        var clock = Stopwatch.StartNew();
        ulong scanned = 0;
        var runs = new List<Run>();
        using (var scan = new PagemapScan(pid))
        {
            var found = new List<(ulong Start, ulong End)>();
            var guards = new List<(ulong Start, ulong End)>();
            var split = new List<(ulong Start, ulong End, bool InParent)>();
            // Only the tracker's split against the parent images tells markers left by an earlier pre-dump from pages.
            bool dropMarkers = incremental is not { Tracker.Knows: true, Parent: not null };
            foreach (var v in vmas)
            {
                found.Clear();
                guards.Clear();
                if (v.Pages == PageSelection.None)
                {
                    // Shared file mappings may hold guard regions too (Linux 6.15); vDSO and co. cannot.
                    if ((v.Entry.Status & VmaDumper.VMA_FILE_SHARED) != 0) scan.ScanGuards(v.Vma.Start, v.Vma.End, guards);
                }
                else
                {
                    scanned += v.Vma.Size / PageSize;
                    scan.Scan(v.Vma.Start, v.Vma.End, v.Pages, found, guards, dropMarkers);
                }
                // Guard regions go into the VMA's entry (mm-PID.img is written after the pages).
                foreach (var (s, e) in guards)
                {
                    v.Entry.CrestGuardRanges.Add(s);
                    v.Entry.CrestGuardRanges.Add(e);
                }
                if (guards.Count > 0) Log.Info($"{pid}: pages: VMA 0x{v.Vma.Start:x}-0x{v.Vma.End:x} has {guards.Count} guard regions");
                bool readable = (v.Vma.Permissions & VmaPermissions.Read) != 0;
                if (incremental is null || v.Pages == PageSelection.None)
                {
                    foreach (var (s, e) in found) runs.Add(new Run(s, e, readable));
                    continue;
                }
                split.Clear();
                incremental.Tracker.Split(scan, v.Vma.Start, v.Vma.End, found, incremental.Parent, split);
                foreach (var (s, e, parentHolds) in split) runs.Add(new Run(s, e, readable, parentHolds));
            }
            if (scan.MarkersDropped > 0) Log.Info($"{pid}: pages: {scan.MarkersDropped} uffd-wp markers of an earlier pre-dump left out (holes, not pages)");
        }
        return new ScannedPages(pid, runs, scanned, clock.Elapsed);
    }

    private static PageDumpResult Write(ScannedPages pages, IPageSink writer, TaskWriteAccess? taskWrite, Action? writing, Stopwatch clock, TimeSpan cpu,
        bool runningTask)
    {
        int pid = pages.Pid;
        var runs = pages.Runs;
        ulong scanned = pages.Scanned;
        var scanTime = pages.ScanTime;
        if (writer is ILazyPageKeeper { Eager.Count: > 0 } eager) runs = SplitAt(runs, eager.Eager);
        if (writer is ILazyPageKeeper { MaySplice: true, Store.Splice: true } keeper && taskWrite is not null)
            runs = SpliceLazyRuns(pid, runs, keeper, taskWrite);
        ulong total = 0, inParent = 0;
        foreach (var r in runs)
        {
            if (r.InParent) inParent += (r.End - r.Start) / PageSize;
            else if (!r.Lazy) total += (r.End - r.Start) / PageSize;
        }
        Log.Info($"{pid}: pages: {scanned} pages scanned, {total} to write in {runs.Count} runs, {inParent} unchanged in the parent images");
        // The caller's work alongside the writes starts once the task's memory map stays as it is until the end.
        if (TaskWrites && taskWrite is not null && total > 0 && !MapPagesFile && writer is PageImageWriter { PagesFile: not null } file
            && DumpByTask(pid, runs, file, taskWrite, scanned, total, scanTime, clock, cpu, writing) is { } byTask)
            return byTask with { PagesInParent = inParent };
        writing?.Invoke();
        if (MapPagesFile && !runningTask && total > 0 && writer is PageImageWriter { PagesFile: not null } mapped)
            return DumpIntoMappedFile(pid, runs, mapped, scanned, total, scanTime, clock, cpu) with { PagesInParent = inParent };

        long writeTicks = 0, readTicks = 0, waitTicks = 0, unreadable = 0;
        FileDescriptor? mem = null;
        // A small task needs no 16 MiB buffers: every first touch of a buffer page is a fault.
        int bufferSize = (int)Math.Min((ulong)BufferSize, Math.Max(1UL, total) * PageSize);
        var buffers = new[] { GC.AllocateUninitializedArray<byte>(bufferSize, pinned: true), GC.AllocateUninitializedArray<byte>(bufferSize, pinned: true) };
        Task? pendingWrite = null;
        var ranges = new List<RemoteRange>();
        try
        {
            int ri = 0, bi = 0;
            ulong within = 0;
            while (ri < runs.Count)
            {
                Interruption.CheckDump();
                var pieces = new List<Piece>();
                int filled = 0;
                while (ri < runs.Count && filled < bufferSize)
                {
                    var r = runs[ri];
                    ulong size = r.End - r.Start;
                    if (r.InParent || r.Lazy)
                    {
                        pieces.Add(new Piece(r.Start, size / PageSize, true, r.Start, 0, r.Readable, InParent: true, Lazy: r.Lazy));
                        ri++;
                        continue;
                    }
                    int take = (int)Math.Min(size - within, (ulong)(bufferSize - filled));
                    pieces.Add(new Piece(r.Start, size / PageSize, within == 0, r.Start + within, take, r.Readable));
                    filled += take;
                    within += (ulong)take;
                    if (within == size)
                    {
                        ri++;
                        within = 0;
                    }
                }
                byte[] buffer = buffers[bi];
                bi ^= 1;
                long readBegin = Stopwatch.GetTimestamp();
                if (runningTask) ReadPiecesOfRunningTask(pid, pieces, buffer, ranges, ref mem, ref unreadable);
                else ReadPieces(pid, pieces, buffer, ranges, ref mem);
                long waitBegin = Stopwatch.GetTimestamp();
                readTicks += waitBegin - readBegin;
                pendingWrite?.GetAwaiter().GetResult();
                waitTicks += Stopwatch.GetTimestamp() - waitBegin;
                pendingWrite = Task.Run(() =>
                {
                    long begin = Stopwatch.GetTimestamp();
                    int at = 0;
                    foreach (var p in pieces)
                    {
                        if (p.InParent)
                        {
                            writer.AddWithoutData(p.RunStart, checked((uint)p.RunPages), p.Lazy ? PagemapFlags.Lazy : PagemapFlags.Parent);
                            continue;
                        }
                        if (p.First) writer.BeginPresent(p.RunStart, checked((uint)p.RunPages));
                        writer.WritePageData(buffer.AsSpan(at, p.Length));
                        at += p.Length;
                    }
                    writeTicks += Stopwatch.GetTimestamp() - begin;
                });
            }
            pendingWrite?.GetAwaiter().GetResult();
            pendingWrite = null;
            long flushBegin = Stopwatch.GetTimestamp();
            writer.Complete();
            writeTicks += Stopwatch.GetTimestamp() - flushBegin;
        }
        finally
        {
            // Never leave a write running on the writer the caller is about to dispose.
            if (pendingWrite is not null)
            {
                try { pendingWrite.Wait(); }
                catch (AggregateException) { }
            }
            mem?.Dispose();
        }
        if (unreadable > 0) Log.Info($"{pid}: pages: {unreadable} bytes the task unmapped since the scan written as zeros (the next round does not take them from here)");
        Log.Info($"{pid}: pages: {(runningTask ? "read from the running task, " : "")}scan {scanTime.TotalMilliseconds:0.#} ms, read {Stopwatch.GetElapsedTime(0, readTicks).TotalMilliseconds:0.#} ms, " +
            $"write {Stopwatch.GetElapsedTime(0, writeTicks).TotalMilliseconds:0.#} ms, waiting for writes {Stopwatch.GetElapsedTime(0, waitTicks).TotalMilliseconds:0.#} ms, " +
            $"all {clock.Elapsed.TotalMilliseconds:0.#} ms, CPU {(Environment.CpuUsage.TotalTime - cpu).TotalMilliseconds:0} ms");
        return new PageDumpResult(scanned, total, clock.Elapsed, Stopwatch.GetElapsedTime(0, writeTicks), inParent);
    }

    /// <summary>
    /// Every entry reserved first, pages-N.img sized to hold them and mapped shared; then the readers take
    /// chunks of it in turn, populate the file pages of their chunk (MADV_POPULATE_WRITE: allocated in bulk
    /// instead of one fault per page) and process_vm_readv the task's memory straight into them. One copy
    /// per page instead of two (into a buffer, then write(2) into the page cache), and it runs on every
    /// core: faults on a shared mapping take no inode lock, where writes to one file are serialized.
    /// </summary>
    private static PageDumpResult DumpIntoMappedFile(int pid, List<Run> all, PageImageWriter writer, ulong scanned, ulong total,
        TimeSpan scanTime, Stopwatch clock, TimeSpan cpu)
    {
        // Entries in address order: pages left in the parent images have no data; the others get their place in the file.
        var runs = new List<Run>(all.Count);
        var reserved = new List<long>(all.Count);
        foreach (var r in all)
        {
            uint pages = checked((uint)((r.End - r.Start) / PageSize));
            if (r.InParent)
            {
                writer.AddWithoutData(r.Start, pages, PagemapFlags.Parent);
                continue;
            }
            runs.Add(r);
            reserved.Add(writer.ReservePresent(r.Start, pages));
        }
        var offsets = reserved.ToArray();
        writer.SizeReserved();

        // Chunks of the file: [First run, Last run] with the part of the first and last run inside it.
        var chunks = new List<(long Offset, int Length)>();
        for (long at = 0; at < writer.PagesReserved; at += MappedChunkBytes)
            chunks.Add((at, (int)Math.Min(MappedChunkBytes, writer.PagesReserved - at)));

        var handle = writer.PagesFile!;
        bool added = false;
        long readStart = Stopwatch.GetTimestamp();
        int readers = Math.Max(1, Math.Min(Readers, chunks.Count));
        try
        {
            handle.DangerousAddRef(ref added);
            using var file = FileDescriptor.Borrow((int)handle.DangerousGetHandle());
            using var mapping = MemoryMapping.MapFile(file, 0, (ulong)writer.PagesReserved, MemoryProtection.Read | MemoryProtection.Write, MapFlags.Shared);
            int next = -1;
            Exception? failure = null;
            void Read()
            {
                FileDescriptor? mem = null;
                var pieces = new List<Piece>();
                var ranges = new List<RemoteRange>();
                try
                {
                    while (true)
                    {
                        int c = Interlocked.Increment(ref next);
                        if (c >= chunks.Count || Volatile.Read(ref failure) is not null) return;
                        var (offset, length) = chunks[c];
                        // The runs overlapping [offset, offset + length): binary search for the first.
                        int r = Array.BinarySearch(offsets, offset);
                        if (r < 0) r = ~r - 1;
                        pieces.Clear();
                        long end = offset + length;
                        for (; r < runs.Count && offsets[r] < end; r++)
                        {
                            long runBytes = (long)(runs[r].End - runs[r].Start);
                            long from = Math.Max(offset, offsets[r]), to = Math.Min(end, offsets[r] + runBytes);
                            pieces.Add(new Piece(runs[r].Start, 0, false, runs[r].Start + (ulong)(from - offsets[r]), (int)(to - from), runs[r].Readable));
                        }
                        mapping.Advise((ulong)offset, (ulong)length, MemoryAdvice.PopulateWrite);
                        ReadPieces(pid, pieces, mapping.Slice((ulong)offset, length), ranges, ref mem);
                        // The data stays in the file; the page tables go now, on every reader, not in one munmap.
                        mapping.Advise((ulong)offset, (ulong)length, MemoryAdvice.DontNeed);
                    }
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref failure, e, null);
                }
                finally
                {
                    mem?.Dispose();
                }
            }
            var threads = new Thread[readers - 1];
            for (int t = 0; t < threads.Length; t++)
            {
                threads[t] = new Thread(Read) { Name = $"crest dump pages {t + 1}", IsBackground = true };
                threads[t].Start();
            }
            Read();
            foreach (var t in threads) t.Join();
            if (failure is DumpException) throw failure;
            if (failure is not null) throw new DumpException($"Cannot dump the memory of task {pid}: {failure.Message}", failure);
        }
        catch (KernelException e)
        {
            throw new DumpException($"Cannot map the pages image for task {pid}: {e.Message}", e);
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
        var readTime = Stopwatch.GetElapsedTime(readStart);
        writer.Complete();
        Log.Info($"{pid}: pages: scan {scanTime.TotalMilliseconds:0.#} ms, read into the mapped pages file by {readers} threads " +
            $"{readTime.TotalMilliseconds:0.#} ms, all {clock.Elapsed.TotalMilliseconds:0.#} ms, CPU {(Environment.CpuUsage.TotalTime - cpu).TotalMilliseconds:0} ms");
        return new PageDumpResult(scanned, total, clock.Elapsed, readTime);
    }

    private static void ReadPieces(int pid, List<Piece> pieces, Span<byte> buffer, List<RemoteRange> ranges, ref FileDescriptor? mem)
    {
        ranges.Clear();
        int at = 0, readableStart = 0;
        foreach (var p in pieces)
        {
            if (p.InParent) continue;
            if (p.Readable)
            {
                ranges.Add(new RemoteRange(p.Address, (ulong)p.Length));
            }
            else
            {
                // Flush the readable ranges gathered so far, then this one through /proc/PID/mem.
                ReadRanges(pid, ranges, buffer[readableStart..at]);
                ranges.Clear();
                mem ??= FileDescriptor.Open($"/proc/{pid}/mem", OpenFlags.ReadOnly | OpenFlags.CloseOnExec);
                int n = mem.PRead(buffer.Slice(at, p.Length), (long)p.Address);
                if (n != p.Length)
                    throw new DumpException($"Cannot read the memory of task {pid} at 0x{p.Address:x}: /proc/{pid}/mem gave {n} of {p.Length} bytes.");
                readableStart = at + p.Length;
            }
            at += p.Length;
        }
        ReadRanges(pid, ranges, buffer[readableStart..at]);
    }

    /// <summary>
    /// <see cref="ReadPieces"/> for a task that runs (pre-dump, after the release): when the bulk read fails, each piece
    /// is read again on its own, what process_vm_readv cannot read through /proc/PID/mem (a VMA made unreadable since),
    /// and pages neither can read (unmapped since the scan) are zeros, counted in <paramref name="unreadable"/>. A task
    /// that is gone fails the read.
    /// </summary>
    private static void ReadPiecesOfRunningTask(int pid, List<Piece> pieces, Span<byte> buffer, List<RemoteRange> ranges, ref FileDescriptor? mem,
        ref long unreadable)
    {
        try
        {
            ReadPieces(pid, pieces, buffer, ranges, ref mem);
            return;
        }
        catch (DumpException e) when (TaskRuns(pid))
        {
            Log.Info($"{pid}: pages: the running task changed its memory map since the scan ({e.Message}); reading piece by piece");
        }
        int at = 0;
        foreach (var p in pieces)
        {
            if (p.InParent) continue;
            var part = buffer.Slice(at, p.Length);
            at += p.Length;
            int got = 0;
            if (p.Readable)
            {
                var t = RemoteMemory.TryReadVectored(pid, [new RemoteRange(p.Address, (ulong)p.Length)], part);
                got = (int)t.Transferred;
            }
            while (got < p.Length)
            {
                int n;
                try
                {
                    mem ??= FileDescriptor.Open($"/proc/{pid}/mem", OpenFlags.ReadOnly | OpenFlags.CloseOnExec);
                    n = mem.PRead(part[got..], (long)p.Address + got);
                }
                catch (KernelException)
                {
                    n = 0;
                }
                if (n > 0)
                {
                    got += n;
                    continue;
                }
                if (!TaskRuns(pid)) throw new DumpException($"Task {pid} ended while its pages were read.");
                // The page at p.Address + got is gone: zeros up to its end.
                int hole = (int)Math.Min((ulong)(p.Length - got), PageSize - ((p.Address + (ulong)got) % PageSize));
                part.Slice(got, hole).Clear();
                unreadable += hole;
                got += hole;
            }
        }
    }

    /// <summary>The task exists and is not a zombie (its memory can still be read).</summary>
    private static bool TaskRuns(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            int close = stat.LastIndexOf(')');
            return close > 0 && close + 2 < stat.Length && stat[close + 2] is not ('Z' or 'X');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static void ReadRanges(int pid, List<RemoteRange> ranges, Span<byte> buffer)
    {
        if (ranges.Count == 0) return;
        try
        {
            RemoteMemory.ReadVectored(pid, CollectionsMarshal.AsSpan(ranges), buffer);
        }
        catch (KernelException e)
        {
            throw new DumpException($"Cannot read the memory of task {pid}: {e.Message}.", e);
        }
    }
}
