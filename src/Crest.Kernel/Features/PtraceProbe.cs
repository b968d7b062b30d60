// ptrace features, probed on a real child: PTRACE_SEIZE / PTRACE_INTERRUPT (Linux 3.4),
// PTRACE_GET_SYSCALL_INFO (5.3), PTRACE_GET_RSEQ_CONFIGURATION (5.13), PTRACE_O_SUSPEND_SECCOMP (4.3),
// PTRACE_SECCOMP_GET_FILTER (4.4).
//
// The child is /bin/sleep started with posix_spawn (never fork in a .NET process, never
// System.Diagnostics.Process: its SIGCHLD handling would steal the stops, ENGINE.md §1). To read a
// seccomp filter back, the child must have one, and the tracer must have none (the kernel refuses
// PTRACE_SECCOMP_GET_FILTER and PTRACE_O_SUSPEND_SECCOMP to a tracer under seccomp). Filters are
// per thread and inherited by children: a short-lived thread installs an allow-everything filter and
// spawns the child, then exits taking the filter with it; the calling thread, filter-free, does every
// ptrace call and every wait (a tracee belongs to the thread that seized it). Every wait is bounded
// and the child is killed (PTRACE_O_EXITKILL as a backstop) and reaped before the probe returns.
using System.Diagnostics;
using Nr = Crest.Kernel.Arch.X64.SyscallNumbers;
using static Crest.Kernel.Features.FeatureInterop;

namespace Crest.Kernel.Features;

/// <summary>The ptrace requests the engine relies on, each probed on the same stopped child
/// (<paramref name="ChildPid"/>, already killed and reaped when the results are returned; 0 if none started).</summary>
public sealed record PtraceProbeResults(
    ProbeResult Seize,
    ProbeResult SyscallInfo,
    ProbeResult RseqConfiguration,
    ProbeResult SuspendSeccomp,
    ProbeResult SeccompGetFilter,
    int ChildPid);

public static unsafe partial class FeatureProbes
{
    private const long PTRACE_SETOPTIONS = 0x4200, PTRACE_SEIZE = 0x4206, PTRACE_INTERRUPT = 0x4207,
        PTRACE_SECCOMP_GET_FILTER = 0x420c, PTRACE_GET_SYSCALL_INFO = 0x420e, PTRACE_GET_RSEQ_CONFIGURATION = 0x420f;
    private const long PTRACE_O_EXITKILL = 1 << 20, PTRACE_O_SUSPEND_SECCOMP = 1 << 21;
    private const int PTRACE_EVENT_STOP = 128;
    private const int WNOHANG = 1, __WALL = 0x40000000;
    private const int PR_SET_NO_NEW_PRIVS = 38, PR_SET_SECCOMP = 22, SECCOMP_MODE_FILTER = 2;

    /// <summary>How long any wait on the probe child may take before the probe gives up.</summary>
    internal static readonly TimeSpan ChildWaitLimit = TimeSpan.FromSeconds(3);

    /// <summary>
    /// Set SIGCHLD to SIG_DFL, as the CLI's Main does first thing: an ignored SIGCHLD makes the kernel
    /// reap children itself, and the runtime's handler may reap them too (ENGINE.md §8). Hosts that
    /// run the probes outside the CLI (tests) call this before <see cref="ProbePtrace"/>.
    /// </summary>
    public static void UseDefaultChildSignal() => signal(SIGCHLD, SIG_DFL);

    /// <summary>
    /// Seize a spawned child, interrupt it, and try each ptrace request the engine uses on it.
    /// Must run on one thread from start to end (it does; nothing here is asynchronous).
    /// </summary>
    public static PtraceProbeResults ProbePtrace()
    {
        var spawn = SpawnFilteredChild();
        if (spawn.Pid <= 0)
        {
            var none = ProbeResult.Missing($"could not start a child to trace: {spawn.Error}");
            return new PtraceProbeResults(none, none, none, none, none, 0);
        }

        int pid = spawn.Pid;
        try
        {
            return ProbeSeized(pid, spawn.FilterError);
        }
        finally
        {
            if (!KillAndReap(pid))
                Crest.Diagnostics.Log.Warning($"check: probe child {pid} was not reaped within {ChildWaitLimit.TotalSeconds:0} s");
        }
    }

    private static PtraceProbeResults ProbeSeized(int pid, string? filterError)
    {
        // Let the child finish starting (glibc registers rseq then) and block in its sleep, so that
        // what the requests see is a settled task; if it never gets there, probe it as it is.
        WaitUntilSleeping(pid);
        if (Sys(Nr.ptrace, out var errno, PTRACE_SEIZE, pid, 0, PTRACE_O_EXITKILL) == -1)
        {
            var seizeFailed = ProbeResult.Failed("ptrace(PTRACE_SEIZE)", errno);
            var untested = ProbeResult.Missing($"untested: {seizeFailed.Detail}", errno);
            return new PtraceProbeResults(seizeFailed, untested, untested, untested, untested, pid);
        }

        if (Sys(Nr.ptrace, out errno, PTRACE_INTERRUPT, pid) == -1)
        {
            var interruptFailed = ProbeResult.Failed("ptrace(PTRACE_INTERRUPT)", errno);
            var untested = ProbeResult.Missing($"untested: {interruptFailed.Detail}", errno);
            return new PtraceProbeResults(interruptFailed, untested, untested, untested, untested, pid);
        }

        if (!WaitForStop(pid, out int status, out string waitProblem))
        {
            var noStop = ProbeResult.Missing(waitProblem);
            var untested = ProbeResult.Missing($"untested: {waitProblem}");
            return new PtraceProbeResults(noStop, untested, untested, untested, untested, pid);
        }

        int evt = status >> 16;
        var seize = ProbeResult.Ok(evt == PTRACE_EVENT_STOP ? "seized, interrupted, group-stop event seen" : $"seized, stopped with status 0x{status:x}");
        return new PtraceProbeResults(seize, ProbeSyscallInfo(pid), ProbeRseqConfiguration(pid),
            ProbeSuspendSeccomp(pid), ProbeSeccompGetFilter(pid, filterError), pid);
    }

    private static ProbeResult ProbeSyscallInfo(int pid)
    {
        // struct ptrace_syscall_info is 88 bytes on x86_64; the kernel returns how much it filled.
        byte* info = stackalloc byte[128];
        long size = Sys(Nr.ptrace, out var errno, PTRACE_GET_SYSCALL_INFO, pid, 128, (long)info);
        if (size == -1) return ProbeResult.Failed("ptrace(PTRACE_GET_SYSCALL_INFO)", errno);
        if (size <= 0) return ProbeResult.Missing($"ptrace(PTRACE_GET_SYSCALL_INFO) returned {size}");
        string op = info[0] switch { 0 => "none", 1 => "entry", 2 => "exit", 3 => "seccomp", _ => $"op {info[0]}" };
        return ProbeResult.Ok($"{size} bytes, op {op}");
    }

    private static ProbeResult ProbeRseqConfiguration(int pid)
    {
        // struct ptrace_rseq_configuration: u64 rseq_abi_pointer, u32 size, u32 signature, u32 flags, u32 pad.
        byte* config = stackalloc byte[24];
        long size = Sys(Nr.ptrace, out var errno, PTRACE_GET_RSEQ_CONFIGURATION, pid, 24, (long)config);
        if (size == -1) return ProbeResult.Failed("ptrace(PTRACE_GET_RSEQ_CONFIGURATION)", errno);
        ulong area = *(ulong*)config;
        uint areaSize = *(uint*)(config + 8);
        return ProbeResult.Ok(area == 0 ? "child has no rseq area" : $"child's rseq area 0x{area:x}, {areaSize} bytes");
    }

    private static ProbeResult ProbeSuspendSeccomp(int pid)
    {
        // Needs CONFIG_SECCOMP and CONFIG_CHECKPOINT_RESTORE (EINVAL without) and CAP_SYS_ADMIN (EPERM).
        if (Sys(Nr.ptrace, out var errno, PTRACE_SETOPTIONS, pid, 0, PTRACE_O_EXITKILL | PTRACE_O_SUSPEND_SECCOMP) == -1)
            return ProbeResult.Failed("ptrace(PTRACE_SETOPTIONS, PTRACE_O_SUSPEND_SECCOMP)", errno);
        return ProbeResult.Ok("seccomp suspended on the child");
    }

    private static ProbeResult ProbeSeccompGetFilter(int pid, string? filterError)
    {
        // Without a filter on the child the kernel says EINVAL, exactly as a kernel without the
        // request does: only a child that has a filter gives an honest answer.
        if (filterError is not null)
            return ProbeResult.Missing($"untested: could not give the child a seccomp filter: {filterError}");
        long instructions = Sys(Nr.ptrace, out var errno, PTRACE_SECCOMP_GET_FILTER, pid, 0, 0);
        if (instructions == -1) return ProbeResult.Failed("ptrace(PTRACE_SECCOMP_GET_FILTER)", errno);
        if (instructions != AllowAllFilterLength)
            return ProbeResult.Missing($"ptrace(PTRACE_SECCOMP_GET_FILTER) reported {instructions} instructions, the child's filter has {AllowAllFilterLength}");
        return ProbeResult.Ok($"read back the child's {instructions}-instruction filter");
    }

    private readonly record struct SpawnedChild(int Pid, string Error, string? FilterError);

    /// <summary>Start /bin/sleep from a throwaway thread that carries an allow-everything seccomp filter.</summary>
    private static SpawnedChild SpawnFilteredChild()
    {
        SpawnedChild result = default;
        var spawner = new Thread(() =>
        {
            string? filterError = InstallAllowAllFilter();
            int pid = SpawnSleep(out string error);
            result = new SpawnedChild(pid, error, filterError);
        }, 256 * 1024) { IsBackground = true, Name = "crest-check-spawn" };
        spawner.Start();
        spawner.Join();
        return result;
    }

    private const int AllowAllFilterLength = 1;

    /// <summary>Install a one-instruction filter that allows everything on the calling thread only.</summary>
    private static string? InstallAllowAllFilter()
    {
        // struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }: BPF_RET|BPF_K, SECCOMP_RET_ALLOW.
        ulong instruction = 0x06UL | (0x7fff0000UL << 32);
        // struct sock_fprog { u16 len; (pad); struct sock_filter *filter; }
        long* program = stackalloc long[2];
        program[0] = AllowAllFilterLength;
        program[1] = (long)&instruction;
        if (Sys(Nr.prctl, out var errno, PR_SET_SECCOMP, SECCOMP_MODE_FILTER, (long)program) == 0) return null;
        if (errno.Value != Errno.EACCES) return $"prctl(PR_SET_SECCOMP): {errno}";
        // Without CAP_SYS_ADMIN a filter needs no_new_privs; it is per thread, and this thread ends soon.
        if (Sys(Nr.prctl, out errno, PR_SET_NO_NEW_PRIVS, 1) == -1) return $"prctl(PR_SET_NO_NEW_PRIVS): {errno}";
        return Sys(Nr.prctl, out errno, PR_SET_SECCOMP, SECCOMP_MODE_FILTER, (long)program) == 0 ? null : $"prctl(PR_SET_SECCOMP): {errno}";
    }

    /// <summary>posix_spawn("/bin/sleep", ["sleep", "10"], env = []); the pid, or 0 with the error.</summary>
    internal static int SpawnSleep(out string error)
    {
        // The child ends by itself after 10 s should everything else fail.
        ReadOnlySpan<byte> path = "/bin/sleep\0"u8, name = "sleep\0"u8, seconds = "10\0"u8;
        fixed (byte* pathPtr = path, namePtr = name, secondsPtr = seconds)
        {
            byte** argv = stackalloc byte*[3] { namePtr, secondsPtr, null };
            byte** envp = stackalloc byte*[1] { null };
            int pid = 0;
            int rc = posix_spawn(&pid, pathPtr, null, null, argv, envp);
            error = rc == 0 ? "" : $"posix_spawn(/bin/sleep): {new Errno(rc)}";
            return rc == 0 ? pid : 0;
        }
    }

    /// <summary>Poll /proc/PID/stat until the task's state is S (interruptible sleep), at most <see cref="ChildWaitLimit"/>.</summary>
    private static void WaitUntilSleeping(int pid)
    {
        var clock = Stopwatch.StartNew();
        string path = $"/proc/{pid}/stat";
        while (clock.Elapsed < ChildWaitLimit)
        {
            string stat;
            try { stat = File.ReadAllText(path); }
            catch (IOException) { return; } // gone: the seize will say so
            // The state is the first field after the ")" that closes comm.
            int close = stat.LastIndexOf(')');
            if (close > 0 && close + 2 < stat.Length && stat[close + 2] == 'S') return;
            Thread.Sleep(1);
        }
    }

    /// <summary>Poll for the child's stop with WNOHANG until <see cref="ChildWaitLimit"/> has passed.</summary>
    private static bool WaitForStop(int pid, out int status, out string problem)
    {
        var clock = Stopwatch.StartNew();
        int raw = 0;
        while (true)
        {
            long got = Sys(Nr.wait4, out var errno, pid, (long)&raw, WNOHANG | __WALL, 0);
            if (got == -1 && errno.Value != Errno.EINTR)
            {
                status = 0;
                problem = $"wait4({pid}): {errno}";
                return false;
            }
            if (got == pid)
            {
                status = raw;
                if ((raw & 0xff) == 0x7f) { problem = ""; return true; }
                problem = $"child {pid} ended instead of stopping (status 0x{raw:x})";
                return false;
            }
            if (clock.Elapsed > ChildWaitLimit)
            {
                status = 0;
                problem = $"child {pid} did not stop within {ChildWaitLimit.TotalSeconds:0} s of PTRACE_INTERRUPT";
                return false;
            }
            Thread.Sleep(1);
        }
    }

    /// <summary>SIGKILL the child and reap it, waiting at most <see cref="ChildWaitLimit"/>.</summary>
    internal static bool KillAndReap(int pid)
    {
        Sys(Nr.kill, out _, pid, SIGKILL);
        var clock = Stopwatch.StartNew();
        int raw = 0;
        while (true)
        {
            long got = Sys(Nr.wait4, out var errno, pid, (long)&raw, WNOHANG | __WALL, 0);
            if (got == -1 && errno.Value == Errno.ECHILD) return true; // already reaped (SIGCHLD ignored)
            // A traced child may report a last stop before its exit; keep waiting for the exit.
            if (got == pid && (raw & 0x7f) != 0x7f) return true;
            if (clock.Elapsed > ChildWaitLimit) return false;
            if (got != pid) Thread.Sleep(1);
        }
    }
}
