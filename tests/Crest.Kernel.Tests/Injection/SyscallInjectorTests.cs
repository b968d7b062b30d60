using System.Diagnostics;
using System.Globalization;
using System.Text;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Injection;
using Crest.Kernel.Interop;
using Crest.Kernel.Ptrace;
using Crest.Kernel.Tests.Fixtures;
using Xunit.Abstractions;

namespace Crest.Kernel.Tests.Injection;

public class SyscallInjectorTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = FixtureProcess.DefaultTimeout;
    private const long PROT_RW = 3, MAP_PRIVATE_ANONYMOUS = 0x22, PR_GET_DUMPABLE = 3, PR_GET_NAME = 16;
    private const long SA_RESTORER = 0x04000000;

    [Fact]
    public void InjectedSyscallsLeaveNoTrace()
    {
        using var tracer = new Tracer();
        using var fixture = FixtureProcess.Start("inject_target");
        int pid = fixture.Pid;
        fixture.WaitUntilInSyscall(SyscallNumbers.pause, Timeout);
        var tracee = tracer.Seize(pid);
        tracee.InterruptAndWait(Timeout);
        var before = tracee.GetRegisters();
        byte[] xstateBefore = tracee.GetXState();
        string mapsBefore = File.ReadAllText($"/proc/{pid}/maps");
        Assert.Equal(SyscallNumbers.pause, before.SyscallNumber);
        Assert.Equal(-514, before.SyscallResult);

        using (var remote = SyscallInjector.Open(tracee))
        {
            Assert.Equal(InjectionMode.ExistingSyscall, remote.Mode);
            var (vdsoStart, vdsoEnd) = Mapping(mapsBefore, "[vdso]");
            Assert.InRange(remote.GadgetAddress, vdsoStart, vdsoEnd - 2);

            Assert.Equal(pid, remote.Syscall(SyscallNumbers.getpid));

            long page = remote.Syscall(SyscallNumbers.mmap, 0, 4096, PROT_RW, MAP_PRIVATE_ANONYMOUS, -1, 0);
            Assert.True(page > 0 && page % 4096 == 0, $"mmap returned {page}");
            Assert.Contains($"{page:x}-", File.ReadAllText($"/proc/{pid}/maps"));
            Assert.Equal(0, remote.Syscall(SyscallNumbers.munmap, page, 4096));
            Assert.DoesNotContain($"{page:x}-", File.ReadAllText($"/proc/{pid}/maps"));

            // A failing syscall is a result, not an exception.
            Assert.Equal(-Errno.EBADF, remote.Syscall(SyscallNumbers.close, 12345));

            ulong scratch = remote.AllocScratch(100);
            Assert.Equal(0, remote.Syscall(SyscallNumbers.rt_sigaction, Libc.SIGUSR1, 0, (long)scratch, 8));
            var act = new byte[32]; // struct kernel_sigaction: handler, flags, restorer, mask
            remote.ReadScratch(scratch, act);
            Assert.Equal(fixture.ReadyAddress("handler"), BitConverter.ToUInt64(act, 0));
            Assert.NotEqual(0, BitConverter.ToInt64(act, 8) & SA_RESTORER);
            Assert.Equal(1UL << (Libc.SIGUSR2 - 1), BitConverter.ToUInt64(act, 24));

            Assert.Equal(1, remote.Syscall(SyscallNumbers.prctl, PR_GET_DUMPABLE));
            Assert.Equal(0, remote.Syscall(SyscallNumbers.prctl, PR_GET_NAME, (long)scratch));
            var comm = new byte[16];
            remote.ReadScratch(scratch, comm);
            Assert.Equal("inject_target", Encoding.ASCII.GetString(comm).TrimEnd('\0'));

            // Scratch is written and read from outside; access outside the scratch pages is refused.
            remote.WriteScratch(scratch + 64, "crest"u8);
            var back = new byte[5];
            remote.ReadScratch(scratch + 64, back);
            Assert.Equal("crest"u8.ToArray(), back);
            Assert.Contains($"{scratch:x}-", File.ReadAllText($"/proc/{pid}/maps"));
            Assert.Throws<ArgumentOutOfRangeException>(() => remote.ReadScratch(scratch + 4090, new byte[16]));
        }

        Assert.True(tracee.LastStop?.Status.IsEventStop, $"task left in {tracee.LastStop}");
        Assert.Equal(before, tracee.GetRegisters());
        Assert.Equal(xstateBefore, tracee.GetXState());
        Assert.Equal(mapsBefore, File.ReadAllText($"/proc/{pid}/maps"));

        tracee.Detach();
        // Released from the stop, the kernel restarts the interrupted pause().
        fixture.WaitUntilInSyscall(SyscallNumbers.pause, Timeout);
        Assert.Equal("PASS", fixture.Verify(Libc.SIGUSR1, Timeout));
    }

    [Fact]
    public void ABatchGivesWhatSingleCallsGiveAndLeavesNoTrace()
    {
        using var tracer = new Tracer();
        using var fixture = FixtureProcess.Start("inject_target");
        int pid = fixture.Pid;
        fixture.WaitUntilInSyscall(SyscallNumbers.pause, Timeout);
        var tracee = tracer.Seize(pid);
        tracee.InterruptAndWait(Timeout);
        var before = tracee.GetRegisters();
        byte[] xstateBefore = tracee.GetXState();
        string mapsBefore = File.ReadAllText($"/proc/{pid}/maps");
        string statusBefore = SignalLines(pid);

        using (var remote = SyscallInjector.Open(tracee))
        {
            ulong scratch = remote.AllocScratch(4096);
            var calls = new List<InjectedCall>();
            for (int sig = 1; sig <= 64; sig++)
                calls.Add(new(SyscallNumbers.rt_sigaction, sig, 0, (long)scratch + 32 * (sig - 1), 8));
            calls.Add(new(SyscallNumbers.getpid));
            calls.Add(new(SyscallNumbers.close, 12345));
            calls.Add(new(SyscallNumbers.prctl, PR_GET_DUMPABLE));
            long[] batched = remote.Batch(calls);
            var batchedActions = new byte[64 * 32];
            remote.ReadScratch(scratch, batchedActions);
            Assert.True(tracee.LastStop?.Status.IsEventStop, $"task left in {tracee.LastStop} after the batch");

            for (int i = 0; i < calls.Count; i++)
            {
                var c = calls[i];
                Assert.Equal(remote.Syscall(c.Nr, c.A1, c.A2, c.A3, c.A4, c.A5, c.A6), batched[i]);
            }
            var singleActions = new byte[64 * 32];
            remote.ReadScratch(scratch, singleActions);
            Assert.Equal(singleActions, batchedActions);
            Assert.Equal(fixture.ReadyAddress("handler"), BitConverter.ToUInt64(batchedActions, 32 * (Libc.SIGUSR1 - 1)));
            Assert.Equal(pid, batched[64]);
            Assert.Equal(-Errno.EBADF, batched[65]);
            Assert.Equal(1, batched[66]);

            // A second, larger batch in the same session (the code area grows), then a single call again.
            long[] again = remote.Batch([.. Enumerable.Repeat(new InjectedCall(SyscallNumbers.getpid), 200)]);
            Assert.All(again, rc => Assert.Equal(pid, rc));
            Assert.Equal(pid, remote.Syscall(SyscallNumbers.getpid));
        }

        Assert.True(tracee.LastStop?.Status.IsEventStop, $"task left in {tracee.LastStop}");
        Assert.Equal(before, tracee.GetRegisters());
        Assert.Equal(xstateBefore, tracee.GetXState());
        Assert.Equal(mapsBefore, File.ReadAllText($"/proc/{pid}/maps"));
        Assert.Equal(statusBefore, SignalLines(pid));

        tracee.Detach();
        fixture.WaitUntilInSyscall(SyscallNumbers.pause, Timeout);
        Assert.Equal("PASS", fixture.Verify(Libc.SIGUSR1, Timeout));
    }

    // Pending, blocked, ignored and caught signals as /proc/PID/status shows them.
    // SigQ is left out: it counts the signals queued for the task's real uid across the whole machine, which
    // other processes of that user change at any time.
    private static string SignalLines(int pid) => string.Join('\n',
        File.ReadAllLines($"/proc/{pid}/status").Where(l => (l.StartsWith("Sig", StringComparison.Ordinal) && !l.StartsWith("SigQ", StringComparison.Ordinal))
            || l.StartsWith("ShdPnd", StringComparison.Ordinal)));

    // Released by PTRACE_DETACH the kernel always passes through its signal path (the detach wakes the task
    // with TIF_SIGPENDING), but released by PTRACE_CONT it does so only if the task sits in a signal-path stop:
    // both ways must restart the interrupted call.
    [Theory]
    [InlineData("read", SyscallNumbers.read, -512, true)]                 // -ERESTARTSYS
    [InlineData("read", SyscallNumbers.read, -512, false)]
    [InlineData("nanosleep", SyscallNumbers.clock_nanosleep, -516, true)] // -ERESTART_RESTARTBLOCK
    [InlineData("nanosleep", SyscallNumbers.clock_nanosleep, -516, false)]
    public void InterruptedSyscallIsRestartedAfterInjection(string mode, long nr, long restartCode, bool detach)
    {
        using var tracer = new Tracer();
        using var fixture = FixtureProcess.Start("interrupted_syscall", mode);
        fixture.WaitUntilInSyscall(nr, Timeout);
        var tracee = tracer.Seize(fixture.Pid);
        tracee.InterruptAndWait(Timeout);
        var before = tracee.GetRegisters();
        Assert.Equal(nr, before.SyscallNumber);
        Assert.Equal(restartCode, before.SyscallResult);
        Assert.Equal(SyscallInfoOp.None, tracee.GetSyscallInfo().Op);

        using (var remote = SyscallInjector.Open(tracee))
        {
            Assert.Equal(fixture.Pid, remote.Syscall(SyscallNumbers.getpid));
            Assert.Equal(fixture.Pid, remote.Syscall(SyscallNumbers.gettid));
        }
        Assert.Equal(before, tracee.GetRegisters());
        if (detach) tracee.Detach();
        else tracee.Continue();
        if (mode == "read")
        {
            fixture.WaitUntilInSyscall(nr, Timeout);
            Assert.Equal("PASS", fixture.Verify(Libc.SIGUSR1, Timeout));
            return;
        }
        // The sleep is 1.5 s from READY: under load it can be over before we look, and then the verdict (nanosleep
        // returned 0 after the full time, which an interrupted call does only if it was restarted) is the proof.
        var clock = Stopwatch.StartNew();
        while (!fixture.IsInSyscall(SyscallNumbers.restart_syscall) && !fixture.Child.TryReap(out _))
        {
            if (clock.Elapsed > Timeout) Assert.Fail($"task {fixture.Pid} neither sleeps in restart_syscall nor ended: {File.ReadAllText($"/proc/{fixture.Pid}/syscall")}");
            Thread.Sleep(2);
        }
        Assert.Equal("PASS", fixture.WaitForVerdict(Timeout));
    }

    [Fact]
    public void PokedGadgetIsPutBack()
    {
        using var tracer = new Tracer();
        using var fixture = FixtureProcess.Start("stub_stopped");
        Ptrace.TraceeTests.WaitForState(fixture.Pid, 'T');
        var tracee = tracer.Seize(fixture.Pid);
        tracee.WaitForStop(Timeout);
        var before = tracee.GetRegisters();
        ulong gadget = fixture.ReadyAddress("gadget");
        long original = tracee.PeekData(gadget);

        using (var remote = SyscallInjector.OpenWithPokedGadget(tracee, gadget))
        {
            Assert.Equal(InjectionMode.PokedGadget, remote.Mode);
            Assert.Equal(0x0f, tracee.PeekData(gadget) & 0xff);
            Assert.Equal(0xcc050f, tracee.PeekData(gadget) & 0xffffff);
            Assert.Equal(fixture.Pid, remote.Syscall(SyscallNumbers.getpid));
            ulong scratch = remote.AllocScratch(4096);
            Assert.Equal(0, remote.Syscall(SyscallNumbers.uname, (long)scratch));
            var sysname = new byte[6];
            remote.ReadScratch(scratch, sysname);
            Assert.Equal("Linux\0"u8.ToArray(), sysname);
        }
        Assert.Equal(original, tracee.PeekData(gadget));
        Assert.Equal(before, tracee.GetRegisters());
        Assert.True(tracee.LastStop?.Status.IsEventStop, $"task left in {tracee.LastStop}");
        tracee.Detach();
        fixture.Child.Signal(Libc.SIGCONT);
        Assert.Equal("PASS", fixture.WaitForVerdict(Timeout));
    }

    [Fact]
    public void FailedInjectionIsUndone()
    {
        using var tracer = new Tracer();
        using var fixture = FixtureProcess.Start("inject_target");
        fixture.WaitUntilInSyscall(SyscallNumbers.pause, Timeout);
        var tracee = tracer.Seize(fixture.Pid);
        tracee.InterruptAndWait(Timeout);
        var before = tracee.GetRegisters();
        ulong mask = tracee.GetSigMask();

        // No code at page 1: the task faults instead of reaching the syscall-entry stop.
        var remote = SyscallInjector.Open(tracee, syscallAddress: 0x1000);
        var e = Assert.Throws<InjectionException>(() => remote.Syscall(SyscallNumbers.getpid));
        Assert.Contains("stopped(SIGSEGV)", e.Message);
        remote.Dispose();

        Assert.True(tracee.LastStop?.Status.IsEventStop, $"task left in {tracee.LastStop}");
        Assert.Equal(before, tracee.GetRegisters());
        Assert.Equal(mask, tracee.GetSigMask());
        tracee.Detach();
        Assert.Equal("PASS", fixture.Verify(Libc.SIGUSR1, Timeout));
    }

    [Fact]
    public void InjectedSyscallsPassTheTasksSeccompFilter()
    {
        using var tracer = new Tracer();
        using var fixture = FixtureProcess.Start("tracee_state"); // its filter fails getppid with ENOTTY
        var tracee = tracer.Seize(fixture.Pid);
        tracee.InterruptAndWait(Timeout);
        using (var remote = SyscallInjector.Open(tracee))
        {
            Assert.Equal(Environment.ProcessId, remote.Syscall(SyscallNumbers.getppid));
            Assert.NotEqual(0, (long)(tracee.Options & PtraceOptions.SuspendSeccomp));
        }
        Assert.Equal(Tracee.DefaultOptions, tracee.Options);
        tracee.Detach();
        Assert.Equal("PASS", fixture.Verify(Libc.SIGUSR1, Timeout));
    }

    [Fact]
    public void InjectionNeedsAnEventStop()
    {
        using var tracer = new Tracer();
        using var fixture = FixtureProcess.Start("tracee_state");
        var tracee = tracer.Seize(fixture.Pid);
        Assert.Throws<InvalidOperationException>(() => SyscallInjector.Open(tracee));
        tracee.InterruptAndWait(Timeout);
        tracee.Detach();
        Assert.Equal("PASS", fixture.Verify(Libc.SIGUSR1, Timeout));
    }

    [Fact]
    public void InjectionLatency()
    {
        using var tracer = new Tracer();
        using var fixture = FixtureProcess.Start("inject_target");
        fixture.WaitUntilInSyscall(SyscallNumbers.pause, Timeout);
        var tracee = tracer.Seize(fixture.Pid);
        tracee.InterruptAndWait(Timeout);
        const int Rounds = 1000;
        var fromCaller = new double[Rounds];
        double[] onTracer;
        using (var remote = SyscallInjector.Open(tracee))
        {
            for (int i = 0; i < 50; i++) remote.Syscall(SyscallNumbers.getpid);
            for (int i = 0; i < Rounds; i++)
            {
                long start = Stopwatch.GetTimestamp();
                long pid = remote.Syscall(SyscallNumbers.getpid);
                fromCaller[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
                Assert.Equal(fixture.Pid, pid);
            }
            onTracer = tracer.Run(() =>
            {
                var times = new double[Rounds];
                for (int i = 0; i < Rounds; i++)
                {
                    long start = Stopwatch.GetTimestamp();
                    remote.Syscall(SyscallNumbers.getpid);
                    times[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
                }
                return times;
            });
        }
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"injected getpid x{Rounds}: p50 {Percentile(onTracer, 50):0.0} us, p90 {Percentile(onTracer, 90):0.0} us on the tracer thread; " +
            $"p50 {Percentile(fromCaller, 50):0.0} us submitted from another thread"));
        tracee.Detach();
        Assert.Equal("PASS", fixture.Verify(Libc.SIGUSR1, Timeout));
    }

    private static double Percentile(double[] values, int p)
    {
        var sorted = values.Order().ToArray();
        return sorted[Math.Min(sorted.Length - 1, sorted.Length * p / 100)];
    }

    private static (ulong Start, ulong End) Mapping(string maps, string name)
    {
        foreach (var line in maps.Split('\n'))
        {
            if (!line.EndsWith(name)) continue;
            var range = line[..line.IndexOf(' ')].Split('-');
            return (ulong.Parse(range[0], NumberStyles.HexNumber), ulong.Parse(range[1], NumberStyles.HexNumber));
        }
        throw new InvalidOperationException($"no {name} mapping");
    }
}
