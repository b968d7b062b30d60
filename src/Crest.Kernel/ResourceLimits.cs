// Resource limits: getrlimit(2) for Crest itself, prlimit64(2) (Linux 2.6.36) for any task.
// prlimit64 on another task needs matching real/effective/saved uids and gids, or CAP_SYS_RESOURCE
// over the task's user namespace; without them it fails with EPERM, which surfaces as a
// KernelException with Errno.EPERM so the engine can fall back to asking inside the task.
using Crest.Kernel.Interop;

namespace Crest.Kernel;

/// <summary>RLIMIT_* numbers (include/uapi/asm-generic/resource.h).</summary>
public enum ResourceLimitKind
{
    Cpu = 0, FileSize = 1, Data = 2, Stack = 3, Core = 4, Rss = 5, NProc = 6, NoFile = 7, MemLock = 8,
    AddressSpace = 9, Locks = 10, SigPending = 11, MsgQueue = 12, Nice = 13, RtPrio = 14, RtTime = 15,
}

/// <summary>A soft (Current) and hard (Maximum) limit; Infinity is RLIM_INFINITY.</summary>
public readonly record struct ResourceLimit(ulong Current, ulong Maximum)
{
    public const ulong Infinity = ulong.MaxValue;

    public override string ToString() =>
        $"{(Current == Infinity ? "unlimited" : Current)}/{(Maximum == Infinity ? "unlimited" : Maximum)}";
}

public static class ResourceLimits
{
    /// <summary>The number of RLIMIT_* kinds this kernel ABI has (RLIM_NLIMITS).</summary>
    public const int Count = Libc.RLIMIT_NLIMITS;

    /// <summary>getrlimit(2) of Crest's own process.</summary>
    public static unsafe ResourceLimit Get(ResourceLimitKind kind)
    {
        rlimit64 r;
        if (Libc.getrlimit((int)kind, &r) != 0) throw new KernelException($"getrlimit(RLIMIT_{Name(kind)})", Errno.Last);
        return new ResourceLimit(r.rlim_cur, r.rlim_max);
    }

    /// <summary>prlimit64(pid, kind, NULL, &amp;old): another task's limit (pid 0: ourselves).</summary>
    public static unsafe ResourceLimit Get(int pid, ResourceLimitKind kind)
    {
        rlimit64 old;
        if (Libc.prlimit64(pid, (int)kind, null, &old) != 0)
            throw new KernelException($"prlimit64(RLIMIT_{Name(kind)})", pid, Errno.Last);
        return new ResourceLimit(old.rlim_cur, old.rlim_max);
    }

    /// <summary>prlimit64(pid, kind, &amp;limit, &amp;old): sets a task's limit, returns the previous one.</summary>
    public static unsafe ResourceLimit Set(int pid, ResourceLimitKind kind, ResourceLimit limit)
    {
        rlimit64 value = new() { rlim_cur = limit.Current, rlim_max = limit.Maximum };
        rlimit64 old;
        if (Libc.prlimit64(pid, (int)kind, &value, &old) != 0)
            throw new KernelException($"prlimit64(RLIMIT_{Name(kind)})", pid, Errno.Last, $"to {limit}");
        return new ResourceLimit(old.rlim_cur, old.rlim_max);
    }

    private static string Name(ResourceLimitKind kind) => kind switch
    {
        ResourceLimitKind.Cpu => "CPU", ResourceLimitKind.FileSize => "FSIZE", ResourceLimitKind.Data => "DATA",
        ResourceLimitKind.Stack => "STACK", ResourceLimitKind.Core => "CORE", ResourceLimitKind.Rss => "RSS",
        ResourceLimitKind.NProc => "NPROC", ResourceLimitKind.NoFile => "NOFILE", ResourceLimitKind.MemLock => "MEMLOCK",
        ResourceLimitKind.AddressSpace => "AS", ResourceLimitKind.Locks => "LOCKS",
        ResourceLimitKind.SigPending => "SIGPENDING", ResourceLimitKind.MsgQueue => "MSGQUEUE",
        ResourceLimitKind.Nice => "NICE", ResourceLimitKind.RtPrio => "RTPRIO", ResourceLimitKind.RtTime => "RTTIME",
        _ => ((int)kind).ToString(),
    };
}
