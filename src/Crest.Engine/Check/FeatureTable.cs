// What the engine asks of the kernel (ENGINE.md), one row per feature: required for every dump or
// restore, or extra (needed for particular resources or modes). The order is the report's order.
using Crest.Kernel.Features;

namespace Crest.Engine.Check;

internal static class FeatureTable
{
    public static readonly IReadOnlyList<KernelFeature> Features =
    [
        // Freezing and reading tasks (ENGINE.md §2, §3).
        new("ptrace_seize", FeatureCategory.Required,
            "freeze tasks and inject syscalls (PTRACE_SEIZE, PTRACE_INTERRUPT)",
            "no dump or restore at all", run => run.Ptrace.Seize),
        new("ptrace_syscall_info", FeatureCategory.Required,
            "see the syscall a task was stopped in (PTRACE_GET_SYSCALL_INFO)",
            "tasks stopped inside a syscall cannot be dumped", run => run.Ptrace.SyscallInfo),
        new("get_rseq_conf", FeatureCategory.Required,
            "dump rseq registrations (PTRACE_GET_RSEQ_CONFIGURATION)",
            "processes using rseq (every thread under glibc 2.35 or later) cannot be dumped", run => run.Ptrace.RseqConfiguration),
        new("pidfd_getfd", FeatureCategory.Required,
            "duplicate a task's file descriptors into crest (pidfd_open, pidfd_getfd)",
            "open files cannot be dumped", _ => BothPresent(FeatureProbes.ProbePidfdOpen(), FeatureProbes.ProbePidfdGetfd())),
        new("mnt_id", FeatureCategory.Required,
            "tie each dumped file to its mount (mnt_id in /proc/PID/fdinfo)",
            "open files cannot be dumped", _ => FeatureProbes.ProbeFdinfoMntId()),
        new("process_vm", FeatureCategory.Required,
            "copy memory out of and into tasks (process_vm_readv/writev)",
            "memory cannot be dumped or restored", _ => FeatureProbes.ProbeProcessVmReadv()),
        new("map_files", FeatureCategory.Required,
            "open a task's mappings (/proc/PID/map_files)",
            "shared memory and file mappings cannot be dumped", _ => FeatureProbes.ProbeMapFiles()),
        // Restoring (ENGINE.md §4).
        new("clone3_set_tid", FeatureCategory.Required,
            "create tasks with their dumped PIDs (clone3 set_tid)",
            "no restore: PIDs cannot be chosen", _ => FeatureProbes.ProbeClone3SetTid()),
        new("prctl_mm_map", FeatureCategory.Required,
            "restore brk, arguments, environment, auxv and exe link (PR_SET_MM_MAP)",
            "no restore: mm fields cannot be set", _ => FeatureProbes.ProbePrctlMmMap()),
        new("vdso_layout", FeatureCategory.Required,
            "move a new task's [vvar]/[vvar_vclock]/[vdso] to the dumped addresses (mremap)",
            "no restore: the vDSO cannot be placed", _ => FeatureProbes.ProbeVdsoLayout()),

        // Memory tracking and transport (ENGINE.md §5).
        new("pagemap_scan", FeatureCategory.Extra,
            "find present and written pages in one ioctl (PAGEMAP_SCAN)",
            "page discovery falls back to reading /proc/PID/pagemap; no uffd-wp dirty tracking", _ => FeatureProbes.ProbePagemapScan()),
        new("pagemap_scan_guard_pages", FeatureCategory.Extra,
            "record guard regions (PAGEMAP_SCAN PAGE_IS_GUARD) and install them again (MADV_GUARD_INSTALL)",
            "guard regions are neither seen by dump nor installed by restore", _ => FeatureProbes.ProbePagemapScanGuardPages()),
        new("soft_dirty", FeatureCategory.Extra,
            "track written pages with soft-dirty bits (clear_refs, pagemap bit 55)",
            "dirty tracking needs uffd-wp async + PAGEMAP_SCAN instead", _ => FeatureProbes.ProbeSoftDirty(),
            CoveredBy: "mem_dirty_track"),
        new("uffd_wp_async", FeatureCategory.Extra,
            "track written pages with userfaultfd write-protect in async mode",
            "dirty tracking needs soft-dirty instead", run => run.Userfaultfd.WriteProtectAsync,
            CoveredBy: "mem_dirty_track"),
        new("mem_dirty_track", FeatureCategory.Extra,
            "incremental pre-dump and --track-mem",
            "incremental pre-dump falls back to full dumps", DirtyTracking),
        new("uffd", FeatureCategory.Extra,
            "lazy-pages: restore with memory filled on demand (userfaultfd)",
            "--lazy-pages and post-copy migration unavailable", run => run.Userfaultfd.Userfaultfd),
        new("uffd-noncoop", FeatureCategory.Extra,
            "lazy-pages for trees that fork, mremap or munmap (userfaultfd events)",
            "lazy restore of such trees unavailable", run => run.Userfaultfd.NonCooperative),

        // Particular resources.
        new("seccomp_suspend", FeatureCategory.Extra,
            "inject syscalls into tasks under seccomp (PTRACE_O_SUSPEND_SECCOMP)",
            "tasks with seccomp filters cannot be dumped", run => run.Ptrace.SuspendSeccomp),
        new("seccomp_filters", FeatureCategory.Extra,
            "dump seccomp filters (PTRACE_SECCOMP_GET_FILTER)",
            "tasks with seccomp filters cannot be dumped", run => run.Ptrace.SeccompGetFilter),
        new("timer_cr_ids", FeatureCategory.Extra,
            "restore POSIX timers with their ids (PR_TIMER_CREATE_RESTORE_IDS)",
            "POSIX timers cannot be restored with their ids", _ => FeatureProbes.ProbeTimerRestoreIds()),
        new("tcp_repair", FeatureCategory.Extra,
            "dump and restore established TCP connections (TCP_REPAIR)",
            "--tcp-established unavailable", _ => FeatureProbes.ProbeTcpRepair()),
        new("tcp_half_closed", FeatureCategory.Extra,
            "repair half-closed TCP connections",
            "half-closed TCP connections cannot be dumped", _ => FeatureProbes.ProbeTcpHalfClosed()),
        new("timerfd", FeatureCategory.Extra,
            "dump and restore timerfds (fdinfo, TFD_IOC_SET_TICKS)",
            "timerfds cannot be restored", _ => FeatureProbes.ProbeTimerfd()),
        new("kcmp_epoll", FeatureCategory.Extra,
            "identify the files an epoll watches (kcmp KCMP_EPOLL_TFD)",
            "epoll sets cannot be dumped exactly", _ => FeatureProbes.ProbeKcmpEpoll()),
        new("userns", FeatureCategory.Extra,
            "restore tasks in user namespaces (/proc/PID/ns/user, PR_SET_MM_MAP)",
            "user namespaces cannot be restored", _ => FeatureProbes.ProbeUserNamespace()),
    ];

    public static KernelFeature? Find(string name) => Features.FirstOrDefault(f => f.Name == name);

    private static ProbeResult BothPresent(ProbeResult first, ProbeResult second) => !first.Present ? first : second;

    /// <summary>
    /// Dirty tracking works if soft-dirty does, or else if uffd-wp async and PAGEMAP_SCAN both do
    /// (ENGINE.md §5): the detail names the mechanism pre-dump will use.
    /// </summary>
    private static ProbeResult DirtyTracking(ProbeRun run)
    {
        var softDirty = run["soft_dirty"];
        if (softDirty.Present) return ProbeResult.Ok("via soft-dirty");
        var uffdWp = run["uffd_wp_async"];
        var scan = run["pagemap_scan"];
        if (uffdWp.Present && scan.Present) return ProbeResult.Ok("via uffd-wp async + PAGEMAP_SCAN (soft-dirty is missing)");
        var lacking = !uffdWp.Present ? uffdWp : scan;
        return ProbeResult.Missing($"no soft-dirty ({softDirty.Detail}) and no uffd-wp + PAGEMAP_SCAN ({lacking.Detail})");
    }
}
