// Interfaces for dumping files and namespaces that CRIU's check names: timerfd state in fdinfo and
// TFD_IOC_SET_TICKS (Linux 3.17, CONFIG_CHECKPOINT_RESTORE), kcmp(KCMP_EPOLL_TFD) (4.13),
// /proc/PID/map_files (3.3), mnt_id in /proc/PID/fdinfo (3.15), and the user namespace file with
// PR_SET_MM_MAP (what CRIU calls userns).
using System.Text;
using Nr = Crest.Kernel.Arch.X64.SyscallNumbers;
using static Crest.Kernel.Features.FeatureInterop;

namespace Crest.Kernel.Features;

public static unsafe partial class FeatureProbes
{
    private const int CLOCK_MONOTONIC = 1, TFD_CLOEXEC = 0x80000;
    private const long TFD_IOC_SET_TICKS = 0x40085400; // _IOW('T', 0, u64)

    /// <summary>Arm a timerfd, find it in fdinfo, and set its tick count as restore does.</summary>
    public static ProbeResult ProbeTimerfd()
    {
        long fd = Sys(NR_timerfd_create, out var errno, CLOCK_MONOTONIC, TFD_CLOEXEC);
        if (fd == -1) return ProbeResult.Failed("timerfd_create", errno);
        try
        {
            // struct itimerspec { it_interval {0, 0}; it_value {3600 s, 0} }
            long* spec = stackalloc long[4] { 0, 0, 3600, 0 };
            if (Sys(NR_timerfd_settime, out errno, fd, 0, (long)spec, 0) == -1) return ProbeResult.Failed("timerfd_settime", errno);
            string info = File.ReadAllText($"/proc/self/fdinfo/{fd}");
            if (!info.Contains("clockid:", StringComparison.Ordinal) || !info.Contains("it_value:", StringComparison.Ordinal))
                return ProbeResult.Missing("fdinfo of a timerfd has no clockid/it_value lines");
            ulong ticks = 1;
            if (Sys(Nr.ioctl, out errno, fd, TFD_IOC_SET_TICKS, (long)&ticks) == -1)
                return ProbeResult.Failed("ioctl(TFD_IOC_SET_TICKS)", errno);
            return ProbeResult.Ok("fdinfo shows the timer, TFD_IOC_SET_TICKS accepted");
        }
        finally
        {
            Close(fd);
        }
    }

    private const int KCMP_EPOLL_TFD = 7, EPOLL_CTL_ADD = 1, EPOLLIN = 1, EPOLL_CLOEXEC = 0x80000;

    /// <summary>kcmp(KCMP_EPOLL_TFD): is a pipe's read end the target registered in an epoll?</summary>
    public static ProbeResult ProbeKcmpEpoll()
    {
        long epfd = -1;
        int* pipe = stackalloc int[2] { -1, -1 };
        try
        {
            epfd = Sys(NR_epoll_create1, out var errno, EPOLL_CLOEXEC);
            if (epfd == -1) return ProbeResult.Missing($"untested: epoll_create1: {errno}", errno);
            if (Sys(Nr.pipe2, out errno, (long)pipe, O_CLOEXEC) == -1) return ProbeResult.Missing($"untested: pipe2: {errno}", errno);
            // struct epoll_event is packed on x86_64: u32 events, u64 data.
            byte* ev = stackalloc byte[12];
            new Span<byte>(ev, 12).Clear();
            *(uint*)ev = EPOLLIN;
            if (Sys(NR_epoll_ctl, out errno, epfd, EPOLL_CTL_ADD, pipe[0], (long)ev) == -1)
                return ProbeResult.Missing($"untested: epoll_ctl: {errno}", errno);
            // struct kcmp_epoll_slot { u32 efd, tfd, toff; }
            uint* slot = stackalloc uint[3] { (uint)epfd, (uint)pipe[0], 0 };
            int pid = Environment.ProcessId;
            long same = Sys(Nr.kcmp, out errno, pid, pid, KCMP_EPOLL_TFD, pipe[0], (long)slot);
            if (same == -1) return ProbeResult.Failed("kcmp(KCMP_EPOLL_TFD)", errno);
            return same == 0 ? ProbeResult.Ok() : ProbeResult.Missing($"kcmp(KCMP_EPOLL_TFD) says the registered file differs ({same})");
        }
        finally
        {
            Close(pipe[0]);
            Close(pipe[1]);
            Close(epfd);
        }
    }

    /// <summary>/proc/self/map_files lists our mappings and its links resolve.</summary>
    public static ProbeResult ProbeMapFiles()
    {
        try
        {
            string? first = Directory.EnumerateFileSystemEntries("/proc/self/map_files").FirstOrDefault();
            if (first is null) return ProbeResult.Missing("/proc/self/map_files is empty");
            string? target = new FileInfo(first).LinkTarget;
            return target is null ? ProbeResult.Missing($"{first} is not a link") : ProbeResult.Ok();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return ProbeResult.Missing($"/proc/self/map_files: {e.Message}");
        }
    }

    /// <summary>fdinfo of an open file names the mount it is on (mnt_id), which ties a dumped file to its mount.</summary>
    public static ProbeResult ProbeFdinfoMntId()
    {
        long fd = Open("/proc/self/status", O_RDONLY, out var errno);
        if (fd == -1) return ProbeResult.Missing($"untested: open(/proc/self/status): {errno}", errno);
        try
        {
            foreach (string line in File.ReadLines($"/proc/self/fdinfo/{fd}"))
            {
                if (!line.StartsWith("mnt_id:", StringComparison.Ordinal)) continue;
                return int.TryParse(line.AsSpan(7).Trim(), out int mountId)
                    ? ProbeResult.Ok($"mnt_id {mountId}")
                    : ProbeResult.Missing($"fdinfo has an unreadable mnt_id line: {line}");
            }
            return ProbeResult.Missing("fdinfo has no mnt_id line");
        }
        finally
        {
            Close(fd);
        }
    }

    /// <summary>The user namespace file exists and PR_SET_MM_MAP works (CRIU's test for restoring into a user namespace).</summary>
    public static ProbeResult ProbeUserNamespace()
    {
        if (!Path.Exists("/proc/self/ns/user")) return ProbeResult.Missing("no /proc/self/ns/user");
        var mm = ProbePrctlMmMap();
        return mm.Present ? ProbeResult.Ok("/proc/self/ns/user, PR_SET_MM_MAP") : mm;
    }
}
