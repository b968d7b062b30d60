// The per-task part of core-PID.img (CRIU's CoreEntry): registers, FPU/AVX state, signal state, creds,
// rlimits and the small per-task knobs. Sources (ENGINE.md §3):
//  - PTRACE_GETREGSET NT_PRSTATUS / NT_X86_XSTATE (2.6.35), PTRACE_GETSIGMASK (3.11),
//    PTRACE_PEEKSIGINFO (3.10) for queued signals, PTRACE_GET_RSEQ_CONFIGURATION (5.13); /proc/PID/{stat,status,comm,personality,oom_score_adj,loginuid};
//  - injected into the task, because no outside interface exists: rt_sigaction(sig, NULL, &old) for each
//    signal, getitimer x3, timer_gettime and timer_getoverrun per POSIX timer (Timers/PosixTimers.cs),
//    sigaltstack(NULL, &old), prctl(PR_GET_TID_ADDRESS), get_robust_list(0), prlimit64(0) when
//    prlimit64(pid) is refused (no CAP_SYS_RESOURCE towards tasks with other creds), PR_GET_SECUREBITS,
//    PR_GET_PDEATHSIG, PR_GET_DUMPABLE, PR_GET_CHILD_SUBREAPER, PR_GET_THP_DISABLE, brk(0), umask.
//
// Interrupted syscalls are settled here, at dump, as CRIU does: the image holds registers that re-issue the
// call on restore (rax = orig_rax, rip -= 2 for -ERESTARTSYS/-ERESTARTNOINTR/-ERESTARTNOHAND) or that
// return -EINTR for -ERESTART_RESTARTBLOCK, whose kernel-side restart block does not survive. orig_rax is
// kept as the kernel had it.
using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.Intrinsics.X86;
using Crest.Diagnostics;
using Crest.Engine.Dump;
using Crest.Images.Protos;
using Crest.Kernel;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Injection;
using Crest.Kernel.Proc;
using Crest.Kernel.Ptrace;

namespace Crest.Engine.Processes;

internal static class CoreDumper
{
    /// <summary>CRIU's task_state values (compel's TASK_ALIVE = 1, TASK_STOPPED = 3).</summary>
    public const uint TaskAlive = 1, TaskStopped = 3;

    private const int SignalCount = 64, SIGKILL = 9, SIGSTOP = 19;
    private const long ERESTARTSYS = 512, ERESTARTNOINTR = 513, ERESTARTNOHAND = 514, ERESTART_RESTARTBLOCK = 516, EINTR = 4;
    private const int PR_GET_PDEATHSIG = 2, PR_GET_DUMPABLE = 3, PR_GET_SECUREBITS = 27, PR_GET_CHILD_SUBREAPER = 37,
        PR_GET_TID_ADDRESS = 40, PR_GET_THP_DISABLE = 42;

    /// <summary>The x86 user_fpregs_struct padding CRIU keeps (i387 padding[12], before sw_reserved).</summary>
    private const int FpPaddingWords = 12;

    public static TaskState ReadFromOutside(FrozenTask task)
    {
        int pid = task.Pid;
        var tracee = task.Tracee;
        var regs = tracee.GetRegisters();
        var xstate = tracee.GetXState();
        ulong sigmask = tracee.GetSigMask();
        var rseq = tracee.GetRseqConfiguration();
        var stat = ProcStat.Parse(ProcFile.ReadAll(pid, "stat"));
        var status = ProcStatus.Parse(ProcFile.ReadAll(pid, "status"));
        string comm = File.ReadAllText($"/proc/{pid}/comm").TrimEnd('\n');
        uint personality = uint.Parse(File.ReadAllText($"/proc/{pid}/personality").Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        return new TaskState
        {
            Pid = pid,
            Registers = regs,
            XState = xstate,
            SigMask = sigmask,
            Rseq = rseq,
            Stat = stat,
            Status = status,
            Comm = comm,
            Personality = personality,
            OomScoreAdj = ReadOptionalInt($"/proc/{pid}/oom_score_adj") is long adj ? (int)adj : null,
            LoginUid = ReadOptionalInt($"/proc/{pid}/loginuid") is long uid ? (uint)uid : null,
            WasStopped = task.WasStopped,
            SharedSignals = PendingSignals(tracee, shared: true),
            ThreadSignals = PendingSignals(tracee, shared: false),
            Umask = status.Umask ?? 0,
        };
    }

    /// <summary>PTRACE_PEEKSIGINFO (Linux 3.10) until the queue is exhausted; the signals stay queued.</summary>
    private static List<byte[]> PendingSignals(Tracee tracee, bool shared)
    {
        const int Batch = 32;
        var result = new List<byte[]>();
        while (true)
        {
            var got = tracee.PeekSigInfo(shared, result.Count, Batch);
            foreach (var info in got) result.Add(info.Bytes);
            if (got.Count < Batch) return result;
        }
    }

    /// <summary>The state only the task itself can tell, by injected syscalls.</summary>
    public static void ReadFromInside(TaskState state, SyscallInjector remote)
    {
        int pid = state.Pid;
        const int ScratchSize = 4096;
        ulong scratch = remote.AllocScratch(ScratchSize);
        Span<byte> buffer = stackalloc byte[64];

        long Call(string what, long nr, long a1 = 0, long a2 = 0, long a3 = 0, long a4 = 0)
        {
            long rc = remote.Syscall(nr, a1, a2, a3, a4);
            if (rc is < 0 and >= -4095)
                throw new KernelException($"{what} (injected)", pid, Errno.FromRawReturn(rc));
            return rc;
        }

        // One batch for the calls that only read (SyscallInjector.Batch: one resume of the task instead of one
        // per call); each writes into its own slot of the scratch page.
        const int ActionSize = 32, TimerSize = 32;
        var signals = new List<int>(SignalCount - 2);
        for (int sig = 1; sig <= SignalCount; sig++)
            if (sig is not (SIGKILL or SIGSTOP)) signals.Add(sig);
        int timersAt = signals.Count * ActionSize, altStackAt = timersAt + 3 * TimerSize, tidAddressAt = altStackAt + 24,
            robustAt = tidAddressAt + 8, deathSignalAt = robustAt + 16, subreaperAt = deathSignalAt + 8, slotsEnd = subreaperAt + 8;
        long At(int offset) => (long)scratch + offset;
        var calls = new List<(string What, InjectedCall Call)>();
        for (int i = 0; i < signals.Count; i++)
            calls.Add(($"rt_sigaction({signals[i]})", new(SyscallNumbers.rt_sigaction, signals[i], 0, At(i * ActionSize), 8)));
        for (int which = 0; which < 3; which++)
            calls.Add(($"getitimer({which})", new(SyscallNumbers.getitimer, which, At(timersAt + which * TimerSize))));
        calls.Add(("sigaltstack", new(SyscallNumbers.sigaltstack, 0, At(altStackAt))));
        calls.Add(("prctl(PR_GET_TID_ADDRESS)", new(SyscallNumbers.prctl, PR_GET_TID_ADDRESS, At(tidAddressAt))));
        calls.Add(("get_robust_list", new(SyscallNumbers.get_robust_list, 0, At(robustAt), At(robustAt + 8))));
        calls.Add(("prctl(PR_GET_PDEATHSIG)", new(SyscallNumbers.prctl, PR_GET_PDEATHSIG, At(deathSignalAt))));
        calls.Add(("prctl(PR_GET_CHILD_SUBREAPER)", new(SyscallNumbers.prctl, PR_GET_CHILD_SUBREAPER, At(subreaperAt))));
        calls.Add(("prctl(PR_GET_SECUREBITS)", new(SyscallNumbers.prctl, PR_GET_SECUREBITS)));
        calls.Add(("prctl(PR_GET_DUMPABLE)", new(SyscallNumbers.prctl, PR_GET_DUMPABLE)));
        calls.Add(("prctl(PR_GET_THP_DISABLE)", new(SyscallNumbers.prctl, PR_GET_THP_DISABLE)));
        calls.Add(("brk", new(SyscallNumbers.brk, 0)));
        long[] rcs = remote.Batch(calls.ConvertAll(c => c.Call));
        for (int i = 0; i < rcs.Length - 1; i++) // brk answers an address, never an error
        {
            if (rcs[i] is < 0 and >= -4095)
                throw new KernelException($"{calls[i].What} (injected)", pid, Errno.FromRawReturn(rcs[i]));
        }
        byte[] slots = new byte[slotsEnd];
        remote.ReadScratch(scratch, slots);

        var actions = new List<SignalAction>(signals.Count);
        for (int i = 0; i < signals.Count; i++)
        {
            ReadOnlySpan<byte> a = slots.AsSpan(i * ActionSize, ActionSize);
            actions.Add(new SignalAction(signals[i], U64(a, 0), U64(a, 8), U64(a, 16), U64(a, 24)));
        }
        state.SignalActions = actions;

        var itimers = new IntervalTimer[3];
        for (int which = 0; which < itimers.Length; which++)
        {
            ReadOnlySpan<byte> t = slots.AsSpan(timersAt + which * TimerSize, TimerSize);
            itimers[which] = new IntervalTimer(U64(t, 0), U64(t, 8), U64(t, 16), U64(t, 24));
        }
        state.IntervalTimers = itimers;

        ReadOnlySpan<byte> altStack = slots.AsSpan(altStackAt, 24);
        state.AltStack = new AltStack(U64(altStack, 0), BinaryPrimitives.ReadUInt32LittleEndian(altStack[8..]), U64(altStack, 16));
        state.ClearChildTid = U64(slots, tidAddressAt);
        state.RobustListHead = U64(slots, robustAt);
        state.RobustListLength = U64(slots, robustAt + 8);
        state.ParentDeathSignal = BinaryPrimitives.ReadUInt32LittleEndian(slots.AsSpan(deathSignalAt));
        state.ChildSubreaper = BinaryPrimitives.ReadUInt32LittleEndian(slots.AsSpan(subreaperAt)) != 0;
        int n = signals.Count + 3 + 5;
        state.SecureBits = (uint)rcs[n];
        state.Dumpable = (int)rcs[n + 1];
        state.ThpDisabled = rcs[n + 2] != 0;
        state.Brk = (ulong)rcs[n + 3];
        state.PosixTimers = Timers.PosixTimers.Read(pid, remote, scratch);

        var limits = new ResourceLimit[ResourceLimits.Count];
        for (int r = 0; r < limits.Length; r++)
        {
            try
            {
                limits[r] = ResourceLimits.Get(pid, (ResourceLimitKind)r);
            }
            catch (KernelException e) when (e.Errno.Value == Errno.EPERM)
            {
                // No CAP_SYS_RESOURCE over a task with other credentials: ask the task itself.
                Call($"prlimit64({r})", SyscallNumbers.prlimit64, 0, r, 0, (long)scratch);
                remote.ReadScratch(scratch, buffer[..16]);
                limits[r] = new ResourceLimit(U64(buffer, 0), U64(buffer, 8));
            }
        }
        state.Limits = limits;
        Log.Debug($"{pid}: core: {actions.Count} sigactions, clear_child_tid 0x{state.ClearChildTid:x}, brk 0x{state.Brk:x}");
    }

    public static CoreEntry BuildCore(TaskState state)
    {
        var tc = new TaskCoreEntry
        {
            TaskState = state.WasStopped ? TaskStopped : TaskAlive,
            ExitCode = 0,
            Personality = state.Personality,
            Flags = state.Stat.Flags,
            BlkSigset = state.SigMask,
            Comm = state.Comm,
            Rlimits = new TaskRlimitsEntry(),
            ChildSubreaper = state.ChildSubreaper,
        };
        if (state.IntervalTimers.Length == 3)
        {
            static ItimerEntry Itimer(IntervalTimer t) => new() { Isec = t.IntervalSec, Iusec = t.IntervalUsec, Vsec = t.ValueSec, Vusec = t.ValueUsec };
            tc.Timers = new TaskTimersEntry { Real = Itimer(state.IntervalTimers[0]), Virt = Itimer(state.IntervalTimers[1]), Prof = Itimer(state.IntervalTimers[2]) };
            foreach (var t in state.PosixTimers) tc.Timers.Posix.Add(Timers.PosixTimers.ToEntry(t));
        }
        if (state.WasStopped) tc.StopSigno = SIGSTOP;
        if (state.SharedSignals.Count > 0) tc.SignalsS = SignalQueue(state.SharedSignals);
        if (state.OomScoreAdj is int adj) tc.OomScoreAdj = adj;
        if (state.LoginUid is uint loginuid) tc.Loginuid = loginuid;
        foreach (var limit in state.Limits)
            tc.Rlimits.Rlimits.Add(new RlimitEntry { Cur = limit.Current, Max = limit.Maximum });
        foreach (var a in state.SignalActions)
            tc.Sigactions.Add(new SaEntry { Sigaction = a.Handler, Flags = a.Flags, Restorer = a.Restorer, Mask = a.Mask, CompatSigaction = false });

        var thread = new ThreadCoreEntry
        {
            FutexRla = state.RobustListHead,
            FutexRlaLen = (uint)state.RobustListLength,
            SchedNice = (int)state.Stat.Nice,
            SchedPolicy = state.Stat.Policy,
            SchedPrio = state.Stat.RtPriority,
            BlkSigset = state.SigMask,
            Sas = new ThreadSasEntry { SsSp = state.AltStack.Sp, SsSize = state.AltStack.Size, SsFlags = state.AltStack.Flags },
            PdeathSig = state.ParentDeathSignal,
            Creds = BuildCreds(state),
            SeccompMode = SeccompMode.Disabled,
            Comm = state.Comm,
        };
        if (state.ThreadSignals.Count > 0) thread.SignalsP = SignalQueue(state.ThreadSignals);
        if (state.Rseq.AbiPointer != 0)
            thread.RseqEntry = new RseqEntry { RseqAbiPointer = state.Rseq.AbiPointer, RseqAbiSize = state.Rseq.AbiSize, Signature = state.Rseq.Signature };

        return new CoreEntry
        {
            Mtype = CoreEntry.Types.March.X8664,
            ThreadInfo = new ThreadInfoX86
            {
                ClearTidAddr = state.ClearChildTid,
                Gpregs = BuildGpRegs(SettleInterruptedSyscall(state.Pid, state.Registers)),
                Fpregs = BuildFpRegs(state.XState),
            },
            Tc = tc,
            ThreadCore = thread,
        };
    }

    /// <summary>Registers as they must be on restore when the task was stopped inside a syscall.</summary>
    public static UserRegs SettleInterruptedSyscall(int pid, UserRegs regs)
    {
        if ((long)regs.orig_rax < 0) return regs;
        switch (-(long)regs.rax)
        {
            case ERESTARTSYS or ERESTARTNOINTR or ERESTARTNOHAND:
                Log.Info($"{pid}: core: syscall {(long)regs.orig_rax} was interrupted; it is re-issued on restore");
                regs.rax = regs.orig_rax;
                regs.rip -= 2;
                break;
            case ERESTART_RESTARTBLOCK:
                Log.Info($"{pid}: core: syscall {(long)regs.orig_rax} was interrupted with a restart block; it returns EINTR on restore");
                regs.rax = unchecked((ulong)-EINTR);
                break;
        }
        return regs;
    }

    private static SignalQueueEntry SignalQueue(IReadOnlyList<byte[]> signals)
    {
        var queue = new SignalQueueEntry();
        foreach (var info in signals) queue.Signals.Add(new SiginfoEntry { Siginfo = Google.Protobuf.ByteString.CopyFrom(info) });
        return queue;
    }

    private static UserX86RegsEntry BuildGpRegs(UserRegs r) => new()
    {
        R15 = r.r15, R14 = r.r14, R13 = r.r13, R12 = r.r12, Bp = r.rbp, Bx = r.rbx, R11 = r.r11, R10 = r.r10,
        R9 = r.r9, R8 = r.r8, Ax = r.rax, Cx = r.rcx, Dx = r.rdx, Si = r.rsi, Di = r.rdi, OrigAx = r.orig_rax,
        Ip = r.rip, Cs = r.cs, Flags = r.eflags, Sp = r.rsp, Ss = r.ss, FsBase = r.fs_base, GsBase = r.gs_base,
        Ds = r.ds, Es = r.es, Fs = r.fs, Gs = r.gs, Mode = UserX86RegsMode.Native,
    };

    /// <summary>
    /// CRIU's x86 layout: the 512-byte FXSAVE image split into its fields (user_fpregs_entry), then, for an
    /// XSAVE buffer, XSTATE_BV and each extended component the CPU supports, at its standard-format offset.
    /// </summary>
    internal static UserX86FpregsEntry BuildFpRegs(byte[] x)
    {
        var fp = new UserX86FpregsEntry
        {
            Cwd = U16(x, 0), Swd = U16(x, 2), Twd = U16(x, 4), Fop = U16(x, 6),
            Rip = U64(x, 8), Rdp = U64(x, 16), Mxcsr = U32(x, 24), MxcsrMask = U32(x, 28),
        };
        for (int i = 0; i < 32; i++) fp.StSpace.Add(U32(x, 32 + 4 * i));
        for (int i = 0; i < 64; i++) fp.XmmSpace.Add(U32(x, 160 + 4 * i));
        for (int i = 0; i < FpPaddingWords; i++) fp.Padding.Add(U32(x, 416 + 4 * i));
        if (x.Length <= XSave.FxSaveSize) return fp;

        var xsave = new UserX86XsaveEntry { XstateBv = U64(x, XSave.XStateBvOffset) };
        AddComponent(x, 2, 256, o => { for (int i = 0; i < 64; i++) xsave.YmmhSpace.Add(U32(x, o + 4 * i)); });
        AddComponent(x, 3, 64, o => { for (int i = 0; i < 8; i++) xsave.BndregState.Add(U64(x, o + 8 * i)); });
        AddComponent(x, 4, 16, o => { for (int i = 0; i < 2; i++) xsave.BndcsrState.Add(U64(x, o + 8 * i)); });
        AddComponent(x, 5, 64, o => { for (int i = 0; i < 8; i++) xsave.OpmaskReg.Add(U64(x, o + 8 * i)); });
        AddComponent(x, 6, 512, o => { for (int i = 0; i < 64; i++) xsave.ZmmUpper.Add(U64(x, o + 8 * i)); });
        AddComponent(x, 7, 1024, o => { for (int i = 0; i < 128; i++) xsave.Hi16Zmm.Add(U64(x, o + 8 * i)); });
        AddComponent(x, 9, 8, o => { for (int i = 0; i < 2; i++) xsave.Pkru.Add(U32(x, o + 4 * i)); });
        fp.Xsave = xsave;
        return fp;
    }

    /// <summary>Component <paramref name="c"/> when the CPU enables it (CPUID 0xD.0 EAX) and the buffer holds it.</summary>
    private static void AddComponent(byte[] x, int c, int size, Action<int> add)
    {
        if (!X86Base.IsSupported || X86Base.CpuId(0, 0).Eax < 0xd) return;
        if ((X86Base.CpuId(0xd, 0).Eax & (1 << c)) == 0) return;
        var (eax, ebx, _, _) = X86Base.CpuId(0xd, c);
        if (eax < size || ebx <= 0 || ebx + size > x.Length) return;
        add(ebx);
    }

    private static CredsEntry BuildCreds(TaskState state)
    {
        var s = state.Status;
        var creds = new CredsEntry
        {
            Uid = s.Uid.Real, Euid = s.Uid.Effective, Suid = s.Uid.Saved, Fsuid = s.Uid.Filesystem,
            Gid = s.Gid.Real, Egid = s.Gid.Effective, Sgid = s.Gid.Saved, Fsgid = s.Gid.Filesystem,
            Secbits = state.SecureBits,
        };
        AddCaps(creds.CapInh, s.CapInh);
        AddCaps(creds.CapPrm, s.CapPrm);
        AddCaps(creds.CapEff, s.CapEff);
        AddCaps(creds.CapBnd, s.CapBnd);
        creds.Groups.AddRange(s.Groups);
        // CRIU's newer fields; written only when set, so images of ordinary tasks stay as older crit knows them.
        if (s.NoNewPrivs == true) creds.NoNewPrivs = 1;
        if (s.CapAmb is ulong ambient and not 0) AddCaps(creds.CapAmb, ambient);
        return creds;
    }

    private static void AddCaps(Google.Protobuf.Collections.RepeatedField<uint> field, ulong? caps)
    {
        ulong v = caps ?? 0;
        field.Add((uint)v);
        field.Add((uint)(v >> 32));
    }

    private static long? ReadOptionalInt(string path)
    {
        try
        {
            return long.Parse(File.ReadAllText(path).Trim(), CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or OverflowException)
        {
            return null;
        }
    }

    private static ulong U64(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt64LittleEndian(b[at..]);

    private static uint U32(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt32LittleEndian(b[at..]);

    private static uint U16(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt16LittleEndian(b[at..]);
}
