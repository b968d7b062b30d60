// Memory interfaces of the dump side: the PAGEMAP_SCAN ioctl on /proc/PID/pagemap (Linux 6.7) and
// soft-dirty bits (pagemap bit 55, reset by writing 4 to /proc/PID/clear_refs; CONFIG_MEM_SOFT_DIRTY,
// which many kernels, this machine's included, leave out). Each probe maps its own pages, looks at
// them through the interface, and unmaps them.
using Nr = Crest.Kernel.Arch.X64.SyscallNumbers;
using static Crest.Kernel.Features.FeatureInterop;

namespace Crest.Kernel.Features;

public static unsafe partial class FeatureProbes
{
    // include/uapi/linux/fs.h: PAGEMAP_SCAN = _IOWR('f', 16, struct pm_scan_arg), 96-byte argument.
    internal const long PAGEMAP_SCAN = 0xC0606610;
    internal const ulong PAGE_IS_WRITTEN = 1 << 1, PAGE_IS_PRESENT = 1 << 3, PAGE_IS_GUARD = 1 << 8;
    private const int MADV_GUARD_INSTALL = 102;
    internal const ulong PM_SCAN_WP_MATCHING = 1 << 0, PM_SCAN_CHECK_WPASYNC = 1 << 1;

    /// <summary>struct pm_scan_arg.</summary>
    private struct PmScanArg
    {
        public ulong Size, Flags, Start, End, WalkEnd, Vec, VecLen, MaxPages;
        public ulong CategoryInverted, CategoryMask, CategoryAnyofMask, ReturnMask;
    }

    /// <summary>struct page_region: a run of pages with the categories asked for.</summary>
    private struct PageRegion
    {
#pragma warning disable CS0649 // written by the kernel, never by C#
        public ulong Start, End, Categories;
#pragma warning restore CS0649
    }

    /// <summary>Issue PAGEMAP_SCAN over [start, start + pages) and return the regions the kernel filled, or -1.</summary>
    private static long PagemapScan(long pagemapFd, byte* start, int pages, ulong flags, ulong categories,
        PageRegion* regions, int capacity, out Errno errno)
    {
        var arg = new PmScanArg
        {
            Size = (ulong)sizeof(PmScanArg),
            Flags = flags,
            Start = (ulong)start,
            End = (ulong)start + (ulong)(pages * PageSize),
            Vec = (ulong)regions,
            VecLen = (ulong)capacity,
            CategoryMask = categories,
            ReturnMask = categories,
        };
        return Sys(Nr.ioctl, out errno, pagemapFd, PAGEMAP_SCAN, (long)&arg);
    }

    /// <summary>Map four pages, touch the first and the third, and ask PAGEMAP_SCAN which are present.</summary>
    public static ProbeResult ProbePagemapScan()
    {
        const int pages = 4;
        byte* area = MapAnonymous(pages, out var errno);
        if (area == null) return ProbeResult.Missing($"untested: mmap: {errno}", errno);
        long fd = -1;
        try
        {
            area[0] = 1;
            area[2 * PageSize] = 1;
            fd = Open("/proc/self/pagemap", O_RDONLY, out errno);
            if (fd == -1) return ProbeResult.Failed("open(/proc/self/pagemap)", errno);
            PageRegion* regions = stackalloc PageRegion[pages];
            long found = PagemapScan(fd, area, pages, 0, PAGE_IS_PRESENT, regions, pages, out errno);
            if (found == -1) return ProbeResult.Failed("ioctl(PAGEMAP_SCAN)", errno);
            ulong first = (ulong)area, third = (ulong)area + 2 * (ulong)PageSize;
            bool exact = found == 2
                && regions[0].Start == first && regions[0].End == first + (ulong)PageSize
                && regions[1].Start == third && regions[1].End == third + (ulong)PageSize;
            if (!exact) return ProbeResult.Missing($"PAGEMAP_SCAN reported {found} regions, not the 2 touched pages");
            return ProbeResult.Ok("reported exactly the 2 touched pages of 4");
        }
        finally
        {
            Close(fd);
            Unmap(area, pages);
        }
    }

    /// <summary>
    /// Install a guard region (MADV_GUARD_INSTALL, Linux 6.13) on the second of four pages and ask PAGEMAP_SCAN
    /// for PAGE_IS_GUARD (Linux 6.14): what dump needs to record guard regions and restore to install them.
    /// </summary>
    public static ProbeResult ProbePagemapScanGuardPages()
    {
        const int pages = 4;
        byte* area = MapAnonymous(pages, out var errno);
        if (area == null) return ProbeResult.Missing($"untested: mmap: {errno}", errno);
        long fd = -1;
        try
        {
            if (Sys(Nr.madvise, out errno, (long)area + PageSize, PageSize, MADV_GUARD_INSTALL) == -1)
                return ProbeResult.Missing($"madvise(MADV_GUARD_INSTALL) failed with {errno}", errno);
            fd = Open("/proc/self/pagemap", O_RDONLY, out errno);
            if (fd == -1) return ProbeResult.Failed("open(/proc/self/pagemap)", errno);
            PageRegion* regions = stackalloc PageRegion[pages];
            long found = PagemapScan(fd, area, pages, 0, PAGE_IS_GUARD, regions, pages, out errno);
            if (found == -1) return ProbeResult.Missing($"ioctl(PAGEMAP_SCAN, PAGE_IS_GUARD) failed with {errno}", errno);
            ulong second = (ulong)area + (ulong)PageSize;
            if (found != 1 || regions[0].Start != second || regions[0].End != second + (ulong)PageSize)
                return ProbeResult.Missing($"PAGEMAP_SCAN reported {found} guard regions, not the 1 installed page");
            return ProbeResult.Ok("PAGEMAP_SCAN reported exactly the 1 guard page installed of 4");
        }
        finally
        {
            Close(fd);
            Unmap(area, pages);
        }
    }

    private const ulong PM_SOFT_DIRTY = 1UL << 55, PM_PRESENT = 1UL << 63;

    /// <summary>
    /// Dirty a page, reset soft-dirty bits (clear_refs 4), check bit 55 is clear, write again and
    /// check it is set. A kernel without CONFIG_MEM_SOFT_DIRTY accepts clear_refs 4 but never sets the
    /// bit, so only the second look tells. On a kernel with soft-dirty this resets the bits of this
    /// whole process (crest's own pages, which nothing tracks).
    /// </summary>
    public static ProbeResult ProbeSoftDirty()
    {
        byte* page = MapAnonymous(1, out var errno);
        if (page == null) return ProbeResult.Missing($"untested: mmap: {errno}", errno);
        long pagemap = -1, clearRefs = -1;
        try
        {
            page[0] = 1;
            pagemap = Open("/proc/self/pagemap", O_RDONLY, out errno);
            if (pagemap == -1) return ProbeResult.Failed("open(/proc/self/pagemap)", errno);
            clearRefs = Open("/proc/self/clear_refs", O_WRONLY, out errno);
            if (clearRefs == -1) return ProbeResult.Failed("open(/proc/self/clear_refs)", errno);
            byte four = (byte)'4';
            if (Sys(Nr.write, out errno, clearRefs, (long)&four, 1) != 1)
                return ProbeResult.Failed("write(/proc/self/clear_refs, \"4\")", errno);

            if (!ReadPagemapEntry(pagemap, page, out ulong afterClear, out string problem)) return ProbeResult.Missing(problem);
            if ((afterClear & PM_SOFT_DIRTY) != 0)
                return ProbeResult.Missing("pagemap bit 55 still set after clear_refs 4");
            page[0] = 2;
            if (!ReadPagemapEntry(pagemap, page, out ulong afterWrite, out problem)) return ProbeResult.Missing(problem);
            if ((afterWrite & PM_PRESENT) == 0) return ProbeResult.Missing("the written page is not present in pagemap");
            if ((afterWrite & PM_SOFT_DIRTY) == 0)
                return ProbeResult.Missing("pagemap bit 55 stayed clear after a write (kernel without CONFIG_MEM_SOFT_DIRTY)");
            return ProbeResult.Ok("bit 55 cleared by clear_refs 4 and set again by a write");
        }
        finally
        {
            Close(clearRefs);
            Close(pagemap);
            Unmap(page, 1);
        }
    }

    private static bool ReadPagemapEntry(long pagemapFd, byte* page, out ulong entry, out string problem)
    {
        ulong value = 0;
        long offset = (long)((ulong)page / (ulong)PageSize * 8);
        long got = Sys(Nr.pread64, out var errno, pagemapFd, (long)&value, 8, offset);
        entry = value;
        problem = got == 8 ? "" : got == -1 ? $"pread(/proc/self/pagemap): {errno}" : $"pread(/proc/self/pagemap) returned {got} bytes";
        return got == 8;
    }
}
