// Which pages of a range are worth dumping, from the PAGEMAP_SCAN ioctl on /proc/PID/pagemap (Linux 6.7):
// the kernel walks the page tables and returns runs of pages matching a category filter, so a 64 GiB
// sparse mapping with three touched pages costs one call and three regions, not 16 M pagemap words.
//
//   struct pm_scan_arg (96 bytes): size, flags, start, end, walk_end, vec, vec_len, max_pages,
//                                  category_inverted, category_mask, category_anyof_mask, return_mask
//   struct page_region (24 bytes): start, end, categories
//
// A page matches when ((categories ^ inverted) & mask) == mask and (categories & anyof) != 0. The call
// returns the number of regions written to vec and sets walk_end to where it stopped (vec full).
// Guard regions (MADV_GUARD_INSTALL, Linux 6.13; PAGE_IS_GUARD in PAGEMAP_SCAN since 6.14) come back as
// regions of their own (the return mask keeps their category apart from present pages) and are handed to
// the caller separately, to be recorded in the VMA's entry; a kernel that does not know the category
// answers EINVAL and is asked again without it (such a kernel has no guard regions to report).
//
// A task that went through a pre-dump keeps its write-protect tracker (DirtyTracking.cs), and protecting a hole
// of a registered VMA leaves a uffd-wp pte marker there, which PAGEMAP_SCAN counts as swapped (never as
// written). An incremental dump sorts them out against the parent images; any other dump asks for them to be
// dropped: the pages swapped but neither present nor written are looked up one by one in /proc/PID/pagemap,
// where a marker is a swap entry of type SWP_PTE_MARKER (the last of the 5-bit types, 31) whose offset carries
// PTE_MARKER_UFFD_WP and whose PM_UFFD_WP bit is set. A real swap or migration entry keeps its page.
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Crest.Engine.Dump;
using Crest.Kernel;
using Crest.Kernel.Files;

namespace Crest.Engine.Memory;

internal sealed class PagemapScan : IDisposable
{
    private const ulong PAGEMAP_SCAN = 0xC0606610;
    private const ulong PAGE_IS_WRITTEN = 1 << 1, PM_SCAN_WP_MATCHING = 1 << 0, PM_SCAN_CHECK_WPASYNC = 1 << 1;
    private const ulong PAGE_IS_FILE = 1 << 2, PAGE_IS_PRESENT = 1 << 3, PAGE_IS_SWAPPED = 1 << 4, PAGE_IS_PFNZERO = 1 << 5, PAGE_IS_GUARD = 1 << 8;
    private const int RegionSize = 24, VecLength = 4096;
    private const ulong PM_SWAP = 1UL << 62, PM_UFFD_WP = 1UL << 57, SwapTypeMask = 0x1f, SWP_PTE_MARKER = 31, PTE_MARKER_UFFD_WP = 1;
    private const int PageShift = 12, EntriesPerRead = 1 << 16;

    private readonly FileDescriptor _pagemap;
    private readonly byte[] _vec = GC.AllocateArray<byte>(RegionSize * VecLength, pinned: true);
    private readonly byte[] _arg = new byte[96];
    private readonly int _pid;
    private ulong _guard = PAGE_IS_GUARD;
    private byte[]? _entries;

    /// <summary>Pages that were uffd-wp markers, not pages (dropped by <see cref="Scan(ulong, ulong, PageSelection, List{ValueTuple{ulong, ulong}}, List{ValueTuple{ulong, ulong}}, bool)"/>).</summary>
    public ulong MarkersDropped { get; private set; }

    public PagemapScan(int pid)
    {
        _pid = pid;
        _pagemap = FileDescriptor.Open($"/proc/{pid}/pagemap", OpenFlags.ReadOnly | OpenFlags.CloseOnExec);
    }

    /// <summary>
    /// Appends the runs of pages of [start, end) that <paramref name="selection"/> keeps to <paramref name="runs"/>,
    /// and the guard regions of the range to <paramref name="guards"/>.
    /// </summary>
    /// <param name="dropMarkers">Leave out uffd-wp markers (see the top): for a dump that does not sort pages against parent images.</param>
    public void Scan(ulong start, ulong end, PageSelection selection, List<(ulong Start, ulong End)> runs, List<(ulong Start, ulong End)> guards,
        bool dropMarkers = false)
    {
        ulong mask = PAGE_IS_PFNZERO, inverted = PAGE_IS_PFNZERO;
        if (selection == PageSelection.PrivateCopies)
        {
            mask |= PAGE_IS_FILE;
            inverted |= PAGE_IS_FILE;
        }
        Scan(start, end, mask, inverted, PAGE_IS_PRESENT | PAGE_IS_SWAPPED, runs, guards, dropMarkers);
    }

    /// <summary>Appends only the guard regions of [start, end) to <paramref name="guards"/> (mappings whose pages are not dumped).</summary>
    public void ScanGuards(ulong start, ulong end, List<(ulong Start, ulong End)> guards)
    {
        if (_guard == 0) return;
        var none = new List<(ulong Start, ulong End)>();
        Scan(start, end, 0, 0, 0, none, guards);
    }

    /// <summary>
    /// Appends the runs of pages of [start, end) written since they were last write-protected (uffd-wp async,
    /// DirtyTracking.cs); with <paramref name="protect"/> they are write-protected again in the same walk
    /// (PM_SCAN_WP_MATCHING). False, with nothing appended, when a VMA of the range is not registered for
    /// async write-protect (the kernel answers EPERM to PM_SCAN_CHECK_WPASYNC): its changes are unknown.
    /// </summary>
    public unsafe bool ScanWritten(ulong start, ulong end, bool protect, List<(ulong Start, ulong End)> runs)
    {
        int before = runs.Count;
        ulong at = start;
        while (at < end)
        {
            Span<byte> a = _arg;
            a.Clear();
            fixed (byte* vec = _vec)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(a[0..], 96);
                BinaryPrimitives.WriteUInt64LittleEndian(a[8..], PM_SCAN_CHECK_WPASYNC | (protect ? PM_SCAN_WP_MATCHING : 0));
                BinaryPrimitives.WriteUInt64LittleEndian(a[16..], at);
                BinaryPrimitives.WriteUInt64LittleEndian(a[24..], end);
                BinaryPrimitives.WriteUInt64LittleEndian(a[40..], (ulong)vec);
                BinaryPrimitives.WriteUInt64LittleEndian(a[48..], VecLength);
                BinaryPrimitives.WriteUInt64LittleEndian(a[72..], PAGE_IS_WRITTEN);
                BinaryPrimitives.WriteUInt64LittleEndian(a[88..], PAGE_IS_WRITTEN);
                int n;
                try
                {
                    n = _pagemap.Ioctl(PAGEMAP_SCAN, a);
                }
                catch (KernelException e) when (e.Errno.Value == Errno.EPERM)
                {
                    runs.RemoveRange(before, runs.Count - before);
                    return false;
                }
                catch (KernelException e)
                {
                    throw new DumpException($"Cannot scan the written pages of task {_pid} at 0x{at:x}-0x{end:x}: ioctl(PAGEMAP_SCAN) failed with {e.Errno}.", e);
                }
                ReadOnlySpan<byte> regions = _vec;
                ulong covered = at;
                for (int i = 0; i < n; i++)
                {
                    ulong rs = BinaryPrimitives.ReadUInt64LittleEndian(regions[(i * RegionSize)..]);
                    ulong re = BinaryPrimitives.ReadUInt64LittleEndian(regions[(i * RegionSize + 8)..]);
                    if (!Unseen(ref rs, re, ref covered)) continue;
                    if (runs.Count > before && runs[^1].End == rs) runs[^1] = (runs[^1].Start, re);
                    else runs.Add((rs, re));
                }
                at = Progress(at, BinaryPrimitives.ReadUInt64LittleEndian(a[32..]), covered);
            }
        }
        return true;
    }

    private unsafe void Scan(ulong start, ulong end, ulong mask, ulong inverted, ulong anyof, List<(ulong Start, ulong End)> runs, List<(ulong Start, ulong End)> guards,
        bool dropMarkers = false)
    {
        // Asking for the written category too splits swapped regions into written and not: only the latter can be markers.
        ulong returned = PAGE_IS_PRESENT | PAGE_IS_SWAPPED | _guard | (dropMarkers ? PAGE_IS_WRITTEN : 0);
        ulong at = start;
        while (at < end)
        {
            Span<byte> a = _arg;
            a.Clear();
            fixed (byte* vec = _vec)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(a[0..], 96);
                BinaryPrimitives.WriteUInt64LittleEndian(a[16..], at);
                BinaryPrimitives.WriteUInt64LittleEndian(a[24..], end);
                BinaryPrimitives.WriteUInt64LittleEndian(a[40..], (ulong)vec);
                BinaryPrimitives.WriteUInt64LittleEndian(a[48..], VecLength);
                BinaryPrimitives.WriteUInt64LittleEndian(a[64..], inverted);
                BinaryPrimitives.WriteUInt64LittleEndian(a[72..], mask);
                if ((anyof | _guard) == 0) return;
                BinaryPrimitives.WriteUInt64LittleEndian(a[80..], anyof | _guard);
                BinaryPrimitives.WriteUInt64LittleEndian(a[88..], returned);
                int n;
                try
                {
                    n = _pagemap.Ioctl(PAGEMAP_SCAN, a);
                }
                catch (KernelException e) when (e.Errno.Value == Errno.EINVAL && _guard != 0)
                {
                    returned &= ~_guard;
                    _guard = 0;
                    continue;
                }
                catch (KernelException e)
                {
                    throw new DumpException($"Cannot scan the pages of task {_pid} at 0x{at:x}-0x{end:x}: ioctl(PAGEMAP_SCAN) failed with {e.Errno}.", e);
                }
                ReadOnlySpan<byte> regions = _vec;
                ulong covered = at;
                for (int i = 0; i < n; i++)
                {
                    ulong rs = BinaryPrimitives.ReadUInt64LittleEndian(regions[(i * RegionSize)..]);
                    ulong re = BinaryPrimitives.ReadUInt64LittleEndian(regions[(i * RegionSize + 8)..]);
                    ulong categories = BinaryPrimitives.ReadUInt64LittleEndian(regions[(i * RegionSize + 16)..]);
                    if (!Unseen(ref rs, re, ref covered)) continue;
                    var list = (categories & PAGE_IS_GUARD) != 0 ? guards : runs;
                    if (dropMarkers && (categories & (PAGE_IS_SWAPPED | PAGE_IS_PRESENT | PAGE_IS_WRITTEN)) == PAGE_IS_SWAPPED)
                        AddUnlessMarkers(rs, re, list);
                    else Add(list, rs, re);
                }
                at = Progress(at, BinaryPrimitives.ReadUInt64LittleEndian(a[32..]), covered);
            }
        }
    }

    /// <summary>
    /// Clips a region to the part above <paramref name="covered"/> (what earlier regions reported); false when nothing is
    /// left. One call's regions ascend, but a dump was seen to get, from a later call, regions below the end of one an
    /// earlier call had returned (1 in ~8 runs of PreDumpTests under load, a fragmented 16 MiB VMA: probably a walk_end
    /// left at the point where the kernel's walk first stopped to empty its own buffer); the next call then reports those
    /// pages again, and a page must not go into the images twice, out of order.
    /// </summary>
    private static bool Unseen(ref ulong start, ulong end, ref ulong covered)
    {
        if (end <= covered) return false;
        if (start < covered) start = covered;
        covered = end;
        return true;
    }

    /// <summary>Where the next call starts: the walk's end, or beyond it what the regions already covered.</summary>
    private ulong Progress(ulong at, ulong walkEnd, ulong covered)
    {
        ulong next = Math.Max(walkEnd, covered);
        if (next <= at) throw new DumpException($"ioctl(PAGEMAP_SCAN) on task {_pid} made no progress at 0x{at:x}.");
        return next;
    }

    private static void Add(List<(ulong Start, ulong End)> list, ulong start, ulong end)
    {
        if (list.Count > 0 && list[^1].End == start) list[^1] = (list[^1].Start, end);
        else list.Add((start, end));
    }

    /// <summary>Adds the pages of [start, end) (swapped, not written) whose pagemap entries are not uffd-wp markers.</summary>
    private void AddUnlessMarkers(ulong start, ulong end, List<(ulong Start, ulong End)> list)
    {
        _entries ??= GC.AllocateUninitializedArray<byte>(EntriesPerRead * 8);
        for (ulong at = start; at < end;)
        {
            int count = (int)Math.Min((ulong)EntriesPerRead, (end - at) >> PageShift);
            var buffer = _entries.AsSpan(0, count * 8);
            long offset = (long)(at >> PageShift) * 8;
            int got;
            try
            {
                got = _pagemap.PRead(buffer, offset);
            }
            catch (KernelException e)
            {
                throw new DumpException($"Cannot read the pagemap of task {_pid} at 0x{at:x}: pread(/proc/{_pid}/pagemap) failed with {e.Errno}.", e);
            }
            if (got < 8) throw new DumpException($"pread(/proc/{_pid}/pagemap) at 0x{at:x} returned {got} bytes for {count} pages.");
            count = got / 8;
            for (int i = 0; i < count; i++)
            {
                ulong entry = BinaryPrimitives.ReadUInt64LittleEndian(buffer[(i * 8)..]);
                ulong page = at + ((ulong)i << PageShift);
                bool marker = (entry & (PM_SWAP | PM_UFFD_WP)) == (PM_SWAP | PM_UFFD_WP) && (entry & SwapTypeMask) == SWP_PTE_MARKER
                              && ((entry >> 5) & PTE_MARKER_UFFD_WP) != 0;
                if (marker) MarkersDropped++;
                else Add(list, page, page + (1UL << PageShift));
            }
            at += (ulong)count << PageShift;
        }
    }

    public void Dispose() => _pagemap.Dispose();
}
