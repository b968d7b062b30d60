// CRIU's `check --feature` names (criu/cr-check.c, feature_list, CRIU 4.x) and the crest feature that
// answers for each. Names CRIU knows but crest does not probe map to null: crest treats them as
// unknown, which gives the non-zero exit a harness reads as "skip the tests that need it".
namespace Crest.Engine.Check;

internal static class CriuFeatureNames
{
    public static readonly IReadOnlyDictionary<string, string?> ToCrest = new Dictionary<string, string?>(StringComparer.Ordinal)
    {
        ["mnt_id"] = "mnt_id",
        ["mem_dirty_track"] = "mem_dirty_track",
        ["aio_remap"] = null,
        ["timerfd"] = "timerfd",
        ["tun"] = null,
        ["tun_ns"] = null,
        ["userns"] = "userns",
        ["fdinfo_lock"] = null,
        ["seccomp_suspend"] = "seccomp_suspend",
        ["seccomp_filters"] = "seccomp_filters",
        ["loginuid"] = null,
        ["cgroupns"] = null,
        ["autofs"] = null,
        ["tcp_half_closed"] = "tcp_half_closed",
        ["compat_cr"] = null,
        ["uffd"] = "uffd",
        ["uffd-noncoop"] = "uffd-noncoop",
        ["can_map_vdso"] = null, // crest moves the vDSO with mremap (vdso_layout) and never maps one
        ["sk_ns"] = null,
        ["sk_unix_file"] = null,
        ["net_diag_raw"] = null,
        ["nsid"] = null,
        ["link_nsid"] = null,
        ["kcmp_epoll"] = "kcmp_epoll",
        ["timens"] = null,
        ["external_net_ns"] = null, // a tool capability in CRIU, not a kernel one; crest lacks it
        ["clone3_set_tid"] = "clone3_set_tid",
        ["newifindex"] = null,
        ["nftables"] = null,
        ["has_ipt_legacy"] = null,
        ["pidfd_store"] = "pidfd_getfd", // pidfd_open + pidfd_getfd, as in CRIU
        ["ns_pid"] = null,
        ["apparmor_stacking"] = null,
        ["network_lock_nftables"] = null,
        ["sockopt_buf_lock"] = null,
        ["memfd_hugetlb"] = null,
        ["move_mount_set_group"] = null,
        ["openat2"] = null,
        ["get_rseq_conf"] = "get_rseq_conf",
        ["ipv6_freebind"] = null,
        ["pagemap_scan"] = "pagemap_scan",
        ["timer_cr_ids"] = "timer_cr_ids",
        ["overlayfs_maps"] = null,
        ["pagemap_scan_guard_pages"] = "pagemap_scan_guard_pages",
        ["binfmt_misc_sandboxing"] = null,
    };
}
