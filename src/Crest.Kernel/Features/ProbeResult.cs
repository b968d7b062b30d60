// The answer of one kernel feature probe: present or missing, and why (the errno the kernel gave,
// or what the probe saw). Probes never throw for a missing feature: a missing feature is a result.
namespace Crest.Kernel.Features;

/// <summary>Whether a kernel feature works here, with the evidence.</summary>
public readonly record struct ProbeResult(bool Present, string Detail, Errno Errno)
{
    /// <summary>The feature worked; <paramref name="detail"/> says what the probe saw.</summary>
    public static ProbeResult Ok(string detail = "") => new(true, detail, default);

    /// <summary>The feature is absent or unusable; <paramref name="reason"/> says how the probe knows.</summary>
    public static ProbeResult Missing(string reason, Errno errno = default) => new(false, reason, errno);

    /// <summary>A missing result for a call that failed with <paramref name="errno"/>:
    /// <c>prctl(PR_SET_MM_MAP_SIZE): EINVAL (Invalid argument)</c>.</summary>
    public static ProbeResult Failed(string call, Errno errno) => new(false, $"{call}: {errno}", errno);

    public override string ToString() => Present
        ? (Detail.Length == 0 ? "present" : $"present ({Detail})")
        : $"missing ({Detail})";
}
