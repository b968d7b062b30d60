// Process-level interfaces the engine uses from outside the task: pidfd_open (Linux 5.3),
// pidfd_getfd (5.6), process_vm_readv (3.2), clone3 with set_tid (5.5, CAP_CHECKPOINT_RESTORE or
// CAP_SYS_ADMIN), prctl(PR_SET_MM, PR_SET_MM_MAP) (3.18), prctl(PR_TIMER_CREATE_RESTORE_IDS) (6.15).
// All probes act on this process itself and create no task.
using Nr = Crest.Kernel.Arch.X64.SyscallNumbers;
using static Crest.Kernel.Features.FeatureInterop;

namespace Crest.Kernel.Features;

public static unsafe partial class FeatureProbes
{
    /// <summary>pidfd_open on this process.</summary>
    public static ProbeResult ProbePidfdOpen()
    {
        long pidfd = Sys(Nr.pidfd_open, out var errno, Environment.ProcessId, 0);
        if (pidfd == -1) return ProbeResult.Failed("pidfd_open", errno);
        Close(pidfd);
        return ProbeResult.Ok();
    }

    /// <summary>pidfd_getfd: duplicate our own pidfd through itself (needs the same ptrace access as for another task).</summary>
    public static ProbeResult ProbePidfdGetfd()
    {
        long pidfd = Sys(Nr.pidfd_open, out var errno, Environment.ProcessId, 0);
        if (pidfd == -1) return ProbeResult.Missing($"untested: pidfd_open: {errno}", errno);
        try
        {
            long copy = Sys(Nr.pidfd_getfd, out errno, pidfd, pidfd, 0);
            if (copy == -1) return ProbeResult.Failed("pidfd_getfd", errno);
            Close(copy);
            return ProbeResult.Ok($"fd {pidfd} duplicated as fd {copy}");
        }
        finally
        {
            Close(pidfd);
        }
    }

    /// <summary>process_vm_readv from this process into itself.</summary>
    public static ProbeResult ProbeProcessVmReadv()
    {
        ulong source = 0x5eed_c0de_f00d_cafe, target = 0;
        // struct iovec { void *base; size_t len; }
        long* local = stackalloc long[2] { (long)&target, 8 };
        long* remote = stackalloc long[2] { (long)&source, 8 };
        long got = Sys(Nr.process_vm_readv, out var errno, Environment.ProcessId, (long)local, 1, (long)remote, 1, 0);
        if (got == -1) return ProbeResult.Failed("process_vm_readv", errno);
        if (got != 8 || target != source) return ProbeResult.Missing($"process_vm_readv copied {got} bytes, value 0x{target:x}");
        return ProbeResult.Ok();
    }

    private const long CLONE_VM = 0x100, CLONE_FS = 0x200, CLONE_FILES = 0x400;
    private const int CAP_SYS_ADMIN = 21, CAP_CHECKPOINT_RESTORE = 40;

    /// <summary>
    /// clone3 asking for our own PID as the child's: a kernel that knows set_tid and lets us use it
    /// fails with EEXIST (the PID is taken) before any task exists. No task can ever be created:
    /// this process holds that PID for the whole call.
    /// </summary>
    public static ProbeResult ProbeClone3SetTid()
    {
        string caps = EffectiveCapabilityNote();
        int ourPid = Environment.ProcessId;
        // struct clone_args up to set_tid_size, CLONE_ARGS_SIZE_VER1 (80 bytes): flags, pidfd, child_tid,
        // parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size.
        long* args = stackalloc long[10];
        new Span<long>(args, 10).Clear();
        // Shared VM, fs and files keep the doomed copy_process cheap (no duplication of our address space).
        args[0] = CLONE_VM | CLONE_FS | CLONE_FILES;
        int* setTid = stackalloc int[1] { ourPid };
        args[8] = (long)setTid;
        args[9] = 1;
        long ret = Sys(Nr.clone3, out var errno, (long)args, 80);
        if (ret != -1)
        {
            // Unreachable while we are alive; if it ever happened, the child must not run our code.
            if (ret == 0) Sys(Nr.exit, out _, 127);
            return ProbeResult.Missing($"clone3 created task {ret} with a PID that is in use");
        }
        return errno.Value switch
        {
            Errno.EEXIST => ProbeResult.Ok($"set_tid honoured (EEXIST for our own PID {ourPid}); {caps}"),
            Errno.EPERM => ProbeResult.Missing($"clone3(set_tid): {errno}: needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN; {caps}", errno),
            Errno.ENOSYS => ProbeResult.Missing($"clone3: {errno}: no clone3 (Linux < 5.3)", errno),
            Errno.E2BIG or Errno.EINVAL => ProbeResult.Missing($"clone3(set_tid): {errno}: set_tid unknown (Linux < 5.5)", errno),
            _ => ProbeResult.Failed("clone3(set_tid)", errno),
        };
    }

    /// <summary>Which of the capabilities that allow set_tid are in our effective set.</summary>
    private static string EffectiveCapabilityNote()
    {
        ulong? effective = ReadEffectiveCapabilities();
        if (effective is not ulong caps) return "CapEff unreadable";
        bool checkpointRestore = (caps & (1UL << CAP_CHECKPOINT_RESTORE)) != 0;
        bool sysAdmin = (caps & (1UL << CAP_SYS_ADMIN)) != 0;
        return $"CAP_CHECKPOINT_RESTORE {(checkpointRestore ? "yes" : "no")}, CAP_SYS_ADMIN {(sysAdmin ? "yes" : "no")}";
    }

    /// <summary>CapEff from /proc/self/status.</summary>
    internal static ulong? ReadEffectiveCapabilities()
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (!line.StartsWith("CapEff:", StringComparison.Ordinal)) continue;
            return ulong.TryParse(line.AsSpan(7).Trim(), System.Globalization.NumberStyles.HexNumber, null, out ulong value) ? value : null;
        }
        return null;
    }

    private const int PR_SET_MM = 35, PR_SET_MM_MAP_SIZE = 15;
    private const int PR_TIMER_CREATE_RESTORE_IDS = 77, PR_TIMER_CREATE_RESTORE_IDS_GET = 2;

    /// <summary>prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE): the kernel answers with sizeof(struct prctl_mm_map).</summary>
    public static ProbeResult ProbePrctlMmMap()
    {
        uint size = 0;
        if (Sys(Nr.prctl, out var errno, PR_SET_MM, PR_SET_MM_MAP_SIZE, (long)&size, 0, 0) == -1)
            return ProbeResult.Failed("prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE)", errno);
        if (size == 0) return ProbeResult.Missing("prctl(PR_SET_MM_MAP_SIZE) reported size 0");
        return ProbeResult.Ok($"struct prctl_mm_map is {size} bytes");
    }

    /// <summary>prctl(PR_TIMER_CREATE_RESTORE_IDS, GET): 0 or 1 on kernels that let timer_create take a chosen id.</summary>
    public static ProbeResult ProbeTimerRestoreIds()
    {
        long mode = Sys(Nr.prctl, out var errno, PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_GET, 0, 0, 0);
        if (mode == -1) return ProbeResult.Failed("prctl(PR_TIMER_CREATE_RESTORE_IDS, GET)", errno);
        return ProbeResult.Ok($"mode {(mode == 0 ? "off" : "on")}");
    }
}
