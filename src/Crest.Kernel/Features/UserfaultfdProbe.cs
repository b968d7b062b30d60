// userfaultfd (Linux 4.3; /dev/userfaultfd 6.1), the non-cooperative events (4.11), and
// write-protect in async mode (UFFD_FEATURE_WP_UNPOPULATED 6.4, UFFD_FEATURE_WP_ASYNC 6.7) driven by
// PAGEMAP_SCAN (6.7): Crest's dirty-page tracking where soft-dirty is absent (ENGINE.md §5).
// The write-protect probe runs the whole mechanism once on four pages of its own.
using Nr = Crest.Kernel.Arch.X64.SyscallNumbers;
using static Crest.Kernel.Features.FeatureInterop;

namespace Crest.Kernel.Features;

/// <summary>What userfaultfd offers here.</summary>
public sealed record UserfaultfdProbeResults(
    ProbeResult Userfaultfd,
    ProbeResult NonCooperative,
    ProbeResult WriteProtectAsync,
    ulong Features);

public static unsafe partial class FeatureProbes
{
    private const long UFFD_API = 0xAA;
    // include/uapi/linux/userfaultfd.h ioctl numbers.
    private const long UFFDIO_API = 0xC018AA3F, UFFDIO_REGISTER = 0xC020AA00, USERFAULTFD_IOC_NEW = 0xAA00;
    private const ulong UFFDIO_REGISTER_MODE_WP = 1 << 1;
    internal const ulong UFFD_FEATURE_EVENT_FORK = 1 << 1, UFFD_FEATURE_EVENT_REMAP = 1 << 2,
        UFFD_FEATURE_EVENT_REMOVE = 1 << 3, UFFD_FEATURE_EVENT_UNMAP = 1 << 6,
        UFFD_FEATURE_WP_UNPOPULATED = 1 << 13, UFFD_FEATURE_WP_ASYNC = 1 << 15;
    private const ulong NonCooperativeFeatures =
        UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP;

    /// <summary>struct uffdio_api.</summary>
    private struct UffdioApi
    {
        public ulong Api, Features, Ioctls;
    }

    /// <summary>Probe userfaultfd, its non-cooperative events and async write-protect dirty tracking.</summary>
    public static UserfaultfdProbeResults ProbeUserfaultfd()
    {
        long fd = NewUserfaultfd(out string how, out var errno);
        if (fd == -1)
        {
            var none = ProbeResult.Missing(how, errno);
            var untested = ProbeResult.Missing($"untested: {how}", errno);
            return new UserfaultfdProbeResults(none, untested, untested, 0);
        }

        ulong features;
        try
        {
            // UFFDIO_API answers with every feature the kernel has, whatever was asked for; one call per fd.
            var api = new UffdioApi { Api = UFFD_API };
            if (Sys(Nr.ioctl, out errno, fd, UFFDIO_API, (long)&api) == -1)
            {
                var failed = ProbeResult.Failed("ioctl(UFFDIO_API)", errno);
                var untested = ProbeResult.Missing($"untested: {failed.Detail}", errno);
                return new UserfaultfdProbeResults(failed, untested, untested, 0);
            }
            features = api.Features;
        }
        finally
        {
            Close(fd);
        }

        var basic = ProbeResult.Ok($"{how}, features 0x{features:x}");
        ulong lacking = NonCooperativeFeatures & ~features;
        var nonCooperative = lacking == 0
            ? ProbeResult.Ok("fork, remap, remove and unmap events")
            : ProbeResult.Missing($"features 0x{features:x} lack 0x{lacking:x} (fork/remap/remove/unmap events)");
        return new UserfaultfdProbeResults(basic, nonCooperative, ProbeWriteProtectAsync(features), features);
    }

    /// <summary>
    /// Register four written pages for async write-protect, write-protect them with PAGEMAP_SCAN
    /// (PM_SCAN_WP_MATCHING), write one, and check a second scan reports exactly that one as written.
    /// </summary>
    private static ProbeResult ProbeWriteProtectAsync(ulong offered)
    {
        const ulong wanted = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
        if ((offered & wanted) != wanted)
            return ProbeResult.Missing($"UFFD_FEATURE_WP_ASYNC|WP_UNPOPULATED not offered (features 0x{offered:x})");

        const int pages = 4;
        long uffd = NewUserfaultfd(out string how, out var errno);
        if (uffd == -1) return ProbeResult.Missing(how, errno);
        byte* area = null;
        long pagemap = -1;
        try
        {
            var api = new UffdioApi { Api = UFFD_API, Features = wanted };
            if (Sys(Nr.ioctl, out errno, uffd, UFFDIO_API, (long)&api) == -1)
                return ProbeResult.Failed("ioctl(UFFDIO_API, WP_ASYNC|WP_UNPOPULATED)", errno);

            area = MapAnonymous(pages, out errno);
            if (area == null) return ProbeResult.Missing($"untested: mmap: {errno}", errno);
            for (int i = 0; i < pages; i++) area[i * PageSize] = 1;

            // struct uffdio_register { struct uffdio_range { u64 start, len; } range; u64 mode; u64 ioctls; }
            ulong* register = stackalloc ulong[4] { (ulong)area, (ulong)(pages * PageSize), UFFDIO_REGISTER_MODE_WP, 0 };
            if (Sys(Nr.ioctl, out errno, uffd, UFFDIO_REGISTER, (long)register) == -1)
                return ProbeResult.Failed("ioctl(UFFDIO_REGISTER, MODE_WP)", errno);

            pagemap = Open("/proc/self/pagemap", O_RDONLY, out errno);
            if (pagemap == -1) return ProbeResult.Failed("open(/proc/self/pagemap)", errno);
            PageRegion* regions = stackalloc PageRegion[pages];
            long found = PagemapScan(pagemap, area, pages, PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
                PAGE_IS_WRITTEN, regions, pages, out errno);
            if (found == -1) return ProbeResult.Failed("ioctl(PAGEMAP_SCAN, PM_SCAN_WP_MATCHING)", errno);

            area[1 * PageSize] = 2;
            found = PagemapScan(pagemap, area, pages, PM_SCAN_CHECK_WPASYNC, PAGE_IS_WRITTEN, regions, pages, out errno);
            if (found == -1) return ProbeResult.Failed("ioctl(PAGEMAP_SCAN, PAGE_IS_WRITTEN)", errno);
            ulong second = (ulong)area + (ulong)PageSize;
            if (found != 1 || regions[0].Start != second || regions[0].End != second + (ulong)PageSize)
                return ProbeResult.Missing($"after write-protecting 4 pages and writing 1, PAGEMAP_SCAN reported {found} written regions");
            return ProbeResult.Ok("write-protected 4 pages, wrote 1, the scan reported exactly that page");
        }
        finally
        {
            Close(pagemap);
            Close(uffd); // releasing the fd unregisters the range
            Unmap(area, pages);
        }
    }

    /// <summary>A userfaultfd: the syscall, else /dev/userfaultfd (for callers the syscall refuses).</summary>
    private static long NewUserfaultfd(out string how, out Errno errno)
    {
        long fd = Sys(Nr.userfaultfd, out errno, O_CLOEXEC | O_NONBLOCK);
        if (fd != -1) { how = "userfaultfd()"; return fd; }
        var syscallErrno = errno;
        long device = Open("/dev/userfaultfd", O_RDWR, out errno);
        if (device == -1)
        {
            how = $"userfaultfd: {syscallErrno}; open(/dev/userfaultfd): {errno}";
            errno = syscallErrno;
            return -1;
        }
        fd = Sys(Nr.ioctl, out errno, device, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
        Close(device);
        how = fd == -1 ? $"userfaultfd: {syscallErrno}; ioctl(USERFAULTFD_IOC_NEW): {errno}" : "/dev/userfaultfd";
        return fd;
    }
}
