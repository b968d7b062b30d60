using Crest.Kernel.Processes;

namespace Crest.Kernel.Tests.Processes;

public class ChildProcessTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    static ChildProcessTests() => ChildProcess.ResetSigchldDisposition();

    [Fact]
    public void SpawnedChildIsReapedWithItsExitCode()
    {
        using var child = ChildProcess.Spawn("/bin/sh", ["sh", "-c", "exit 3"]);
        var status = child.WaitForExit(Timeout);
        Assert.True(status.Exited, status.ToString());
        Assert.Equal(3, status.ExitCode);
        Assert.Equal("exited(3)", status.ToString());
    }

    [Fact]
    public void ChildStartsInItsOwnSessionWithDefaultSignals()
    {
        using var child = ChildProcess.Spawn("/bin/sleep", ["sleep", "30"], new SpawnOptions { NewSession = true });
        string stat = File.ReadAllText($"/proc/{child.Pid}/stat");
        // Fields after "(comm)": state ppid pgrp session ...
        string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        Assert.Equal(child.Pid.ToString(), fields[2]);
        Assert.Equal(child.Pid.ToString(), fields[3]);
        var status = File.ReadAllLines($"/proc/{child.Pid}/status").ToDictionary(l => l.Split(':')[0], l => l.Split(':', 2)[1].Trim());
        Assert.Equal("0000000000000000", status["SigBlk"]);
        Assert.Equal("0000000000000000", status["SigIgn"]);
        Assert.False(child.TryReap(out _));
        child.Signal(15);
        var exit = child.WaitForExit(Timeout);
        Assert.True(exit.Signaled);
        Assert.Equal(15, exit.TermSignal);
    }

    [Fact]
    public void FileActionsRedirectOutput()
    {
        string path = Path.Combine(Path.GetTempPath(), $"crest-spawn-{Guid.NewGuid():N}");
        try
        {
            var options = new SpawnOptions { Environment = ["CREST_PROBE=seen"] };
            options.FileActions.Add(new SpawnFileAction.Open(1, path, SpawnFileAction.O_WRONLY | SpawnFileAction.O_CREAT | SpawnFileAction.O_TRUNC));
            using var child = ChildProcess.Spawn("/bin/sh", ["sh", "-c", "echo $CREST_PROBE"], options);
            Assert.Equal(0, child.WaitForExit(Timeout).ExitCode);
            Assert.Equal("seen\n", File.ReadAllText(path));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void ChildFoundInPathJoinsItsOwnProcessGroup()
    {
        using var child = ChildProcess.Spawn("sleep", ["sleep", "30"], new SpawnOptions { SearchPath = true, ProcessGroup = 0 });
        string stat = File.ReadAllText($"/proc/{child.Pid}/stat");
        string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        Assert.Equal(child.Pid.ToString(), fields[2]);
        Assert.NotEqual(child.Pid.ToString(), fields[3]);
        child.Dispose();
        Assert.True(child.ExitStatus?.Signaled);
    }

    [Fact]
    public void SpawningAMissingProgramNamesIt()
    {
        var e = Assert.Throws<KernelException>(() => ChildProcess.Spawn("/nonexistent/crest", ["crest"]));
        Assert.Equal(Errno.ENOENT, e.Errno.Value);
        Assert.Contains("/nonexistent/crest", e.Message);
    }

    [Theory]
    [InlineData(0x0300, "exited(3)")]
    [InlineData(0x0009, "killed(SIGKILL)")]
    [InlineData(0x008b, "killed(SIGSEGV, core dumped)")]
    [InlineData(0x137f, "stopped(SIGSTOP)")]
    [InlineData(0x80057f, "stopped(SIGTRAP, event 128)")]
    [InlineData(0x80137f, "stopped(SIGSTOP, event 128)")]
    [InlineData(0x857f, "stopped(syscall)")]
    [InlineData(0x3057f, "stopped(SIGTRAP, event 3)")]
    public void WaitStatusDecodes(int raw, string expected)
    {
        var status = new WaitStatus(raw);
        Assert.Equal(expected, status.ToString());
        Assert.Equal(raw == 0x857f, status.IsSyscallStop);
        Assert.Equal((raw >> 16) == 128, status.IsEventStop);
    }
}
