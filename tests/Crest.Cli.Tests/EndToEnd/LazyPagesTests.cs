// `crest lazy-pages --status-fd N` with `crest restore --lazy-pages`, as DRIVERS.md's harness runs CRIU's: the
// daemon started on the images, ready once its status byte arrived, the restore handing it the task's memory;
// the daemon exits 0 once the task has all its pages. Without a daemon the restore fails plainly.
using System.Diagnostics;
using System.Globalization;
using Crest.Cli.Tests.Binary;

namespace Crest.Cli.Tests.EndToEnd;

[Collection("Checkpointed processes")]
public class LazyPagesTests
{
    private static string[] HarnessDump(string images, int pid, string pidFile) =>
        ["dump", "--no-default-config", "--log-file", "dump.log", "--images-dir", images, "--verbosity=4",
         "--tree", pid.ToString(CultureInfo.InvariantCulture), "--pidfile", pidFile, "--timeout", "10", "--pre-dump-mode", "splice"];

    private static string[] HarnessRestore(string images, string pidFile) =>
        ["restore", "--no-default-config", "--log-file", "restore.log", "--images-dir", images, "--verbosity=4",
         "--pidfile", pidFile, "--restore-detached", "--lazy-pages"];

    /// <summary>The daemon as the harness starts it; returns once its status byte arrived.</summary>
    private static Process StartDaemon(string dir, string images)
    {
        string fifo = Path.Combine(dir, "lazy-status");
        Assert.Equal(0, External.Run("mkfifo", fifo).ExitCode);
        var process = CrestProcess.StartWithFds(dir, $"exec 5>'{fifo}'",
            ["lazy-pages", "--no-default-config", "-D", images, "--status-fd", "5", "-o", "lazy-pages.log", "-v4"]);
        process.StandardOutput.ReadToEndAsync();
        var ready = Task.Run(() =>
        {
            using var status = File.OpenRead(fifo);
            return status.ReadByte();
        });
        Assert.True(ready.Wait(TimeSpan.FromSeconds(30)), "no status byte from lazy-pages");
        Assert.True(ready.Result == 0, $"status byte {ready.Result}: {Log(images, "lazy-pages.log")}");
        return process;
    }

    [Fact]
    public void HarnessRestoreWithLazyPages()
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("images");
        using var target = HarnessTarget.Start(dir.Path);
        var dump = CrestProcess.Run(dir.Path, HarnessDump(images, target.Pid, Path.Combine(dir.Path, "dump.pid")));
        Assert.True(dump.ExitCode == 0, $"dump exited {dump.ExitCode}: {dump.Stderr}\n{Log(images, "dump.log")}");
        Assert.True(target.WaitGone(), $"process {target.Pid} still exists after the dump");

        using var daemon = StartDaemon(dir.Path, images);
        try
        {
            var restore = CrestProcess.Run(dir.Path, HarnessRestore(images, Path.Combine(dir.Path, "restore.pid")));
            Assert.True(restore.ExitCode == 0, $"restore exited {restore.ExitCode}: {restore.Stderr}\n{Log(images, "restore.log")}");
            Assert.Contains("left to the lazy-pages daemon", Log(images, "restore.log"));
            Assert.True(daemon.WaitForExit(TimeSpan.FromSeconds(30)), $"lazy-pages did not exit: {Log(images, "lazy-pages.log")}");
            daemon.WaitForExit();
            Assert.True(daemon.ExitCode == 0, $"lazy-pages exited {daemon.ExitCode}: {Log(images, "lazy-pages.log")}");
            Assert.Contains("has all its pages", Log(images, "lazy-pages.log"));
            Assert.Equal("PASS", target.Verify());
            foreach (string file in Directory.GetFiles(images, "*.img").Append(Path.Combine(images, "stats-restore"))
                .Where(f => !Path.GetFileName(f).StartsWith("pages-", StringComparison.Ordinal)))
            {
                var crit = External.Run("crit", "decode", "-i", file);
                Assert.True(crit.ExitCode == 0, $"crit decode -i {Path.GetFileName(file)}: {crit.Stderr}");
            }
        }
        finally
        {
            if (!daemon.HasExited) daemon.Kill();
        }
    }

    [Fact]
    public void LazyRestoreWithoutADaemonFailsAndLeavesNoProcess()
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("images");
        using var target = HarnessTarget.Start(dir.Path);
        var dump = CrestProcess.Run(dir.Path, HarnessDump(images, target.Pid, Path.Combine(dir.Path, "dump.pid")));
        Assert.True(dump.ExitCode == 0, $"dump exited {dump.ExitCode}: {dump.Stderr}");
        Assert.True(target.WaitGone());
        var restore = CrestProcess.Run(dir.Path, HarnessRestore(images, Path.Combine(dir.Path, "restore.pid")));
        Assert.Equal(1, restore.ExitCode);
        Assert.Contains("no lazy-pages daemon listens on", restore.Stderr);
        Assert.False(target.Exists, $"task {target.Pid} exists after the failed restore");
        Assert.False(File.Exists(Path.Combine(dir.Path, "restore.pid")));
    }

    private static string Log(string images, string name)
    {
        string path = Path.Combine(images, name);
        return File.Exists(path) ? File.ReadAllText(path) : $"(no {name})";
    }
}
