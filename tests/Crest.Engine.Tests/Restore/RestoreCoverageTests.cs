using Crest.Kernel.Tests.Fixtures;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Restore;

// One state at a time: a fixture sets it up, is dumped with DumpEngine, killed, restored, and checks itself.
[Collection("Children of the test process")]
public class RestoreCoverageTests
{
    private static void RoundTrip(string fixtureName, string[] args, Action<FixtureProcess>? beforeDump = null, int signal = SIGUSR1)
    {
        string dir = NewImagesDir();
        using var fixture = FixtureProcess.Start(fixtureName, args);
        try
        {
            beforeDump?.Invoke(fixture);
            DumpAndKill(fixture, dir);
            using var restored = RestoreDetached(dir);
            Assert.Equal(fixture.Pid, restored.Pid);
            AssertPass(Verify(restored, fixture, signal));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void RandomAnonymousMemoryAndASparse64GiBMappingSurvive() => RoundTrip("restore_memory", ["256"]);

    [Fact]
    public void SseAndAvxRegistersKeepLiveValues() =>
        RoundTrip("restore_regs", [], f => f.WaitUntilInSyscall(34, TimeSpan.FromSeconds(10)));

    [Fact]
    public void Avx512RegistersKeepLiveValues()
    {
        if (!File.ReadAllText("/proc/cpuinfo").Contains(" avx512f", StringComparison.Ordinal)) return; // nothing to check on this CPU
        RoundTrip("restore_regs", ["avx512"], f => f.WaitUntilInSyscall(34, TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public void IntervalTimerKeepsRunning() => RoundTrip("restore_timer", []);

    [Fact]
    public void FutexWaitGoesOnAfterRestore() =>
        RoundTrip("restore_blocking", ["futex"], f => f.WaitUntilInSyscall(202, TimeSpan.FromSeconds(10)));

    [Fact]
    public void AbsoluteSleepEndsAtItsDeadline()
    {
        string dir = NewImagesDir();
        using var fixture = FixtureProcess.Start("restore_blocking", "sleep");
        try
        {
            fixture.WaitUntilInSyscall(230, TimeSpan.FromSeconds(10));
            DumpAndKill(fixture, dir);
            using var restored = RestoreDetached(dir);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (!fixture.Output.Contains("slept") && !fixture.Output.Contains("FAIL") && clock.Elapsed < TimeSpan.FromSeconds(10)) Thread.Sleep(10);
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void PendingSignalsComeBackWithTheirSiginfo() => RoundTrip("restore_signals", []);

    [Fact]
    public void CredentialsOfAnUnprivilegedTaskComeBack() => RoundTrip("restore_signals", ["user"]);

    [Fact]
    public void AStoppedTaskIsRestoredStopped()
    {
        string dir = NewImagesDir();
        using var fixture = FixtureProcess.Start("restore_signals");
        try
        {
            Assert.Equal(0, Kill(fixture.Pid, 19 /* SIGSTOP */));
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (State(fixture.Pid) != 'T' && clock.Elapsed < TimeSpan.FromSeconds(10)) Thread.Sleep(5);
            DumpAndKill(fixture, dir);
            using var restored = RestoreDetached(dir);
            clock.Restart();
            while (State(fixture.Pid) != 'T' && clock.Elapsed < TimeSpan.FromSeconds(20)) Thread.Sleep(5);
            Assert.Equal('T', State(fixture.Pid));
            Thread.Sleep(100);
            Assert.Equal('T', State(fixture.Pid));
            Assert.Equal(0, Kill(fixture.Pid, 18 /* SIGCONT */));
            // Continued, the task re-issues its pause() (the dump rewound it, as CRIU does); a signal that came
            // before it is back in the syscall would run its handler and leave pause() waiting for another.
            fixture.WaitUntilInSyscall(34, TimeSpan.FromSeconds(20));
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    private static char State(int pid)
    {
        string stat = File.ReadAllText($"/proc/{pid}/stat");
        return stat[stat.LastIndexOf(')') + 2];
    }

    [Fact]
    public void DumpRestoreDumpRestore()
    {
        string first = NewImagesDir(), second = NewImagesDir();
        using var fixture = FixtureProcess.Start("restore_counter");
        try
        {
            DumpAndKill(fixture, first);
            using (var once = RestoreDetached(first))
            {
                Thread.Sleep(20);
                DumpAndKill(once, second);
            }
            using var twice = RestoreDetached(second);
            Thread.Sleep(20);
            AssertPass(Verify(twice, fixture));
        }
        finally
        {
            Directory.Delete(first, true);
            Directory.Delete(second, true);
        }
    }

    [Fact]
    public void WithoutDetachedRunWaitsAndReturnsTheExitStatus()
    {
        string dir = NewImagesDir();
        using var fixture = FixtureProcess.Start("restore_counter");
        try
        {
            DumpAndKill(fixture, dir);
            int status = -1;
            var run = new Thread(() => status = Crest.Engine.Restore.RestoreEngine.Run(new() { ImagesDir = dir }));
            run.Start();
            // The pid exists from the clone on, but until the restore has let the task go its signals go to the
            // restoring tracer: stats-restore is written once the task runs on its own.
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (!File.Exists(Path.Combine(dir, "stats-restore")) && run.IsAlive && clock.Elapsed < TimeSpan.FromSeconds(20)) Thread.Sleep(5);
            Assert.True(File.Exists(Path.Combine(dir, "stats-restore")), $"the restore did not release task {fixture.Pid} (status {status})");
            Assert.Equal(0, Kill(fixture.Pid, SIGUSR1));
            Assert.True(run.Join(TimeSpan.FromSeconds(20)));
            Assert.Equal(0, status);
            Assert.Contains("PASS", fixture.Output);

            // Killed by a signal: 128 + signal, as CRIU reports it.
            DumpAgainAndKillWith(dir, fixture);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    private static void DumpAgainAndKillWith(string dir, FixtureProcess fixture)
    {
        int status = -1;
        var run = new Thread(() => status = Crest.Engine.Restore.RestoreEngine.Run(new() { ImagesDir = dir }));
        File.Delete(Path.Combine(dir, "stats-restore"));
        run.Start();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!File.Exists(Path.Combine(dir, "stats-restore")) && run.IsAlive && clock.Elapsed < TimeSpan.FromSeconds(20)) Thread.Sleep(5);
        Assert.True(File.Exists(Path.Combine(dir, "stats-restore")), $"the restore did not release task {fixture.Pid} (status {status})");
        Assert.Equal(0, Kill(fixture.Pid, SIGTERM));
        Assert.True(run.Join(TimeSpan.FromSeconds(20)));
        Assert.Equal(128 + SIGTERM, status);
    }

    [Fact]
    public void StatsRestoreDecodesWithCrit()
    {
        string dir = NewImagesDir();
        using var fixture = FixtureProcess.Start("restore_counter");
        try
        {
            DumpAndKill(fixture, dir);
            using var restored = RestoreDetached(dir);
            AssertPass(Verify(restored, fixture));
            foreach (var file in Directory.GetFiles(dir).Where(f => !f.EndsWith(".pid", StringComparison.Ordinal) && !f.Contains("pages-")))
            {
                var (code, output) = Crit(file);
                Assert.True(code == 0, $"crit decode {Path.GetFileName(file)}: {output}");
            }
            var (_, stats) = Crit(Path.Combine(dir, "stats-restore"));
            Assert.Contains("\"pages_restored\"", stats);
            Assert.Contains("\"forking_time\"", stats);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    private static (int Code, string Output) Crit(string file)
    {
        string output = Path.GetTempFileName();
        var options = new Crest.Kernel.Processes.SpawnOptions { SearchPath = true };
        options.FileActions.Add(new Crest.Kernel.Processes.SpawnFileAction.Open(1, output,
            Crest.Kernel.Processes.SpawnFileAction.O_WRONLY | Crest.Kernel.Processes.SpawnFileAction.O_CREAT | Crest.Kernel.Processes.SpawnFileAction.O_TRUNC));
        options.FileActions.Add(new Crest.Kernel.Processes.SpawnFileAction.Dup2(1, 2));
        using var crit = Crest.Kernel.Processes.ChildProcess.Spawn("crit", ["crit", "decode", "-i", file], options);
        var status = crit.WaitForExit(TimeSpan.FromSeconds(60));
        string text = File.ReadAllText(output);
        File.Delete(output);
        return (status.Exited ? status.ExitCode : 128 + status.TermSignal, text);
    }
}
