// One task (thread) held with PTRACE_SEIZE (Linux 3.4) by a Tracer. Every request runs on the tracer
// thread: public methods hop there when called from elsewhere, and run inline on it (so the engine can
// drive a whole tree from inside one Tracer.Run). Registers travel by PTRACE_GETREGSET/SETREGSET with
// NT_PRSTATUS (struct user_regs_struct) and NT_X86_XSTATE (size chosen by the kernel) or NT_PRFPREG.
using System.Diagnostics;
using System.Runtime.InteropServices;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Interop;
using Crest.Kernel.Processes;

namespace Crest.Kernel.Ptrace;

/// <summary>A seized task. Not thread-safe beyond what the tracer thread serializes.</summary>
public sealed unsafe class Tracee
{
    /// <summary>Options Crest seizes with unless told otherwise: syscall stops are told apart (SIGTRAP | 0x80).</summary>
    public const PtraceOptions DefaultOptions = PtraceOptions.TraceSysGood;

    private int _xstateSize;

    private Tracee(Tracer tracer, int tid, PtraceOptions options)
    {
        Tracer = tracer;
        Tid = tid;
        Options = options;
    }

    public Tracer Tracer { get; }

    public int Tid { get; }

    /// <summary>The options in force (PTRACE_SEIZE, then PTRACE_SETOPTIONS).</summary>
    public PtraceOptions Options { get; private set; }

    /// <summary>The last stop WaitForStop saw; null while the task runs or before the first stop.</summary>
    public TraceeStop? LastStop { get; private set; }

    /// <summary>PTRACE_SEIZE: attach without stopping the task.</summary>
    public static Tracee Seize(Tracer tracer, int tid, PtraceOptions options = DefaultOptions) =>
        tracer.Run(() =>
        {
            Request(Libc.PTRACE_SEIZE, "PTRACE_SEIZE", tid, 0, (nint)(long)options);
            return new Tracee(tracer, tid, options);
        });

    /// <summary>A task attached by the kernel itself (an auto-attached child); see <see cref="Tracer.Adopt"/>.</summary>
    internal static Tracee Adopt(Tracer tracer, int tid, PtraceOptions options) => new(tracer, tid, options);

    /// <summary>PTRACE_INTERRUPT: make the running task stop (reported as an event stop, PTRACE_EVENT_STOP).</summary>
    public void Interrupt() => OnTracer(() => Request(Libc.PTRACE_INTERRUPT, "PTRACE_INTERRUPT", Tid, 0, 0));

    /// <summary>Wait (blocking, no bound) for the next stop. Throws <see cref="TraceeExitedException"/> if the task ends.</summary>
    public TraceeStop WaitForStop() => OnTracer(() => WaitCore(blocking: true, Timeout.InfiniteTimeSpan));

    /// <summary>Wait at most <paramref name="timeout"/> for the next stop; TimeoutException after.</summary>
    public TraceeStop WaitForStop(TimeSpan timeout) => OnTracer(() => WaitCore(blocking: false, timeout));

    /// <summary>Interrupt the task and wait for the resulting stop.</summary>
    public TraceeStop InterruptAndWait(TimeSpan timeout) => OnTracer(() =>
    {
        Request(Libc.PTRACE_INTERRUPT, "PTRACE_INTERRUPT", Tid, 0, 0);
        return WaitCore(blocking: false, timeout);
    });

    public UserRegs GetRegisters() => OnTracer(GetRegistersCore);

    public void SetRegisters(UserRegs regs) => OnTracer(() => SetRegistersCore(in regs));

    /// <summary>
    /// PTRACE_GETREGSET NT_X86_XSTATE: the XSAVE area, as long as the kernel says it is (offered a large
    /// buffer, the kernel writes back the length it used). On a CPU or kernel without XSAVE support
    /// (ENODEV / EINVAL) the 512-byte FXSAVE area of NT_PRFPREG instead.
    /// </summary>
    public byte[] GetXState() => OnTracer(() =>
    {
        try
        {
            var xstate = GetRegSet(Libc.NT_X86_XSTATE, "NT_X86_XSTATE", _xstateSize > 0 ? _xstateSize : XSave.MaxXStateSize);
            _xstateSize = xstate.Length;
            return xstate;
        }
        catch (KernelException e) when (e.Errno.Value is Errno.ENODEV or Errno.EINVAL && _xstateSize == 0)
        {
            return GetRegSet(Libc.NT_PRFPREG, "NT_PRFPREG", XSave.FxSaveSize);
        }
    });

    /// <summary>PTRACE_SETREGSET with a buffer from <see cref="GetXState"/>: NT_PRFPREG for a 512-byte FXSAVE area, NT_X86_XSTATE otherwise.</summary>
    public void SetXState(byte[] xstate) => OnTracer(() =>
    {
        if (xstate.Length == XSave.FxSaveSize) SetRegSet(Libc.NT_PRFPREG, "NT_PRFPREG", xstate);
        else SetRegSet(Libc.NT_X86_XSTATE, "NT_X86_XSTATE", xstate);
    });

    /// <summary>PTRACE_GETREGSET NT_PRFPREG: the 512-byte FXSAVE area, for CPUs or kernels without XSAVE.</summary>
    public byte[] GetFpRegs() => OnTracer(() => GetRegSet(Libc.NT_PRFPREG, "NT_PRFPREG", XSave.FxSaveSize));

    public void SetFpRegs(byte[] fxsave) => OnTracer(() => SetRegSet(Libc.NT_PRFPREG, "NT_PRFPREG", fxsave));

    /// <summary>
    /// PTRACE_PEEKSIGINFO (Linux 3.10): up to <paramref name="count"/> queued signals from position
    /// <paramref name="index"/> of the thread's queue, or of the process-wide queue when <paramref name="shared"/>.
    /// </summary>
    public IReadOnlyList<SigInfo> PeekSigInfo(bool shared, long index, int count) => OnTracer(() =>
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        var buffer = new byte[checked(count * SigInfo.Size)];
        var args = new Libc.ptrace_peeksiginfo_args
        {
            off = (ulong)index,
            flags = shared ? Libc.PTRACE_PEEKSIGINFO_SHARED : 0,
            nr = count,
        };
        long n;
        fixed (byte* p = buffer)
            n = Request(Libc.PTRACE_PEEKSIGINFO, "PTRACE_PEEKSIGINFO", Tid, (nint)(&args), (nint)p);
        var result = new SigInfo[n];
        for (int i = 0; i < n; i++) result[i] = new SigInfo(buffer.AsSpan(i * SigInfo.Size, SigInfo.Size).ToArray());
        return result;
    });

    /// <summary>PTRACE_GETSIGMASK (Linux 3.11): the blocked set (the saved one while sigsuspend & co. run).</summary>
    public ulong GetSigMask() => OnTracer(GetSigMaskCore);

    /// <summary>PTRACE_SETSIGMASK (Linux 3.11). SIGKILL and SIGSTOP are dropped by the kernel.</summary>
    public void SetSigMask(ulong mask) => OnTracer(() => SetSigMaskCore(mask));

    /// <summary>PTRACE_GET_SYSCALL_INFO (Linux 5.3).</summary>
    public SyscallInfo GetSyscallInfo() => OnTracer(() =>
    {
        Libc.ptrace_syscall_info info;
        Request(Libc.PTRACE_GET_SYSCALL_INFO, "PTRACE_GET_SYSCALL_INFO", Tid, sizeof(Libc.ptrace_syscall_info), (nint)(&info));
        var op = (SyscallInfoOp)info.op;
        var args = new ulong[6];
        if (op is SyscallInfoOp.Entry or SyscallInfoOp.Seccomp)
            for (int i = 0; i < 6; i++) args[i] = info.args[i];
        return new SyscallInfo(op, info.arch, info.instruction_pointer, info.stack_pointer,
            op is SyscallInfoOp.Entry or SyscallInfoOp.Seccomp ? (long)info.nr : -1, args,
            op == SyscallInfoOp.Exit ? info.rval : 0, op == SyscallInfoOp.Exit && info.is_error != 0,
            op == SyscallInfoOp.Seccomp ? info.ret_data : 0);
    });

    /// <summary>PTRACE_GET_RSEQ_CONFIGURATION (Linux 5.13). AbiPointer is 0 when the thread registered none.</summary>
    public RseqConfiguration GetRseqConfiguration() => OnTracer(() =>
    {
        Libc.ptrace_rseq_configuration conf;
        Request(Libc.PTRACE_GET_RSEQ_CONFIGURATION, "PTRACE_GET_RSEQ_CONFIGURATION", Tid, sizeof(Libc.ptrace_rseq_configuration), (nint)(&conf));
        return new RseqConfiguration(conf.rseq_abi_pointer, conf.rseq_abi_size, conf.signature, conf.flags);
    });

    /// <summary>
    /// PTRACE_SECCOMP_GET_FILTER (Linux 4.4): the classic-BPF program of filter <paramref name="index"/>
    /// (0 = the oldest: the kernel counts from the root of the chain), as struct sock_filter entries of 8
    /// bytes. Null when the task has no filter at that index (ENOENT) or no filter at all (EINVAL with seccomp mode off).
    /// </summary>
    public byte[]? GetSeccompFilter(int index) => OnTracer<byte[]?>(() =>
    {
        Marshal.SetLastPInvokeError(0);
        long count = Libc.ptrace(Libc.PTRACE_SECCOMP_GET_FILTER, Tid, index, 0);
        if (count < 0)
        {
            var errno = Errno.Last;
            if (errno.Value is Errno.ENOENT or Errno.EINVAL) return null;
            throw new KernelException("ptrace(PTRACE_SECCOMP_GET_FILTER)", Tid, errno);
        }
        var program = new byte[count * 8];
        fixed (byte* p = program)
            Request(Libc.PTRACE_SECCOMP_GET_FILTER, "PTRACE_SECCOMP_GET_FILTER", Tid, index, (nint)p);
        return program;
    });

    /// <summary>
    /// PTRACE_SECCOMP_GET_METADATA (Linux 4.16): the flags filter <paramref name="index"/> was installed with
    /// (SECCOMP_FILTER_FLAG_LOG; 0 = the oldest filter, as for PTRACE_SECCOMP_GET_FILTER).
    /// </summary>
    public ulong GetSeccompFilterFlags(int index) => OnTracer(() =>
    {
        var metadata = stackalloc ulong[2];
        metadata[0] = (ulong)index;
        metadata[1] = 0;
        Request(Libc.PTRACE_SECCOMP_GET_METADATA, "PTRACE_SECCOMP_GET_METADATA", Tid, 16, (nint)metadata);
        return metadata[1];
    });

    /// <summary>PTRACE_PEEKDATA: the word at <paramref name="address"/>.</summary>
    public long PeekData(ulong address) => OnTracer(() => PeekDataCore(address));

    /// <summary>PTRACE_POKEDATA: write one word (works on read-only text too, by copy-on-write).</summary>
    public void PokeData(ulong address, long word) => OnTracer(() => PokeDataCore(address, word));

    /// <summary>PTRACE_PEEKUSER: a word of struct user, e.g. <see cref="UserRegs.RaxOffset"/>.</summary>
    public ulong PeekUser(int offset) => OnTracer(() => (ulong)Peek(Libc.PTRACE_PEEKUSER, "PTRACE_PEEKUSER", Tid, offset));

    /// <summary>PTRACE_CONT, delivering <paramref name="signal"/> (0: none, or discard the stop's signal).</summary>
    public void Continue(int signal = 0) => OnTracer(() => ResumeCore(Libc.PTRACE_CONT, "PTRACE_CONT", signal));

    /// <summary>PTRACE_SYSCALL: resume until the next syscall entry or exit.</summary>
    public void ContinueToSyscall(int signal = 0) => OnTracer(() => ResumeCore(Libc.PTRACE_SYSCALL, "PTRACE_SYSCALL", signal));

    /// <summary>PTRACE_LISTEN: leave a group-stopped task stopped but let it report further events.</summary>
    public void Listen() => OnTracer(() => ResumeCore(Libc.PTRACE_LISTEN, "PTRACE_LISTEN", 0));

    /// <summary>PTRACE_SETOPTIONS.</summary>
    public void SetOptions(PtraceOptions options) => OnTracer(() => SetOptionsCore(options));

    /// <summary>PTRACE_GETEVENTMSG: the new pid of a fork/clone event, the exit status of an exit event.</summary>
    public ulong GetEventMessage() => OnTracer(() =>
    {
        ulong message;
        Request(Libc.PTRACE_GETEVENTMSG, "PTRACE_GETEVENTMSG", Tid, 0, (nint)(&message));
        return message;
    });

    /// <summary>PTRACE_DETACH from a stop, delivering <paramref name="signal"/>.</summary>
    public void Detach(int signal = 0) => OnTracer(() => ResumeCore(Libc.PTRACE_DETACH, "PTRACE_DETACH", signal));

    public override string ToString() => $"tracee {Tid}";

    // The *Core members assume the tracer thread; the injector calls them inside one Tracer.Run.

    internal T OnTracer<T>(Func<T> work) => Tracer.IsCurrentThread ? work() : Tracer.Run(work);

    internal void OnTracer(Action work)
    {
        if (Tracer.IsCurrentThread) work();
        else Tracer.Run(work);
    }

    internal UserRegs GetRegistersCore()
    {
        UserRegs regs;
        var iov = new Libc.regset_iovec { iov_base = &regs, iov_len = (nuint)sizeof(UserRegs) };
        Request(Libc.PTRACE_GETREGSET, "PTRACE_GETREGSET, NT_PRSTATUS", Tid, Libc.NT_PRSTATUS, (nint)(&iov));
        if (iov.iov_len != (nuint)sizeof(UserRegs))
            throw new KernelException("ptrace(PTRACE_GETREGSET, NT_PRSTATUS)", Tid, new Errno(Errno.EIO), $"kernel returned {iov.iov_len} bytes");
        return regs;
    }

    internal void SetRegistersCore(in UserRegs regs)
    {
        fixed (UserRegs* p = &regs)
        {
            var iov = new Libc.regset_iovec { iov_base = p, iov_len = (nuint)sizeof(UserRegs) };
            Request(Libc.PTRACE_SETREGSET, "PTRACE_SETREGSET, NT_PRSTATUS", Tid, Libc.NT_PRSTATUS, (nint)(&iov));
        }
    }

    internal ulong GetSigMaskCore()
    {
        ulong mask;
        Request(Libc.PTRACE_GETSIGMASK, "PTRACE_GETSIGMASK", Tid, sizeof(ulong), (nint)(&mask));
        return mask;
    }

    internal void SetSigMaskCore(ulong mask) =>
        Request(Libc.PTRACE_SETSIGMASK, "PTRACE_SETSIGMASK", Tid, sizeof(ulong), (nint)(&mask));

    internal void SetOptionsCore(PtraceOptions options)
    {
        Request(Libc.PTRACE_SETOPTIONS, "PTRACE_SETOPTIONS", Tid, 0, (nint)(long)options);
        Options = options;
    }

    internal long PeekDataCore(ulong address) => Peek(Libc.PTRACE_PEEKDATA, "PTRACE_PEEKDATA", Tid, (nint)address);

    internal void PokeDataCore(ulong address, long word) =>
        Request(Libc.PTRACE_POKEDATA, "PTRACE_POKEDATA", Tid, (nint)address, (nint)word);

    internal void ResumeCore(long request, string name, int signal)
    {
        Request(request, name, Tid, 0, signal);
        LastStop = null;
    }

    internal void InterruptCore() => Request(Libc.PTRACE_INTERRUPT, "PTRACE_INTERRUPT", Tid, 0, 0);

    /// <summary>
    /// waitpid(tid, __WALL) for this task. Blocking for injected syscalls (the stop follows within
    /// microseconds, and a SIGKILL ends the wait with an exit); polling WNOHANG when a caller bounds the wait.
    /// </summary>
    internal TraceeStop WaitCore(bool blocking, TimeSpan timeout)
    {
        int status = 0;
        int pid;
        if (blocking)
        {
            do pid = Libc.waitpid(Tid, &status, Libc.__WALL);
            while (pid < 0 && Errno.Last.Value == Errno.EINTR);
        }
        else
        {
            var clock = Stopwatch.StartNew();
            for (int round = 0; ; round++)
            {
                pid = Libc.waitpid(Tid, &status, Libc.__WALL | Libc.WNOHANG);
                if (pid != 0 && !(pid < 0 && Errno.Last.Value == Errno.EINTR)) break;
                if (timeout != Timeout.InfiniteTimeSpan && clock.Elapsed > timeout)
                    throw new TimeoutException($"task {Tid} did not stop within {timeout.TotalSeconds:0.###} s");
                if (round < 50) Thread.SpinWait(20);
                else Thread.Sleep(round < 200 ? 0 : 1);
            }
        }
        if (pid < 0) throw new KernelException("waitpid(__WALL)", Tid, Errno.Last);
        var decoded = new WaitStatus(status);
        if (decoded.Terminated)
        {
            ReapedChildren.Record(Tid, decoded);
            LastStop = null;
            throw new TraceeExitedException(Tid, decoded);
        }
        var stop = new TraceeStop(Tid, decoded);
        LastStop = stop;
        return stop;
    }

    /// <summary>waitpid(tid, __WALL | WNOHANG) once: the stop the task is in now, or null while it runs.</summary>
    internal TraceeStop? PollCore()
    {
        int status = 0;
        int pid;
        do pid = Libc.waitpid(Tid, &status, Libc.__WALL | Libc.WNOHANG);
        while (pid < 0 && Errno.Last.Value == Errno.EINTR);
        if (pid < 0) throw new KernelException("waitpid(__WALL|WNOHANG)", Tid, Errno.Last);
        if (pid == 0) return null;
        var decoded = new WaitStatus(status);
        if (decoded.Terminated)
        {
            ReapedChildren.Record(Tid, decoded);
            LastStop = null;
            throw new TraceeExitedException(Tid, decoded);
        }
        var stop = new TraceeStop(Tid, decoded);
        LastStop = stop;
        return stop;
    }

    internal static TraceeStop WaitAny(TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        int status = 0;
        for (int round = 0; ; round++)
        {
            int pid = Libc.waitpid(-1, &status, Libc.__WALL | Libc.WNOHANG);
            if (pid > 0)
            {
                var decoded = new WaitStatus(status);
                if (decoded.Terminated) ReapedChildren.Record(pid, decoded);
                return new TraceeStop(pid, decoded);
            }
            if (pid < 0 && Errno.Last.Value != Errno.EINTR) throw new KernelException("waitpid(-1, __WALL)", Errno.Last);
            if (clock.Elapsed > timeout)
                throw new TimeoutException($"no task stopped within {timeout.TotalSeconds:0.###} s");
            if (round < 50) Thread.SpinWait(20);
            else Thread.Sleep(round < 200 ? 0 : 1);
        }
    }

    private byte[] GetRegSet(int note, string noteName, int maxSize)
    {
        var buffer = new byte[maxSize];
        nuint length;
        fixed (byte* p = buffer)
        {
            var iov = new Libc.regset_iovec { iov_base = p, iov_len = (nuint)maxSize };
            Request(Libc.PTRACE_GETREGSET, $"PTRACE_GETREGSET, {noteName}", Tid, note, (nint)(&iov));
            length = iov.iov_len;
        }
        return length == (nuint)maxSize ? buffer : buffer.AsSpan(0, (int)length).ToArray();
    }

    private void SetRegSet(int note, string noteName, byte[] data)
    {
        fixed (byte* p = data)
        {
            var iov = new Libc.regset_iovec { iov_base = p, iov_len = (nuint)data.Length };
            Request(Libc.PTRACE_SETREGSET, $"PTRACE_SETREGSET, {noteName}", Tid, note, (nint)(&iov));
        }
    }

    /// <summary>A ptrace request whose -1 means failure.</summary>
    internal static long Request(long request, string name, int tid, nint addr, nint data)
    {
        long rc = Libc.ptrace(request, tid, addr, data);
        if (rc == -1) throw new KernelException($"ptrace({name})", tid, Errno.Last);
        return rc;
    }

    /// <summary>A PEEK request: the word is the result, so failure is -1 with errno set (cleared before the call).</summary>
    private static long Peek(long request, string name, int tid, nint addr)
    {
        Marshal.SetLastPInvokeError(0);
        long word = Libc.ptrace(request, tid, addr, 0);
        if (word == -1 && Marshal.GetLastPInvokeError() != 0)
            throw new KernelException($"ptrace({name})", tid, Errno.Last, $"address 0x{(ulong)addr:x}");
        return word;
    }
}
