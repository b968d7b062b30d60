using System.Runtime.InteropServices;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Interop;
using Crest.Kernel.Ptrace;
using Crest.Kernel.Tests.Fixtures;

namespace Crest.Kernel.Tests.Ptrace;

public class TraceeTests
{
    private static readonly TimeSpan Timeout = FixtureProcess.DefaultTimeout;

    [Fact]
    public void SeizeInterruptAndRegistersRoundTrip()
    {
        using var tracer = new Tracer();
        using var fixture = FixtureProcess.Start("tracee_state");
        fixture.WaitUntilInSyscall(SyscallNumbers.pause, Timeout);
        var tracee = tracer.Seize(fixture.Pid);
        Assert.Equal(Tracee.DefaultOptions, tracee.Options);

        var stop = tracee.InterruptAndWait(Timeout);
        Assert.Equal("stopped(SIGTRAP, event 128)", stop.Status.ToString());
        Assert.True(stop.Status.IsEventStop);
        Assert.Equal(Libc.SIGTRAP, stop.Signal);
        Assert.Equal(fixture.Pid, stop.Tid);

        var regs = tracee.GetRegisters();
        Assert.Equal(SyscallNumbers.pause, regs.SyscallNumber);
        Assert.Equal(-514, regs.SyscallResult); // -ERESTARTNOHAND: pause with a handler installed
        Assert.Equal((ulong)regs.rax, tracee.PeekUser(UserRegs.RaxOffset));

        var changed = regs;
        changed.r12 ^= 0x5a5a_5a5a_5a5a_5a5a;
        tracee.SetRegisters(changed);
        Assert.Equal(changed, tracee.GetRegisters());
        tracee.SetRegisters(regs);
        Assert.Equal(regs, tracee.GetRegisters());

        byte[] xstate = tracee.GetXState();
        Assert.True(xstate.Length > XSave.FxSaveSize, $"xstate is {xstate.Length} bytes");
        tracee.SetXState(xstate);
        Assert.Equal(xstate, tracee.GetXState());
        byte[] fx = tracee.GetFpRegs();
        Assert.Equal(XSave.FxSaveSize, fx.Length);
        Assert.True(XSave.Xmm(fx, 0).SequenceEqual(XSave.Xmm(xstate, 0)));

        // Syscall info outside a syscall stop: no op, but the architecture and the task's pointers.
        var info = tracee.GetSyscallInfo();
        Assert.Equal(SyscallInfoOp.None, info.Op);
        Assert.Equal(SyscallInfo.AuditArchX86_64, info.Arch);
        Assert.Equal(regs.rip, info.InstructionPointer);
        Assert.Equal(regs.rsp, info.StackPointer);

        tracee.Detach();
        Assert.Equal("PASS", fixture.Verify(Libc.SIGUSR1, Timeout));
    }

    [Fact]
    public void RegistersReadFromOutsideAreTheTasksOwn()
    {
        // inject_target holds known values in general and vector registers while it sleeps in pause().
        using var tracer = new Tracer();
        using var fixture = FixtureProcess.Start("inject_target");
        fixture.WaitUntilInSyscall(SyscallNumbers.pause, Timeout);
        var tracee = tracer.Seize(fixture.Pid);
        tracee.InterruptAndWait(Timeout);

        var regs = tracee.GetRegisters();
        ulong[] held = [regs.rbx, regs.rbp, regs.rdx, regs.rsi, regs.r8, regs.r9, regs.r10, regs.r12, regs.r13, regs.r14, regs.r15, regs.rdi];
        for (int i = 0; i < held.Length; i++)
            Assert.Equal(0x0101010101010101UL * (ulong)(i + 1) ^ 0xc0ffee00deadbeefUL, held[i]);

        byte[] xstate = tracee.GetXState();
        bool avx = fixture.Ready["avx"] == "1";
        Assert.Equal(avx, (XSave.XStateBv(xstate) & (1UL << XSave.AvxComponent)) != 0);
        for (int r = 0; r < 16; r++)
        {
            byte[] ymm = XSave.Ymm(xstate, r);
            for (int b = 0; b < (avx ? 32 : 16); b++)
                Assert.Equal((byte)((r * 32 + b) ^ 0x5a), ymm[b]);
        }

        // A 512-byte FXSAVE area goes back through NT_PRFPREG. The kernel then marks x87 state as present
        // in XSTATE_BV (it was in its init state); every register keeps its value.
        byte[] fx = tracee.GetFpRegs();
        tracee.SetXState(fx);
        Assert.Equal(fx, tracee.GetFpRegs());
        byte[] after = tracee.GetXState();
        Assert.Equal(xstate[..XSave.XStateBvOffset], after[..XSave.XStateBvOffset]);
        Assert.Equal(xstate[(XSave.XStateBvOffset + 64)..], after[(XSave.XStateBvOffset + 64)..]);
        Assert.Equal(XSave.XStateBv(xstate) | 1, XSave.XStateBv(after));

        tracee.Detach();
        Assert.Equal("PASS", fixture.Verify(Libc.SIGUSR1, Timeout));
    }

    [Fact]
    public void EndingTheTracerThreadDetachesItsTracees()
    {
        using var fixture = FixtureProcess.Start("tracee_state");
        var tracer = new Tracer();
        var tracee = tracer.Seize(fixture.Pid);
        tracee.InterruptAndWait(Timeout);
        // TracerPid names the tracer thread, not our process.
        Assert.Equal(tracer.ThreadId, TracerPid());
        tracer.Dispose();
        Assert.Equal(0, TracerPid());
        Assert.Equal("PASS", fixture.Verify(Libc.SIGUSR1, Timeout));

        int TracerPid() => int.Parse(File.ReadAllLines($"/proc/{fixture.Pid}/status").First(l => l.StartsWith("TracerPid:"))["TracerPid:".Length..].Trim());
    }

    [Fact]
    public void PtraceFromAnotherThreadFailsWithEsrch()
    {
        // This is why one tracer thread owns every tracee: the kernel binds the tracee to the thread.
        using var tracer = new Tracer();
        using var fixture = FixtureProcess.Start("tracee_state");
        var tracee = tracer.Seize(fixture.Pid);
        tracee.InterruptAndWait(Timeout);

        Marshal.SetLastPInvokeError(0);
        long word = Libc.ptrace(Libc.PTRACE_PEEKUSER, fixture.Pid, UserRegs.RipOffset, 0);
        int errno = Marshal.GetLastPInvokeError();
        Assert.Equal(-1, word);
        Assert.Equal(Errno.ESRCH, errno);

        // The same request submitted to the tracer thread works.
        Assert.Equal(tracee.GetRegisters().rip, tracer.Run(() => (ulong)Libc.ptrace(Libc.PTRACE_PEEKUSER, fixture.Pid, UserRegs.RipOffset, 0)));
        tracee.Detach();
        Assert.Equal("PASS", fixture.Verify(Libc.SIGUSR1, Timeout));
    }

    [Fact]
    public void SignalStateRseqAndSeccompAreReadFromOutside()
    {
        using var tracer = new Tracer();
        using var fixture = FixtureProcess.Start("tracee_state");
        var tracee = tracer.Seize(fixture.Pid);
        tracee.InterruptAndWait(Timeout);

        Assert.Equal(fixture.ReadyAddress("mask"), tracee.GetSigMask());

        var shared = tracee.PeekSigInfo(shared: true, index: 0, count: 8);
        var sigusr2 = Assert.Single(shared);
        Assert.Equal(Libc.SIGUSR2, sigusr2.Signo);
        Assert.Equal(0, sigusr2.Code); // SI_USER: kill(2)
        Assert.Equal(fixture.Pid, sigusr2.SenderPid);
        Assert.Equal(SigInfo.Size, sigusr2.Bytes.Length);
        var own = tracee.PeekSigInfo(shared: false, index: 0, count: 8);
        var sigwinch = Assert.Single(own);
        Assert.Equal(Libc.SIGWINCH, sigwinch.Signo);
        Assert.Equal(-6, sigwinch.Code); // SI_TKILL: tgkill(2)
        Assert.Empty(tracee.PeekSigInfo(shared: true, index: 1, count: 8));

        var rseq = tracee.GetRseqConfiguration();
        Assert.Equal(fixture.ReadyAddress("rseq"), rseq.AbiPointer);
        if (rseq.AbiPointer != 0)
        {
            Assert.Equal(0x53053053u, rseq.Signature); // RSEQ_SIG on x86
            Assert.True(rseq.AbiSize >= 32);
        }

        byte[]? filter = tracee.GetSeccompFilter(0);
        Assert.NotNull(filter);
        // struct sock_filter {u16 code; u8 jt, jf; u32 k}: load nr; if nr == getppid (110) return
        // SECCOMP_RET_ERRNO | ENOTTY (25), else return SECCOMP_RET_ALLOW.
        Assert.Equal(new byte[]
        {
            0x20, 0, 0, 0, 0, 0, 0, 0,
            0x15, 0, 0, 1, 110, 0, 0, 0,
            0x06, 0, 0, 0, 25, 0, 0x05, 0,
            0x06, 0, 0, 0, 0, 0, 0xff, 0x7f,
        }, filter);
        Assert.Null(tracee.GetSeccompFilter(1));
        Assert.Equal(0UL, tracee.GetSeccompFilterFlags(0));

        tracee.Detach();
        Assert.Equal("PASS", fixture.Verify(Libc.SIGUSR1, Timeout));
    }

    [Fact]
    public void GroupStoppedTaskIsSeizedStraightIntoAnEventStop()
    {
        using var tracer = new Tracer();
        using var fixture = FixtureProcess.Start("stub_stopped");
        WaitForState(fixture.Pid, 'T');
        var tracee = tracer.Seize(fixture.Pid);
        var stop = tracee.WaitForStop(Timeout);
        Assert.Equal("stopped(SIGSTOP, event 128)", stop.Status.ToString());

        ulong gadget = fixture.ReadyAddress("gadget");
        Assert.Equal(unchecked((long)0x9090909090909090), tracee.PeekData(gadget));
        tracee.Detach();
        fixture.Child.Signal(Libc.SIGCONT);
        Assert.Equal("PASS", fixture.WaitForVerdict(Timeout));
    }

    [Fact]
    public void WaitingForAStopIsBounded()
    {
        using var tracer = new Tracer();
        using var fixture = FixtureProcess.Start("tracee_state");
        var tracee = tracer.Seize(fixture.Pid);
        Assert.Throws<TimeoutException>(() => tracee.WaitForStop(TimeSpan.FromMilliseconds(50)));
        var e = Assert.Throws<KernelException>(() => tracee.GetRegisters());
        Assert.Equal($"ptrace(PTRACE_GETREGSET, NT_PRSTATUS, {fixture.Pid}): ESRCH (No such process)", e.Message);
        tracee.InterruptAndWait(Timeout);
        tracee.Detach();
        Assert.Equal("PASS", fixture.Verify(Libc.SIGUSR1, Timeout));
    }

    [Fact]
    public void SeizingATaskTwiceNamesTheCallAndTask()
    {
        using var tracer = new Tracer();
        using var fixture = FixtureProcess.Start("tracee_state");
        var tracee = tracer.Seize(fixture.Pid);
        var e = Assert.Throws<KernelException>(() => tracer.Seize(fixture.Pid));
        Assert.Equal($"ptrace(PTRACE_SEIZE, {fixture.Pid}): EPERM (Operation not permitted)", e.Message);
        tracee.InterruptAndWait(Timeout);
        tracee.Detach();
    }

    [Fact]
    public void SyscallStopsAreDescribedBySyscallInfo()
    {
        using var tracer = new Tracer();
        using var fixture = FixtureProcess.Start("tracee_state");
        fixture.WaitUntilInSyscall(SyscallNumbers.pause, Timeout);
        var tracee = tracer.Seize(fixture.Pid);

        fixture.Child.Signal(Libc.SIGUSR1);
        var stop = tracee.WaitForStop(Timeout);
        Assert.Equal("stopped(SIGUSR1)", stop.Status.ToString());
        // Deliver the signal and stop at the next syscall: the handler's return through rt_sigreturn.
        tracee.ContinueToSyscall(Libc.SIGUSR1);
        stop = tracee.WaitForStop(Timeout);
        Assert.True(stop.Status.IsSyscallStop, stop.ToString());
        var entry = tracee.GetSyscallInfo();
        Assert.Equal(SyscallInfoOp.Entry, entry.Op);
        Assert.Equal(SyscallNumbers.rt_sigreturn, entry.Number);
        Assert.Equal(tracee.GetRegisters().rip, entry.InstructionPointer);

        tracee.ContinueToSyscall();
        stop = tracee.WaitForStop(Timeout);
        Assert.True(stop.Status.IsSyscallStop, stop.ToString());
        var exit = tracee.GetSyscallInfo();
        Assert.Equal(SyscallInfoOp.Exit, exit.Op);
        // rt_sigreturn returns the interrupted pause()'s result: -EINTR, the handler having run.
        Assert.Equal(-Errno.EINTR, exit.ReturnValue);
        Assert.True(exit.IsError);
        tracee.Detach();
        Assert.Equal("PASS", fixture.WaitForVerdict(Timeout));
    }

    [Fact]
    public void ListeningTaskStaysStoppedUntilContinued()
    {
        using var tracer = new Tracer();
        using var fixture = FixtureProcess.Start("stub_stopped");
        WaitForState(fixture.Pid, 'T');
        var tracee = tracer.Seize(fixture.Pid);
        Assert.True(tracee.WaitForStop(Timeout).Status.IsEventStop);
        tracee.Listen();
        Assert.Throws<TimeoutException>(() => tracee.WaitForStop(TimeSpan.FromMilliseconds(50)));
        // SIGCONT ends the group stop; a listening tracee reports that with another event stop.
        fixture.Child.Signal(Libc.SIGCONT);
        var stop = tracee.WaitForStop(Timeout);
        Assert.True(stop.Status.IsEventStop, stop.ToString());
        tracee.Detach();
        Assert.Equal("PASS", fixture.WaitForVerdict(Timeout));
    }

    [Fact]
    public void ForkedChildIsAttachedToTheTracerThread()
    {
        using var tracer = new Tracer();
        using var fixture = FixtureProcess.Start("forker");
        fixture.WaitUntilInSyscall(SyscallNumbers.pause, Timeout);
        var parent = tracer.Seize(fixture.Pid, Tracee.DefaultOptions | PtraceOptions.TraceFork);

        // A signal for a tracee first stops it; the tracer passes it on.
        fixture.Child.Signal(Libc.SIGUSR1);
        var stop = parent.WaitForStop(Timeout);
        Assert.True(stop.Status.IsSignalDeliveryStop, stop.ToString());
        Assert.Equal(Libc.SIGUSR1, stop.Signal);
        parent.Continue(Libc.SIGUSR1);

        stop = parent.WaitForStop(Timeout);
        Assert.Equal(PtraceEvent.Fork, stop.Event);
        int childPid = checked((int)parent.GetEventMessage());
        parent.Detach();

        var child = tracer.Adopt(childPid, parent.Options);
        var first = child.WaitForStop(Timeout);
        Assert.True(first.Status.IsEventStop, first.ToString());
        Assert.Equal(-1, Libc.ptrace(Libc.PTRACE_PEEKUSER, childPid, UserRegs.RipOffset, 0));
        using (var remote = Crest.Kernel.Injection.SyscallInjector.Open(child))
            Assert.Equal(fixture.Pid, remote.Syscall(SyscallNumbers.getppid));
        child.Detach();
        Assert.Equal("PASS", fixture.WaitForVerdict(Timeout));
        Assert.Contains($"CHILD {childPid}", fixture.Output);
    }

    internal static void WaitForState(int pid, char state)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            if (stat[stat.LastIndexOf(')') + 2] == state) return;
            if (clock.Elapsed > Timeout) throw new TimeoutException($"task {pid} never reached state {state}: {stat}");
            Thread.Sleep(2);
        }
    }
}
