// SIGTERM and SIGINT sent to the real `crest` while it dumps or restores, as a harness's timeout or a user's Ctrl-C
// sends them: crest stops at its next safe point, rolls back and exits non-zero. After a dump the test program runs
// on, untraced, not stopped, and passes its own check; after a restore no restored process is left.
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Crest.Cli.Tests.Binary;
using Crest.Kernel.Processes;

namespace Crest.Cli.Tests.EndToEnd;

[Collection("Checkpointed processes")]
public sealed partial class StopSignalTests : IDisposable
{
    private const int SIGINT = 2, SIGKILL = 9, SIGTERM = 15;
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);
    private readonly TempDirectory _dir = new();
    private readonly List<int> _fixtures = [];

    public void Dispose()
    {
        foreach (int pid in _fixtures) kill(pid, SIGKILL);
        _dir.Dispose();
    }

    private static string[] Dump(string images, int pid) =>
        ["dump", "--no-default-config", "-o", "dump.log", "-D", images, "-v4", "-t", pid.ToString(CultureInfo.InvariantCulture)];

    /// <summary>Runs crest and sends it <paramref name="signal"/> once its log shows <paramref name="mark"/>; its exit and stderr.</summary>
    /// <remarks>
    /// A shell watches the log and sends the signal: a loop in the test host itself was seen to stall for seconds while
    /// the dump wrote its gigabyte, and came round only after crest had finished.
    /// </remarks>
    private static (int ExitCode, string Stderr, string Log) SignalWhenLogged(string workDir, string log, string mark, int signal, string[] args)
    {
        string timeline = Path.Combine(workDir, $"watcher-{Guid.NewGuid():N}.txt");
        long started = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        // Crest takes a signal that was ignored when it started as ignored (as a background job's SIGINT is): a test run
        // started in the background (nohup, `&` in a script) would hand it SIGINT ignored, and the dump ran on to exit 0.
        // The signals this test sends reach it with their default disposition, as a user's Ctrl-C or a harness's kill do.
        using var crest = CrestProcess.StartUnder(workDir, ["env", "--default-signal=HUP,INT,TERM"], args);
        var stderr = crest.StandardError.ReadToEndAsync();
        crest.StandardOutput.ReadToEndAsync();
        string watch = $"echo \"started $(date +%s%3N)\" >>'{timeline}'; " +
            $"while kill -0 {crest.Id} 2>/dev/null; do if grep -qF '{mark}' '{log}' 2>/dev/null; then echo \"seen $(date +%s%3N)\" >>'{timeline}'; kill -{signal} {crest.Id} && echo \"sent $(date +%s%3N)\" >>'{timeline}' && exit 0; fi; sleep 0.002; done; exit 1";
        int sent;
        using (var watcher = ChildProcess.Spawn("/bin/sh", ["sh", "-c", watch]))
        {
            var status = watcher.WaitForExit(Limit);
            sent = status.Exited ? status.ExitCode : -1;
        }
        Assert.True(crest.WaitForExit(Limit), "crest did not exit after the signal");
        crest.WaitForExit();
        // When it went wrong: the watcher's steps in ms after crest was started (the log's stamps count from crest's start).
        string steps = File.Exists(timeline)
            ? string.Join(", ", File.ReadAllLines(timeline).Select(l => l.Split(' ')).Select(f => $"{f[0]} at {long.Parse(f[1], CultureInfo.InvariantCulture) - started} ms"))
            : "(the watcher wrote nothing)";
        Assert.True(sent == 0, $"crest ended before its log showed \"{mark}\" (watcher {sent}; {steps}): {stderr.Result}\n{Read(log)}");
        return (crest.ExitCode, $"{stderr.Result}\n(watcher: {steps})", Read(log));
    }

    private static string Read(string path) => File.Exists(path) ? File.ReadAllText(path) : "(no log)";

    private void AssertDumpStoppedAndTheFixtureRunsOn(int signal, string name)
    {
        string images = _dir.Sub($"images-{name}");
        int pid = OrphanedFixtures.Start(_dir.Path, _fixtures, Limit, "restore_memory", "1024");
        // The scan is done and the pages are being written: the tree is frozen, the injector may be in use.
        var (code, stderr, log) = SignalWhenLogged(_dir.Path, Path.Combine(images, "dump.log"), "to write in", signal, Dump(images, pid));

        Assert.True(code != 0, $"crest dump exited 0 after {name}:\n{stderr}\n{log}");
        Assert.Contains($"interrupted by {name}", stderr);
        Assert.False(File.Exists(Path.Combine(images, "inventory.img")), "a dump stopped half way left an inventory.img");
        OrphanedFixtures.AssertRunsUntraced(pid);
        string state = OrphanedFixtures.StatusField(pid, "State");
        Assert.False(state.StartsWith('T'), $"{pid} is left stopped: {state}");
        Assert.Equal("PASS", OrphanedFixtures.Verify(_dir.Path, Limit, "restore_memory", pid));
    }

    [Fact]
    public void SigtermDuringTheDumpsPageWritesLeavesTheProcessRunningAsItWas() => AssertDumpStoppedAndTheFixtureRunsOn(SIGTERM, "SIGTERM");

    [Fact]
    public void SigintDuringTheDumpsPageWritesLeavesTheProcessRunningAsItWas() => AssertDumpStoppedAndTheFixtureRunsOn(SIGINT, "SIGINT");

    [Fact]
    public void SigtermDuringARestoreLeavesNoRestoredProcess()
    {
        string images = _dir.Sub("images");
        int pid = OrphanedFixtures.Start(_dir.Path, _fixtures, Limit, "restore_memory", "1024");
        var dump = CrestProcess.Run(_dir.Path, Dump(images, pid));
        Assert.True(dump.ExitCode == 0, $"dump exited {dump.ExitCode}: {dump.Stderr}\n{Read(Path.Combine(images, "dump.log"))}");
        var clock = Stopwatch.StartNew();
        while (OrphanedFixtures.Exists(pid) && clock.Elapsed < Limit) Thread.Sleep(10);
        Assert.False(OrphanedFixtures.Exists(pid), $"{pid} still runs after the dump");

        string[] restore = ["restore", "--no-default-config", "-o", "restore.log", "-D", images, "-v4", "--restore-detached"];
        var (code, stderr, log) = SignalWhenLogged(_dir.Path, Path.Combine(images, "restore.log"), "tasks cloned with their pids", SIGTERM, restore);

        Assert.True(code != 0, $"crest restore exited 0 after SIGTERM:\n{stderr}\n{log}");
        Assert.Contains("interrupted by SIGTERM", stderr);
        clock.Restart();
        while (OrphanedFixtures.Exists(pid) && clock.Elapsed < Limit) Thread.Sleep(10);
        Assert.False(OrphanedFixtures.Exists(pid), $"the restored {pid} is left running after the interrupted restore:\n{log}");
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);
}
