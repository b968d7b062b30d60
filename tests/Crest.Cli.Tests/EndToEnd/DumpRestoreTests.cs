// `crest dump` and `crest restore` run exactly as DRIVERS.md's test harness runs CRIU, on a
// fixture that checks its own state after the restore (fixtures/harness_target.c).
using System.Diagnostics;
using System.Text.Json.Nodes;
using Crest.Cli.Tests.Binary;

namespace Crest.Cli.Tests.EndToEnd;

[Collection("Checkpointed processes")]
public class DumpRestoreTests
{

    private static string[] HarnessDump(string images, int pid, string pidFile) =>
        ["dump", "--no-default-config", "--log-file", "dump.log", "--images-dir", images, "--verbosity=4",
         "--tree", pid.ToString(), "--pidfile", pidFile, "--timeout", "10", "--pre-dump-mode", "splice"];

    private static string[] HarnessRestore(string images, string pidFile) =>
        ["restore", "--no-default-config", "--log-file", "restore.log", "--images-dir", images, "--verbosity=4",
         "--pidfile", pidFile, "--restore-detached"];

    [Fact]
    public void HarnessDumpAndRestoreBringBackTheSameProcess()
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("images");
        using var target = HarnessTarget.Start(dir.Path);

        var dump = CrestProcess.Run(dir.Path, HarnessDump(images, target.Pid, Path.Combine(dir.Path, "dump.pid")));
        Assert.True(dump.ExitCode == 0, $"dump exited {dump.ExitCode}: {dump.Stderr}\n{Log(images, "dump.log")}");
        Assert.True(target.WaitGone(), $"process {target.Pid} still exists after the dump");
        Assert.True(File.Exists(Path.Combine(images, "inventory.img")));

        string pidFile = Path.Combine(dir.Path, "restore.pid");
        var restore = CrestProcess.Run(dir.Path, HarnessRestore(images, pidFile));
        Assert.True(restore.ExitCode == 0, $"restore exited {restore.ExitCode}: {restore.Stderr}\n{Log(images, "restore.log")}");
        Assert.Equal(target.Pid.ToString(), File.ReadAllText(pidFile)); // decimal, no newline
        Assert.Contains("Version: 0.1.0", Log(images, "dump.log"));    // relative logs land in the images
        Assert.Contains("Version: 0.1.0", Log(images, "restore.log")); // directory, the default work dir
        Assert.True(target.IsRunning, $"process {target.Pid} does not run after the restore");
        Assert.Equal("PASS", target.Verify());
        AssertShowsAsCrit(dir.Path, Path.Combine(images, "stats-restore"));
    }

    [Fact]
    public void EveryImageDecodesWithCritAndShowsAsCritShowsIt()
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("images");
        using var target = HarnessTarget.Start(dir.Path);
        var dump = CrestProcess.Run(dir.Path, "dump", "-t", target.Pid.ToString(), "-D", images, "-o", "dump.log", "-v4");
        Assert.True(dump.ExitCode == 0, $"dump exited {dump.ExitCode}: {dump.Stderr}\n{Log(images, "dump.log")}");

        var files = Directory.GetFiles(images).Select(Path.GetFileName).Where(f => f != "dump.log").Order().ToList();
        foreach (var expected in new[] { "inventory.img", "pstree.img", $"core-{target.Pid}.img", $"mm-{target.Pid}.img",
                     $"pagemap-{target.Pid}.img", "pages-1.img", $"ids-{target.Pid}.img", $"fs-{target.Pid}.img", "files.img", "stats-dump" })
            Assert.Contains(expected, files);
        // pages-*.img is raw page data: crit has nothing to decode there.
        foreach (var file in files.Where(f => !f!.StartsWith("pages-")))
            AssertShowsAsCrit(dir.Path, Path.Combine(images, file!));
    }

    /// <summary>crit decodes the image, and `crest show` prints exactly what `crit show` prints.</summary>
    private static void AssertShowsAsCrit(string workingDirectory, string path)
    {
        string file = Path.GetFileName(path);
        var crit = External.Run("crit", "decode", "-i", path);
        Assert.True(crit.ExitCode == 0, $"crit decode -i {file}: {crit.Stderr}");
        var critShow = External.Run("crit", "show", path);
        var show = CrestProcess.Run(workingDirectory, "show", path);
        Assert.True(show.ExitCode == 0, $"crest show {file}: {show.Stderr}");
        if (!show.Stdout.Contains("\"crest_", StringComparison.Ordinal))
        {
            Assert.Equal(critShow.Stdout, show.Stdout);
            return;
        }
        // Crest's extension fields (file identity, guard ranges; field numbers from 1000) are unknown to crit,
        // which skips them: without them, crest's JSON must be crit's.
        var crest = JsonNode.Parse(show.Stdout)!;
        StripCrestExtensions(crest);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(critShow.Stdout), crest),
            $"crest show {file} differs from crit show beyond Crest's extension fields:\n{crest.ToJsonString()}\n{critShow.Stdout}");
    }

    private static void StripCrestExtensions(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var key in o.Select(p => p.Key).Where(k => k.StartsWith("crest_", StringComparison.Ordinal)).ToList())
                    o.Remove(key);
                foreach (var (_, child) in o) StripCrestExtensions(child);
                break;
            case JsonArray a:
                foreach (var child in a) StripCrestExtensions(child);
                break;
        }
    }

    [Fact]
    public void FailedDumpLeavesTheProcessRunningAndSaysWhy()
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("images");
        using var target = HarnessTarget.Start(dir.Path, extra: "eventfd");

        var dump = CrestProcess.Run(dir.Path, HarnessDump(images, target.Pid, Path.Combine(dir.Path, "dump.pid")));
        Assert.Equal(1, dump.ExitCode);
        Assert.StartsWith("Error: ", dump.Stderr);
        Assert.Contains(target.Pid.ToString(), dump.Stderr);
        Assert.Contains("Error: ", Log(images, "dump.log"));
        Assert.False(File.Exists(Path.Combine(images, "inventory.img")));
        Thread.Sleep(100);
        Assert.True(target.IsRunning, $"process {target.Pid} does not run after a failed dump");
        Assert.Equal("PASS", target.Verify());
    }

    [Fact]
    public void LeaveRunningKeepsTheProcessGoing()
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("images");
        using var target = HarnessTarget.Start(dir.Path);
        var dump = CrestProcess.Run(dir.Path, "dump", "-t", target.Pid.ToString(), "-D", images, "-o", "dump.log", "-R");
        Assert.True(dump.ExitCode == 0, $"dump exited {dump.ExitCode}: {dump.Stderr}\n{Log(images, "dump.log")}");
        Assert.True(File.Exists(Path.Combine(images, "inventory.img")));
        Assert.True(target.IsRunning);
        Assert.Equal("PASS", target.Verify());
    }

    [Fact]
    public void RestoreOverALiveProcessFailsAndLeavesItAlone()
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("images");
        using var target = HarnessTarget.Start(dir.Path);
        var dump = CrestProcess.Run(dir.Path, "dump", "-t", target.Pid.ToString(), "-D", images, "-o", "dump.log", "-R");
        Assert.True(dump.ExitCode == 0, $"dump exited {dump.ExitCode}: {dump.Stderr}\n{Log(images, "dump.log")}");

        var restore = CrestProcess.Run(dir.Path, HarnessRestore(images, Path.Combine(dir.Path, "restore.pid")));
        Assert.Equal(1, restore.ExitCode);
        Assert.StartsWith("Error: ", restore.Stderr);
        Assert.Contains(target.Pid.ToString(), restore.Stderr);
        Assert.Contains("Error: ", Log(images, "restore.log"));
        Assert.False(File.Exists(Path.Combine(dir.Path, "restore.pid")));
        Assert.True(target.IsRunning);
        Assert.Equal("PASS", target.Verify());
    }

    [Fact]
    public void LeaveStoppedLeavesItStopped()
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("images");
        using var target = HarnessTarget.Start(dir.Path);
        var dump = CrestProcess.Run(dir.Path, "dump", "-t", target.Pid.ToString(), "-D", images, "-o", "dump.log", "--leave-stopped");
        Assert.True(dump.ExitCode == 0, $"dump exited {dump.ExitCode}: {dump.Stderr}\n{Log(images, "dump.log")}");
        Assert.True(target.WaitUntil(() => target.IsStopped), $"process {target.Pid} is not stopped after --leave-stopped");
        target.Continue();
        Assert.Equal("PASS", target.Verify());
    }

    [Fact]
    public async Task RestoreWithoutDetachExitsWithTheProcessStatus()
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("images");
        using var target = HarnessTarget.Start(dir.Path, passCode: 7);
        var dump = CrestProcess.Run(dir.Path, "dump", "-t", target.Pid.ToString(), "-D", images, "-o", "dump.log");
        Assert.True(dump.ExitCode == 0, $"dump exited {dump.ExitCode}: {dump.Stderr}\n{Log(images, "dump.log")}");
        Assert.True(target.WaitGone());

        // Relative --pidfile: in the work directory, which is the images directory by default.
        using var restore = CrestProcess.Start(dir.Path, null, "restore", "-D", images, "-o", "restore.log", "--pidfile", "restored.pid");
        var stderr = restore.StandardError.ReadToEndAsync();
        try
        {
            Assert.True(target.WaitUntil(() => target.IsReleased || restore.HasExited),
                $"process {target.Pid} was not restored: {Log(images, "restore.log")}");
            Assert.False(restore.HasExited, $"restore exited {(restore.HasExited ? restore.ExitCode : 0)} early: {Log(images, "restore.log")}");
            string pidFile = Path.Combine(images, "restored.pid");
            Assert.True(target.WaitUntil(() => File.Exists(pidFile)), "no pidfile in the images directory");
            Assert.Equal(target.Pid.ToString(), File.ReadAllText(pidFile));
            Assert.Equal("PASS", target.Verify());
            Assert.True(restore.WaitForExit(TimeSpan.FromSeconds(20)), "restore did not exit after its process did");
            string errors = await stderr;
            Assert.True(restore.ExitCode == 7, $"restore exited {restore.ExitCode}, not the process's 7: {errors}");
        }
        finally
        {
            if (!restore.HasExited) restore.Kill();
        }
    }

    private static string Log(string images, string name)
    {
        string path = Path.Combine(images, name);
        return File.Exists(path) ? File.ReadAllText(path) : $"(no {name})";
    }
}

/// <summary>Another program (crit) run to its end.</summary>
internal static class External
{
    public static CrestRun Run(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) start.ArgumentList.Add(a);
        using var p = Process.Start(start) ?? throw new InvalidOperationException($"{file} did not start");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        return new CrestRun(p.ExitCode, stdout.Result, stderr.Result);
    }
}
