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

    private readonly FileDescriptor _pagemap;
    private readonly byte[] _vec = GC.AllocateArray<byte>(RegionSize * VecLength, pinned: true);
    private readonly byte[] _arg = new byte[96];
    private readonly int _pid;
    private ulong _guard = PAGE_IS_GUARD;

    public PagemapScan(int pid)
    {
        _pid = pid;
        _pagemap = FileDescriptor.Open($"/proc/{pid}/pagemap", OpenFlags.ReadOnly | OpenFlags.CloseOnExec);
    }

    /// <summary>
    /// Appends the runs of pages of [start, end) that <paramref name="selection"/> keeps to <paramref name="runs"/>,
    /// and the guard regions of the range to <paramref name="guards"/>.
    /// </summary>
    public void Scan(ulong start, ulong end, PageSelection selection, List<(ulong Start, ulong End)> runs, List<(ulong Start, ulong End)> guards)
    {
        ulong mask = PAGE_IS_PFNZERO, inverted = PAGE_IS_PFNZERO;
        if (selection == PageSelection.PrivateCopies)
        {
            mask |= PAGE_IS_FILE;
            inverted |= PAGE_IS_FILE;
        }
        Scan(start, end, mask, inverted, PAGE_IS_PRESENT | PAGE_IS_SWAPPED, runs, guards);
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
                for (int i = 0; i < n; i++)
                {
                    ulong rs = BinaryPrimitives.ReadUInt64LittleEndian(regions[(i * RegionSize)..]);
                    ulong re = BinaryPrimitives.ReadUInt64LittleEndian(regions[(i * RegionSize + 8)..]);
                    if (runs.Count > before && runs[^1].End == rs) runs[^1] = (runs[^1].Start, re);
                    else runs.Add((rs, re));
                }
                ulong walkEnd = BinaryPrimitives.ReadUInt64LittleEndian(a[32..]);
                if (walkEnd <= at) throw new DumpException($"ioctl(PAGEMAP_SCAN) on task {_pid} made no progress at 0x{at:x}.");
                at = walkEnd;
            }
        }
        return true;
    }

    private unsafe void Scan(ulong start, ulong end, ulong mask, ulong inverted, ulong anyof, List<(ulong Start, ulong End)> runs, List<(ulong Start, ulong End)> guards)
    {
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
                BinaryPrimitives.WriteUInt64LittleEndian(a[88..], PAGE_IS_PRESENT | PAGE_IS_SWAPPED | _guard);
                int n;
                try
                {
                    n = _pagemap.Ioctl(PAGEMAP_SCAN, a);
                }
                catch (KernelException e) when (e.Errno.Value == Errno.EINVAL && _guard != 0)
                {
                    _guard = 0;
                    continue;
                }
                catch (KernelException e)
                {
                    throw new DumpException($"Cannot scan the pages of task {_pid} at 0x{at:x}-0x{end:x}: ioctl(PAGEMAP_SCAN) failed with {e.Errno}.", e);
                }
                ReadOnlySpan<byte> regions = _vec;
                for (int i = 0; i < n; i++)
                {
                    ulong rs = BinaryPrimitives.ReadUInt64LittleEndian(regions[(i * RegionSize)..]);
                    ulong re = BinaryPrimitives.ReadUInt64LittleEndian(regions[(i * RegionSize + 8)..]);
                    ulong categories = BinaryPrimitives.ReadUInt64LittleEndian(regions[(i * RegionSize + 16)..]);
                    var list = (categories & PAGE_IS_GUARD) != 0 ? guards : runs;
                    if (list.Count > 0 && list[^1].End == rs) list[^1] = (list[^1].Start, re);
                    else list.Add((rs, re));
                }
                ulong walkEnd = BinaryPrimitives.ReadUInt64LittleEndian(a[32..]);
                if (walkEnd <= at) throw new DumpException($"ioctl(PAGEMAP_SCAN) on task {_pid} made no progress at 0x{at:x}.");
                at = walkEnd;
            }
        }
    }

    public void Dispose() => _pagemap.Dispose();
}
