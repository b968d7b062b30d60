// Per-process and per-thread state of a restored task, and its release (ENGINE.md §4.5-4.7; CRIU's
// cr-restore.c / restorer.c do the same from inside the task). Injected: prctl(PR_SET_MM, PR_SET_MM_MAP)
// (Linux 3.18; exe_fd needs CAP_CHECKPOINT_RESTORE, not CAP_SYS_RESOURCE), rt_sigaction per signal,
// prlimit64, personality, PR_SET_NAME, set_tid_address, set_robust_list, rseq (Linux 4.18), sigaltstack.
// From outside: PTRACE_SETSIGMASK, PTRACE_SETREGSET NT_X86_XSTATE and NT_PRSTATUS.
//
// An interrupted syscall (the task was stopped inside it): -ERESTARTSYS/-ERESTARTNOINTR/-ERESTARTNOHAND
// are re-issued (rax = orig_rax, rip back over the 2-byte syscall instruction); -ERESTART_RESTARTBLOCK
// becomes -EINTR, because the kernel's restart block did not survive the dump (as CRIU does). The final
// registers carry orig_rax = -1 so the kernel does not apply its own restart logic on top.
using System.Buffers.Binary;
using Crest.Diagnostics;
using Crest.Images.Protos;
using Crest.Kernel;
using Crest.Kernel.Arch.X64;

namespace Crest.Engine.Restore;

internal sealed class RestoreCore(StubInjector task, RestoreImages images)
{
    private const long PR_SET_PDEATHSIG = 1, PR_SET_DUMPABLE = 4, PR_SET_NAME = 15, PR_SET_MM = 35, PR_SET_MM_MAP = 14,
        PR_SET_THP_DISABLE = 41, PR_SET_CHILD_SUBREAPER = 36, AT_FDCWD = -100, O_CLOEXEC = 0x80000;
    private const uint TaskStopped = 3;
    private const long ERESTARTSYS = 512, ERESTARTNOINTR = 513, ERESTARTNOHAND = 514, ERESTART_RESTARTBLOCK = 516, EINTR = 4;

    private readonly CoreEntry _core = images.Core;

    /// <summary>mm fields, auxv and exe link with one PR_SET_MM_MAP.</summary>
    public void RestoreMm(RestoreMemory memory)
    {
        var mm = images.Mm;
        long exeFd = -1;
        if (mm.ExeFileId != 0 || images.Files.ContainsKey(mm.ExeFileId))
        {
            var exe = images.RegularFile(mm.ExeFileId, "exe link");
            exeFd = task.Check("openat", $"exe {exe.Name}", SyscallNumbers.openat, AT_FDCWD, (long)task.PutString(exe.Name), O_CLOEXEC, 0);
        }
        var auxv = new byte[mm.MmSavedAuxv.Count * 8];
        for (int i = 0; i < mm.MmSavedAuxv.Count; i++) BinaryPrimitives.WriteUInt64LittleEndian(auxv.AsSpan(i * 8), mm.MmSavedAuxv[i]);
        ulong auxvAddress = auxv.Length > 0 ? task.Put(auxv) : 0;
        var map = new byte[104];
        var s = map.AsSpan();
        ulong[] fields = [mm.MmStartCode, mm.MmEndCode, mm.MmStartData, mm.MmEndData, mm.MmStartBrk, mm.MmBrk,
            mm.MmStartStack, mm.MmArgStart, mm.MmArgEnd, mm.MmEnvStart, mm.MmEnvEnd, auxvAddress];
        for (int i = 0; i < fields.Length; i++) BinaryPrimitives.WriteUInt64LittleEndian(s[(i * 8)..], fields[i]);
        BinaryPrimitives.WriteUInt32LittleEndian(s[96..], (uint)auxv.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(s[100..], (uint)exeFd);
        ulong mapAddress = task.Put(map);
        task.Check("prctl(PR_SET_MM, PR_SET_MM_MAP)", "mm fields, auxv and exe", SyscallNumbers.prctl, PR_SET_MM, PR_SET_MM_MAP, (long)mapAddress, map.Length, 0);
        if (exeFd >= 0) task.Check("close", "exe fd", SyscallNumbers.close, exeFd);
        task.ResetScratch();
        if (mm.HasDumpable && mm.Dumpable != 1)
            task.Check("prctl(PR_SET_DUMPABLE)", $"dumpable {mm.Dumpable}", SyscallNumbers.prctl, PR_SET_DUMPABLE, mm.Dumpable);
        if (mm.HasThpDisabled && mm.ThpDisabled)
            task.Check("prctl(PR_SET_THP_DISABLE)", "thp", SyscallNumbers.prctl, PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }

    /// <summary>Signal handlers, rlimits, personality (sessions and groups are set up when the tree is created).</summary>
    public void RestoreProcessState()
    {
        var tc = _core.Tc ?? throw new RestoreException($"core-{task.Pid}.img has no task core (tc)");
        int index = 0;
        Span<byte> act = stackalloc byte[32];
        for (int sig = 1; sig <= 64 && index < tc.Sigactions.Count; sig++)
        {
            if (sig is 9 or 19) continue;
            var sa = tc.Sigactions[index++];
            BinaryPrimitives.WriteUInt64LittleEndian(act, sa.Sigaction);
            BinaryPrimitives.WriteUInt64LittleEndian(act[8..], sa.Flags);
            BinaryPrimitives.WriteUInt64LittleEndian(act[16..], sa.Restorer);
            BinaryPrimitives.WriteUInt64LittleEndian(act[24..], sa.Mask);
            if (sa.Sigaction == 0 && sa.Flags == 0 && sa.Mask == 0) continue; // SIG_DFL, as the stub has it
            task.Check("rt_sigaction", $"signal {sig}", SyscallNumbers.rt_sigaction, sig, (long)task.Put(act), 0, 8);
            task.ResetScratch();
        }
        if (tc.Rlimits is { } limits)
        {
            Span<byte> limit = stackalloc byte[16];
            Span<byte> old = stackalloc byte[16];
            for (int resource = 0; resource < limits.Rlimits.Count; resource++)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(limit, limits.Rlimits[resource].Cur);
                BinaryPrimitives.WriteUInt64LittleEndian(limit[8..], limits.Rlimits[resource].Max);
                ReadLimit(task, resource, old);
                if (!old.SequenceEqual(limit))
                    task.Check("prlimit64", $"resource {resource} ({limits.Rlimits[resource].Cur}/{limits.Rlimits[resource].Max})",
                        SyscallNumbers.prlimit64, 0, resource, (long)task.Put(limit), 0);
                task.ResetScratch();
            }
        }
        if (tc.HasChildSubreaper && tc.ChildSubreaper)
            task.Check("prctl(PR_SET_CHILD_SUBREAPER)", "child subreaper", SyscallNumbers.prctl, PR_SET_CHILD_SUBREAPER, 1);
        if (tc.HasOomScoreAdj)
            File.WriteAllText($"/proc/{task.Pid}/oom_score_adj", tc.OomScoreAdj.ToString(System.Globalization.CultureInfo.InvariantCulture));
        long personality = task.Syscall(SyscallNumbers.personality, 0xffffffff);
        if (personality != tc.Personality)
            task.Syscall(SyscallNumbers.personality, tc.Personality);
    }

    /// <summary>comm, clear_child_tid, robust list, rseq, sigaltstack, pdeath signal.</summary>
    public void RestoreThreadState()
    {
        var thread = _core.ThreadCore;
        string comm = thread is { HasComm: true } ? thread.Comm : _core.Tc?.Comm ?? "";
        if (comm.Length > 0)
        {
            task.Check("prctl(PR_SET_NAME)", $"comm '{comm}'", SyscallNumbers.prctl, PR_SET_NAME, (long)task.PutString(comm));
            task.ResetScratch();
        }
        task.Syscall(SyscallNumbers.set_tid_address, (long)_core.ThreadInfo.ClearTidAddr);
        if (thread is null) return;
        if (thread.FutexRla != 0)
            task.Check("set_robust_list", $"0x{thread.FutexRla:x}", SyscallNumbers.set_robust_list, (long)thread.FutexRla, thread.FutexRlaLen);
        if (thread.RseqEntry is { RseqAbiPointer: not 0 } rseq)
            task.Check("rseq", $"0x{rseq.RseqAbiPointer:x}+{rseq.RseqAbiSize}", SyscallNumbers.rseq, (long)rseq.RseqAbiPointer, rseq.RseqAbiSize, 0, rseq.Signature);
        if (thread.Sas is { } sas && (sas.SsFlags & 2 /* SS_DISABLE */) == 0 && sas.SsSize != 0)
        {
            var stack = new byte[24];
            BinaryPrimitives.WriteUInt64LittleEndian(stack, sas.SsSp);
            BinaryPrimitives.WriteUInt32LittleEndian(stack.AsSpan(8), sas.SsFlags & ~1u /* SS_ONSTACK is a state, not a request */);
            BinaryPrimitives.WriteUInt64LittleEndian(stack.AsSpan(16), sas.SsSize);
            task.Check("sigaltstack", $"0x{sas.SsSp:x}+{sas.SsSize}", SyscallNumbers.sigaltstack, (long)task.Put(stack), 0);
            task.ResetScratch();
        }
        if ((thread.HasSchedPolicy && thread.SchedPolicy != 0) || (thread.HasSchedPrio && thread.SchedPrio != 0))
        {
            var param = new byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(param, (int)thread.SchedPrio);
            task.Check("sched_setscheduler", $"policy {thread.SchedPolicy} priority {thread.SchedPrio}", 144 /* sched_setscheduler */, 0,
                thread.SchedPolicy, (long)task.Put(param));
            task.ResetScratch();
        }
        if (thread.HasSchedNice && thread.SchedNice != 0 && thread.SchedPolicy is 0 or 3 /* SCHED_OTHER, SCHED_BATCH */)
            task.Check("setpriority", $"nice {thread.SchedNice}", 141 /* setpriority */, 0 /* PRIO_PROCESS */, 0, thread.SchedNice);
        if (thread.HasPdeathSig && thread.PdeathSig != 0)
            task.Check("prctl(PR_SET_PDEATHSIG)", $"signal {thread.PdeathSig}", SyscallNumbers.prctl, PR_SET_PDEATHSIG, thread.PdeathSig);
    }

    /// <summary>Interval timers (setitimer; ITIMER_REAL, _VIRTUAL, _PROF) with the time they had left at dump.</summary>
    public void RestoreIntervalTimers()
    {
        if (_core.Tc?.Timers is not { } timers) return;
        ItimerEntry?[] all = [timers.Real, timers.Virt, timers.Prof];
        var value = new byte[32];
        for (int which = 0; which < all.Length; which++)
        {
            if (all[which] is not { } t || (t.Vsec == 0 && t.Vusec == 0)) continue; // disarmed
            BinaryPrimitives.WriteUInt64LittleEndian(value, t.Isec);
            BinaryPrimitives.WriteUInt64LittleEndian(value.AsSpan(8), t.Iusec);
            BinaryPrimitives.WriteUInt64LittleEndian(value.AsSpan(16), t.Vsec);
            BinaryPrimitives.WriteUInt64LittleEndian(value.AsSpan(24), t.Vusec);
            task.Check("setitimer", $"timer {which}", SyscallNumbers.setitimer, which, (long)task.Put(value), 0);
            task.ResetScratch();
        }
    }

    /// <summary>
    /// Signals that were pending at dump time, queued again by the task to itself (rt_sigqueueinfo and
    /// rt_tgsigqueueinfo accept any si_code for the caller's own process); all signals stay blocked until release.
    /// </summary>
    public void RestorePendingSignals()
    {
        int count = 0;
        if (_core.Tc?.SignalsS is { } shared)
            foreach (var info in shared.Signals)
            {
                int sig = BinaryPrimitives.ReadInt32LittleEndian(info.Siginfo.Span);
                task.Check("rt_sigqueueinfo", $"pending signal {sig}", SyscallNumbers.rt_sigqueueinfo, task.Pid, sig, (long)task.Put(info.Siginfo.Span));
                task.ResetScratch();
                count++;
            }
        if (_core.ThreadCore?.SignalsP is { } own)
            foreach (var info in own.Signals)
            {
                int sig = BinaryPrimitives.ReadInt32LittleEndian(info.Siginfo.Span);
                task.Check("rt_tgsigqueueinfo", $"pending signal {sig}", SyscallNumbers.rt_tgsigqueueinfo, task.Pid, task.Pid, sig, (long)task.Put(info.Siginfo.Span));
                task.ResetScratch();
                count++;
            }
        if (count > 0) Log.Info($"{task.Pid}: restore: {count} pending signals queued again");
    }

    /// <summary>Credentials last (ENGINE.md §4.6): ids, capabilities, securebits, no_new_privs (RestoreCredentials).</summary>
    public void RestoreCreds()
    {
        if (_core.ThreadCore?.Creds is { } creds) RestoreCredentials.Restore(task, creds);
    }

    /// <summary>Unmap the restore region, set the dumped registers and signal mask, detach.</summary>
    public void Release(RestoreMemory memory)
    {
        var info = _core.ThreadInfo;
        var regs = FinalRegisters(info.Gpregs);
        byte[] xstate = BuildXState(task.Tracee.GetXState(), info.Fpregs);
        ulong blocked = _core.ThreadCore is { HasBlkSigset: true } t ? t.BlkSigset : _core.Tc?.BlkSigset ?? 0;

        long rc = task.FinalSyscall(SyscallNumbers.munmap, (long)task.RegionBase, (long)StubInjector.RegionSize);
        if (rc != 0) throw new RestoreException($"munmap of the restore region in task {task.Pid} failed: {Crest.Kernel.Errno.FromRawReturn(rc)}");
        task.Tracee.SetXState(xstate);
        task.Tracee.SetRegisters(regs);
        task.Tracee.SetSigMask(blocked);
        if (_core.Tc is { TaskState: TaskStopped } tc)
        {
            // A task stopped by job control stays stopped: the signal is queued while the task is still held,
            // and taken as soon as it is detached (one passed to PTRACE_DETACH from a trap stop would be lost).
            using var pidfd = Crest.Kernel.Files.PidFd.Open(task.Pid);
            pidfd.SendSignal(tc.HasStopSigno && tc.StopSigno != 0 ? (int)tc.StopSigno : 19);
        }
        task.Tracee.Detach(0);
        Log.Info($"{task.Pid}: restore: released at {regs}");
    }

    internal static UserRegs FinalRegisters(UserX86RegsEntry g)
    {
        var r = new UserRegs
        {
            r15 = g.R15, r14 = g.R14, r13 = g.R13, r12 = g.R12, rbp = g.Bp, rbx = g.Bx, r11 = g.R11, r10 = g.R10,
            r9 = g.R9, r8 = g.R8, rax = g.Ax, rcx = g.Cx, rdx = g.Dx, rsi = g.Si, rdi = g.Di, orig_rax = g.OrigAx,
            rip = g.Ip, cs = g.Cs, eflags = g.Flags, rsp = g.Sp, ss = g.Ss, fs_base = g.FsBase, gs_base = g.GsBase,
            ds = g.Ds, es = g.Es, fs = g.Fs, gs = g.Gs,
        };
        if ((long)r.orig_rax >= 0)
        {
            switch (-(long)r.rax)
            {
                case ERESTARTSYS or ERESTARTNOINTR or ERESTARTNOHAND:
                    r.rax = r.orig_rax;
                    r.rip -= 2;
                    break;
                case ERESTART_RESTARTBLOCK:
                    r.rax = unchecked((ulong)-EINTR);
                    break;
            }
        }
        r.orig_rax = ulong.MaxValue;
        return r;
    }

    /// <summary>
    /// The XSAVE buffer for PTRACE_SETREGSET from CRIU's split fields: the legacy FXSAVE area, XSTATE_BV,
    /// and the AVX / AVX-512 / PKRU components at their standard offsets (CPUID 0xD). The buffer this
    /// kernel handed out gives the size; the software-reserved bytes stay the kernel's.
    /// </summary>
    internal static byte[] BuildXState(byte[] current, UserX86FpregsEntry fp)
    {
        var x = (byte[])current.Clone();
        var s = x.AsSpan();
        BinaryPrimitives.WriteUInt16LittleEndian(s, (ushort)fp.Cwd);
        BinaryPrimitives.WriteUInt16LittleEndian(s[2..], (ushort)fp.Swd);
        BinaryPrimitives.WriteUInt16LittleEndian(s[4..], (ushort)fp.Twd);
        BinaryPrimitives.WriteUInt16LittleEndian(s[6..], (ushort)fp.Fop);
        BinaryPrimitives.WriteUInt64LittleEndian(s[8..], fp.Rip);
        BinaryPrimitives.WriteUInt64LittleEndian(s[16..], fp.Rdp);
        BinaryPrimitives.WriteUInt32LittleEndian(s[24..], fp.Mxcsr);
        BinaryPrimitives.WriteUInt32LittleEndian(s[28..], fp.MxcsrMask);
        Put32(s, 32, fp.StSpace, 32);
        Put32(s, 160, fp.XmmSpace, 64);
        if (x.Length <= XSave.FxSaveSize) return x;
        var xsave = fp.Xsave;
        ulong bv = xsave?.XstateBv ?? 3;
        BinaryPrimitives.WriteUInt64LittleEndian(s[XSave.XStateBvOffset..], bv);
        if (xsave is null) return x;
        PutComponent(s, 2, xsave.YmmhSpace, 4);
        PutComponent(s, 5, xsave.OpmaskReg, 8);
        PutComponent(s, 6, xsave.ZmmUpper, 8);
        PutComponent(s, 7, xsave.Hi16Zmm, 8);
        PutComponent(s, 9, xsave.Pkru, 4);
        return x;
    }

    // The task's limit now: from outside (prlimit64 on its pid; it still has Crest's credentials, so no
    // CAP_SYS_RESOURCE is needed), which saves an injected round trip per resource; from inside when refused.
    private static void ReadLimit(StubInjector task, int resource, Span<byte> limit)
    {
        try
        {
            var now = ResourceLimits.Get(task.Pid, (ResourceLimitKind)resource);
            BinaryPrimitives.WriteUInt64LittleEndian(limit, now.Current);
            BinaryPrimitives.WriteUInt64LittleEndian(limit[8..], now.Maximum);
        }
        catch (KernelException e) when (e.Errno.Value == Errno.EPERM)
        {
            ulong current = task.Reserve(16);
            task.Check("prlimit64", $"read resource {resource}", SyscallNumbers.prlimit64, 0, resource, 0, (long)current);
            Crest.Kernel.Memory.RemoteMemory.Read(task.Pid, current, limit);
        }
    }

    private static void Put32(Span<byte> s, int offset, IReadOnlyList<uint> words, int max)
    {
        for (int i = 0; i < Math.Min(words.Count, max); i++) BinaryPrimitives.WriteUInt32LittleEndian(s[(offset + 4 * i)..], words[i]);
    }

    private static void PutComponent(Span<byte> s, int component, IReadOnlyList<uint> words, int size)
    {
        int offset = XSave.ComponentOffset(component);
        if (words.Count == 0 || offset <= 0) return;
        if (offset + words.Count * size > s.Length)
            throw new RestoreException($"xstate component {component} ({words.Count * size} bytes at {offset}) does not fit this kernel's {s.Length}-byte XSAVE area");
        for (int i = 0; i < words.Count; i++) BinaryPrimitives.WriteUInt32LittleEndian(s[(offset + 4 * i)..], words[i]);
    }

    private static void PutComponent(Span<byte> s, int component, IReadOnlyList<ulong> words, int size)
    {
        int offset = XSave.ComponentOffset(component);
        if (words.Count == 0 || offset <= 0) return;
        if (offset + words.Count * size > s.Length)
            throw new RestoreException($"xstate component {component} ({words.Count * size} bytes at {offset}) does not fit this kernel's {s.Length}-byte XSAVE area");
        for (int i = 0; i < words.Count; i++) BinaryPrimitives.WriteUInt64LittleEndian(s[(offset + 8 * i)..], words[i]);
    }
}
