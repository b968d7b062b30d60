// Children Crest starts itself: posix_spawn(3) instead of System.Diagnostics.Process, whose SIGCHLD
// handling would reap tracees and swallow their ptrace stops (ENGINE.md §1.3, §8). Reaped with waitid(2)
// WNOWAIT first, so that looking for an exit never consumes a ptrace stop meant for the tracer thread.
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using Crest.Kernel.Interop;

namespace Crest.Kernel.Processes;

/// <summary>A child process started with posix_spawn and reaped by its owner.</summary>
public sealed unsafe class ChildProcess : IDisposable
{
    private WaitStatus? _exit;

    private ChildProcess(int pid) => Pid = pid;

    public int Pid { get; }

    /// <summary>The exit status once reaped.</summary>
    public WaitStatus? ExitStatus => _exit;

    /// <summary>
    /// Make SIGCHLD default in this process. A process that spawns tracees must do this before its first
    /// spawn: ignored SIGCHLD auto-reaps children, and the runtime's handler reaps them behind our back.
    /// </summary>
    public static void ResetSigchldDisposition()
    {
        if (Libc.signal(Libc.SIGCHLD, Libc.SIG_DFL) == Libc.SIG_ERR)
            throw new KernelException("signal(SIGCHLD, SIG_DFL)", Errno.Last);
    }

    /// <summary>Start <paramref name="path"/> with <paramref name="argv"/> (argv[0] included).</summary>
    public static ChildProcess Spawn(string path, IReadOnlyList<string> argv, SpawnOptions? options = null)
    {
        options ??= new SpawnOptions();
        IReadOnlyList<string> env = options.Environment ?? CurrentEnvironment();
        var strings = new List<nint>();
        void* attr = NativeMemory.AllocZeroed(Libc.PosixSpawnAttrSize);
        void* actions = NativeMemory.AllocZeroed(Libc.PosixSpawnFileActionsSize);
        void* sigset = NativeMemory.AllocZeroed(Libc.SigsetSize);
        byte** argvp = null, envp = null;
        bool attrReady = false, actionsReady = false;
        try
        {
            Check(Libc.posix_spawnattr_init(attr), "posix_spawnattr_init", path);
            attrReady = true;
            Check(Libc.posix_spawn_file_actions_init(actions), "posix_spawn_file_actions_init", path);
            actionsReady = true;

            short flags = 0;
            if (options.NewSession) flags |= Libc.POSIX_SPAWN_SETSID;
            if (options.ProcessGroup is { } group)
            {
                flags |= Libc.POSIX_SPAWN_SETPGROUP;
                Check(Libc.posix_spawnattr_setpgroup(attr, group), "posix_spawnattr_setpgroup", path);
            }
            if (options.ResetSignals)
            {
                flags |= Libc.POSIX_SPAWN_SETSIGDEF | Libc.POSIX_SPAWN_SETSIGMASK;
                // Every bit, not sigfillset(3): glibc leaves its internal signals (32, 33) out of a filled set
                // and would then set them to SIG_IGN in the child, an ignored disposition exec keeps.
                new Span<byte>(sigset, Libc.SigsetSize).Fill(0xff);
                Check(Libc.posix_spawnattr_setsigdefault(attr, sigset), "posix_spawnattr_setsigdefault", path);
                Libc.sigemptyset(sigset);
                Check(Libc.posix_spawnattr_setsigmask(attr, sigset), "posix_spawnattr_setsigmask", path);
            }
            Check(Libc.posix_spawnattr_setflags(attr, flags), "posix_spawnattr_setflags", path);

            if (options.WorkingDirectory is { } cwd)
                Check(Libc.posix_spawn_file_actions_addchdir_np(actions, Utf8(cwd, strings)), "posix_spawn_file_actions_addchdir_np", cwd);
            foreach (var action in options.FileActions)
            {
                int rc = action switch
                {
                    SpawnFileAction.Open open => Libc.posix_spawn_file_actions_addopen(actions, open.Fd, Utf8(open.Path, strings), open.Flags, (uint)open.Mode),
                    SpawnFileAction.Dup2 dup => Libc.posix_spawn_file_actions_adddup2(actions, dup.From, dup.To),
                    SpawnFileAction.Close close => Libc.posix_spawn_file_actions_addclose(actions, close.Fd),
                    _ => throw new ArgumentException($"unknown spawn file action {action}", nameof(options)),
                };
                Check(rc, "posix_spawn_file_actions_add", action.ToString());
            }

            argvp = StringArray(argv, strings);
            envp = StringArray(env, strings);
            int pid;
            byte* file = Utf8(path, strings);
            if (options.SearchPath) Check(Libc.posix_spawnp(&pid, file, actions, attr, argvp, envp), "posix_spawnp", path);
            else Check(Libc.posix_spawn(&pid, file, actions, attr, argvp, envp), "posix_spawn", path);
            return new ChildProcess(pid);
        }
        finally
        {
            if (actionsReady) Libc.posix_spawn_file_actions_destroy(actions);
            if (attrReady) Libc.posix_spawnattr_destroy(attr);
            NativeMemory.Free(actions);
            NativeMemory.Free(attr);
            NativeMemory.Free(sigset);
            NativeMemory.Free(argvp);
            NativeMemory.Free(envp);
            foreach (nint s in strings) NativeMemory.Free((void*)s);
        }
    }

    /// <summary>
    /// Take ownership of a child this process did not spawn with <see cref="Spawn"/>: one a tracee cloned with
    /// CLONE_PARENT (restore), whose parent is therefore us. It is reaped and killed like a spawned one.
    /// </summary>
    public static ChildProcess Adopt(int pid)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(pid);
        return new ChildProcess(pid);
    }

    /// <summary>Send a signal (kill(2)). A child already reaped is not signalled: its pid may belong to another process.</summary>
    public void Signal(int signal)
    {
        if (_exit is not null) return;
        if (Libc.kill(Pid, signal) != 0)
            throw new KernelException($"kill({Pid}, {signal})", Errno.Last);
    }

    /// <summary>Reap the child if it has terminated, without blocking and without consuming a ptrace stop.</summary>
    public bool TryReap(out WaitStatus status)
    {
        if (_exit is { } known)
        {
            status = known;
            return true;
        }
        byte* info = stackalloc byte[128];
        new Span<byte>(info, 128).Clear();
        // Look first (WNOWAIT): a stopped traced child is reported here too, and must stay reported for its tracer.
        int rc = Libc.waitid(Libc.P_PID, Pid, info, Libc.WEXITED | Libc.WNOHANG | Libc.WNOWAIT | Libc.__WALL);
        if (rc != 0)
        {
            var errno = Errno.Last;
            if (errno.Value == Errno.ECHILD && ReapedChildren.TryTake(Pid, out status))
            {
                _exit = status;
                return true;
            }
            if (errno.Value == Errno.EINTR) { status = default; return false; }
            throw new KernelException("waitid(P_PID)", Pid, errno);
        }
        int siPid = *(int*)(info + 16), siCode = *(int*)(info + 8);
        if (siPid == 0 || siCode is not (Libc.CLD_EXITED or Libc.CLD_KILLED or Libc.CLD_DUMPED))
        {
            status = default;
            return false;
        }
        int raw;
        int reaped;
        do reaped = Libc.waitpid(Pid, &raw, Libc.__WALL | Libc.WNOHANG);
        while (reaped < 0 && Errno.Last.Value == Errno.EINTR);
        if (reaped != Pid)
            throw new KernelException("waitpid", Pid, reaped < 0 ? Errno.Last : new Errno(Errno.ECHILD), "zombie vanished");
        status = new WaitStatus(raw);
        _exit = status;
        return true;
    }

    /// <summary>
    /// waitpid(pid, __WALL | WNOHANG) for a task that may be our child or our tracee but has no ChildProcess:
    /// true if it was reaped now (its status is kept for a ChildProcess of it), false if it has not ended or is
    /// not ours to wait for (ECHILD).
    /// </summary>
    public static bool TryReapPid(int pid)
    {
        int raw;
        int reaped;
        do reaped = Libc.waitpid(pid, &raw, Libc.__WALL | Libc.WNOHANG);
        while (reaped < 0 && Errno.Last.Value == Errno.EINTR);
        if (reaped < 0 && Errno.Last.Value == Errno.ECHILD) return false;
        if (reaped < 0) throw new KernelException("waitpid(WNOHANG)", pid, Errno.Last);
        if (reaped == 0) return false;
        var status = new WaitStatus(raw);
        if (!status.Terminated) return false;
        ReapedChildren.Record(pid, status);
        return true;
    }

    /// <summary>Wait until the child terminates, at most <paramref name="timeout"/> (or without bound: Timeout.InfiniteTimeSpan).</summary>
    public WaitStatus WaitForExit(TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        for (int round = 0; ; round++)
        {
            if (TryReap(out var status)) return status;
            if (timeout != Timeout.InfiniteTimeSpan && clock.Elapsed > timeout)
                throw new TimeoutException($"process {Pid} did not exit within {timeout.TotalSeconds:0.###} s");
            Thread.Sleep(round < 20 ? 1 : 10);
        }
    }

    /// <summary>Kill (SIGKILL) and reap the child if it is still there.</summary>
    public void Dispose()
    {
        if (_exit is not null) return;
        if (TryReap(out _)) return;
        if (Libc.kill(Pid, Libc.SIGKILL) != 0 && Errno.Last.Value != Errno.ESRCH)
            throw new KernelException($"kill({Pid}, SIGKILL)", Errno.Last);
        WaitForExit(TimeSpan.FromSeconds(10));
    }

    private static void Check(int rc, string call, string what)
    {
        if (rc != 0) throw new KernelException(call, new Errno(rc), what);
    }

    private static IReadOnlyList<string> CurrentEnvironment()
    {
        var list = new List<string>();
        foreach (System.Collections.DictionaryEntry e in System.Environment.GetEnvironmentVariables())
            list.Add($"{e.Key}={e.Value}");
        return list;
    }

    private static byte* Utf8(string s, List<nint> owned)
    {
        int n = Encoding.UTF8.GetByteCount(s);
        byte* p = (byte*)NativeMemory.Alloc((nuint)n + 1);
        owned.Add((nint)p);
        Encoding.UTF8.GetBytes(s, new Span<byte>(p, n));
        p[n] = 0;
        return p;
    }

    private static byte** StringArray(IReadOnlyList<string> items, List<nint> owned)
    {
        byte** array = (byte**)NativeMemory.AllocZeroed((nuint)(items.Count + 1), (nuint)sizeof(byte*));
        for (int i = 0; i < items.Count; i++) array[i] = Utf8(items[i], owned);
        return array;
    }
}
