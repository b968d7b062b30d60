// Private memory into pagemap-PID.img + pages-1.img (ENGINE.md §1.6, §6). Present pages are found with
// PAGEMAP_SCAN (PagemapScan.cs), read with process_vm_readv in vectors of up to IOV_MAX ranges into one of
// two large pinned buffers, and written with large sequential writes while the next buffer is being read
// (reading and writing overlap on two threads). A page run of a VMA without PROT_READ is read through
// /proc/PID/mem instead, which may read what process_vm_readv may not (FOLL_FORCE). Guard regions found by
// the scan (MADV_GUARD_INSTALL) are recorded in the VMA's entry, for restore to install again.
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

internal sealed record PageDumpResult(ulong PagesScanned, ulong PagesWritten, TimeSpan MemdumpTime, TimeSpan MemwriteTime, ulong PagesInParent = 0);

/// <summary>An incremental dump: the task's tracker and its pages in the parent images (ascending runs).</summary>
internal sealed record IncrementalPages(DirtyTracker Tracker, IReadOnlyList<PageRun>? Parent);

internal static class PageDumper
{
    private const int PageSize = 4096;

    /// <summary>Size of each of the two transfer buffers.</summary>
    internal const int BufferSize = 16 << 20;

    private readonly record struct Run(ulong Start, ulong End, bool Readable, bool InParent = false);

    /// <summary>A part of a run read into the buffer; a run whose pages stay in the parent images is one piece without data.</summary>
    private readonly record struct Piece(ulong RunStart, ulong RunPages, bool First, ulong Address, int Length, bool Readable, bool InParent = false);

    public static PageDumpResult Dump(int pid, IReadOnlyList<DumpedVma> vmas, PageImageWriter writer, IncrementalPages? incremental = null)
    {
        var clock = Stopwatch.StartNew();
        ulong scanned = 0;
        var runs = new List<Run>();
        using (var scan = new PagemapScan(pid))
        {
            var found = new List<(ulong Start, ulong End)>();
            var guards = new List<(ulong Start, ulong End)>();
            var split = new List<(ulong Start, ulong End, bool InParent)>();
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
                    scan.Scan(v.Vma.Start, v.Vma.End, v.Pages, found, guards);
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
        }
        var scanTime = clock.Elapsed;
        ulong total = 0, inParent = 0;
        foreach (var r in runs)
        {
            if (r.InParent) inParent += (r.End - r.Start) / PageSize;
            else total += (r.End - r.Start) / PageSize;
        }
        Log.Info($"{pid}: pages: {scanned} pages scanned, {total} to write in {runs.Count} runs, {inParent} unchanged in the parent images");

        long writeTicks = 0, readTicks = 0, waitTicks = 0;
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
                var pieces = new List<Piece>();
                int filled = 0;
                while (ri < runs.Count && filled < bufferSize)
                {
                    var r = runs[ri];
                    ulong size = r.End - r.Start;
                    if (r.InParent)
                    {
                        pieces.Add(new Piece(r.Start, size / PageSize, true, r.Start, 0, r.Readable, InParent: true));
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
                ReadPieces(pid, pieces, buffer, ranges, ref mem);
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
                            writer.AddWithoutData(p.RunStart, checked((uint)p.RunPages), PagemapFlags.Parent);
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
        Log.Info($"{pid}: pages: scan {scanTime.TotalMilliseconds:0.#} ms, read {Stopwatch.GetElapsedTime(0, readTicks).TotalMilliseconds:0.#} ms, " +
            $"write {Stopwatch.GetElapsedTime(0, writeTicks).TotalMilliseconds:0.#} ms, waiting for writes {Stopwatch.GetElapsedTime(0, waitTicks).TotalMilliseconds:0.#} ms, " +
            $"all {clock.Elapsed.TotalMilliseconds:0.#} ms");
        return new PageDumpResult(scanned, total, clock.Elapsed, Stopwatch.GetElapsedTime(0, writeTicks), inParent);
    }

    private static void ReadPieces(int pid, List<Piece> pieces, byte[] buffer, List<RemoteRange> ranges, ref FileDescriptor? mem)
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
                ReadRanges(pid, ranges, buffer.AsSpan(readableStart, at - readableStart));
                ranges.Clear();
                mem ??= FileDescriptor.Open($"/proc/{pid}/mem", OpenFlags.ReadOnly | OpenFlags.CloseOnExec);
                int n = mem.PRead(buffer.AsSpan(at, p.Length), (long)p.Address);
                if (n != p.Length)
                    throw new DumpException($"Cannot read the memory of task {pid} at 0x{p.Address:x}: /proc/{pid}/mem gave {n} of {p.Length} bytes.");
                readableStart = at + p.Length;
            }
            at += p.Length;
        }
        ReadRanges(pid, ranges, buffer.AsSpan(readableStart, at - readableStart));
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
