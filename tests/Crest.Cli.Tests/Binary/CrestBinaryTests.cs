// The built `crest` as programs run it: exit codes, stdout/stderr, the log file.
using System.Runtime.Versioning;
using System.Text.RegularExpressions;

namespace Crest.Cli.Tests.Binary;

[SupportedOSPlatform("linux")]
public partial class CrestBinaryTests
{
    /// <summary>A pid above any pid_max: the tests that reach the dump engine must never seize a real task.</summary>
    private const string NoSuchPid = "2147483647";

    [GeneratedRegex(@"^\(\d{2}\.\d{6}\) ", RegexOptions.Multiline)]
    private static partial Regex Stamp();

    [Theory]
    [InlineData("--version")]
    [InlineData("-V")]
    [InlineData("--vers")]
    public void VersionInCriusShape(string option)
    {
        using var dir = new TempDirectory();
        var run = CrestProcess.Run(dir.Path, option);
        Assert.Equal(0, run.ExitCode);
        Assert.Equal("Version: 0.1.0\n", run.Stdout);
    }

    [Fact]
    public void UnknownOptionFailsNamingIt()
    {
        using var dir = new TempDirectory();
        var run = CrestProcess.Run(dir.Path, "dump", "-t", "1", "--bogus-option");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("--bogus-option", run.Stderr);
        Assert.False(File.Exists(Path.Combine(dir.Path, "dump.log")));
    }

    [Fact]
    public void UnknownShortOptionFails()
    {
        using var dir = new TempDirectory();
        var run = CrestProcess.Run(dir.Path, "dump", "-q");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("invalid option -- 'q'", run.Stderr);
    }

    [Fact]
    public void AmbiguousPrefixFails()
    {
        using var dir = new TempDirectory();
        var run = CrestProcess.Run(dir.Path, "dump", "-t", "1", "--tcp");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("'--tcp' is ambiguous", run.Stderr);
    }

    [Fact]
    public void MissingCommandFails()
    {
        using var dir = new TempDirectory();
        var run = CrestProcess.Run(dir.Path, "-v4");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("command is required", run.Stderr);
    }

    [Fact]
    public void DumpOfAMissingProcessFailsAndSaysSoInTheLog()
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("imgs");
        var run = CrestProcess.Run(dir.Path, "dump", "-t", NoSuchPid, "-D", images, "-o", "dump.log", "-v4");
        Assert.Equal(1, run.ExitCode);
        Assert.StartsWith("Error: ", run.Stderr);
        Assert.Contains(NoSuchPid, run.Stderr);
        string log = File.ReadAllText(Path.Combine(images, "dump.log"));
        Assert.Matches(Stamp(), log);
        Assert.Contains("Error: ", log);
        Assert.Contains("Version: 0.1.0", log); // an info line: -v4 shows it
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(images, "dump.log")));
        Assert.False(File.Exists(Path.Combine(images, "inventory.img")));
    }

    [Fact]
    public void HarnessDumpLineParsesAndLogs()
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("imgs");
        var run = CrestProcess.Run(dir.Path, "dump", "--no-default-config", "--log-file", "dump.log", "--images-dir", images,
            "--verbosity=4", "--tree", NoSuchPid, "--pidfile", Path.Combine(dir.Path, "pid"), "--timeout", "10",
            "--pre-dump-mode", "splice", "--tcp-established", "--ghost-limit", "1M", "--manage-cgroups=soft",
            "--external", "mnt[]:m", "--ext-mount-map", "auto");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("dump: option --", run.Stderr);
        Assert.Contains("is not supported yet", run.Stderr);
        Assert.Matches(Stamp(), File.ReadAllText(Path.Combine(images, "dump.log")));
    }

    [Fact]
    public void LogFileIsTruncatedOnEveryCall()
    {
        using var dir = new TempDirectory();
        string log = Path.Combine(dir.Path, "restore.log");
        File.WriteAllText(log, new string('x', 10000));
        var run = CrestProcess.Run(dir.Path, "restore", "-o", "restore.log", "-d");
        Assert.Equal(1, run.ExitCode);
        string text = File.ReadAllText(log);
        Assert.DoesNotContain("xxx", text);
        Assert.Contains("Error: ", text); // no images here
    }

    [Fact]
    public void WorkDirMovesTheLog()
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("imgs");
        dir.Sub("work");
        var run = CrestProcess.Run(dir.Path, "dump", "-t", NoSuchPid, "-D", "imgs", "-W", "work", "-o", "dump.log");
        Assert.Equal(1, run.ExitCode);
        Assert.True(File.Exists(Path.Combine(dir.Path, "work", "dump.log")));
        Assert.False(File.Exists(Path.Combine(images, "dump.log")));
    }

    [Fact]
    public void RelativeImagesDirIsFromTheCurrentDirectory()
    {
        using var dir = new TempDirectory();
        dir.Sub("imgs");
        var run = CrestProcess.Run(dir.Path, "pre-dump", $"--tree={NoSuchPid}", "--images-dir=imgs", "--log-file=pre.log");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains($"Error: Task {NoSuchPid} does not exist.", File.ReadAllText(Path.Combine(dir.Path, "imgs", "pre.log")));
    }

    [Fact]
    public void MissingImagesDirFails()
    {
        using var dir = new TempDirectory();
        var run = CrestProcess.Run(dir.Path, "dump", "-t", NoSuchPid, "-D", "nonexistent", "-o", "dump.log");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("images directory", run.Stderr);
    }

    [Fact]
    public void WithoutLogFileTheLogIsStderr()
    {
        using var dir = new TempDirectory();
        var run = CrestProcess.Run(dir.Path, "dedup", "-v4");
        Assert.Equal(1, run.ExitCode);
        Assert.Matches(Stamp(), run.Stderr);
        Assert.Contains("Error: dedup: not implemented yet", run.Stderr);
        Assert.Empty(run.Stdout);
    }

    [Fact]
    public void DashLogsToStdout()
    {
        using var dir = new TempDirectory();
        var run = CrestProcess.Run(dir.Path, "dedup", "-o", "-", "-v4");
        Assert.Equal(1, run.ExitCode);
        Assert.Matches(Stamp(), run.Stdout);
        Assert.Contains("Error: dedup: not implemented yet", run.Stdout);
        Assert.Contains("crest: dedup: not implemented yet", run.Stderr);
    }

    [Fact]
    public void VerbosityZeroKeepsTheLogEmptyButStillFails()
    {
        using var dir = new TempDirectory();
        var run = CrestProcess.Run(dir.Path, "dump", "-t", NoSuchPid, "-o", "d.log", "-verbosity=0");
        Assert.Equal(1, run.ExitCode);
        Assert.Equal("", File.ReadAllText(Path.Combine(dir.Path, "d.log")));
        Assert.StartsWith("Error: ", run.Stderr);
    }

    [Theory]
    [InlineData("service")]
    [InlineData("cpuinfo", "check")]
    [InlineData("swrk", "3")]
    public void EveryCommandWithoutEngineFailsClearly(params string[] args)
    {
        using var dir = new TempDirectory();
        var run = CrestProcess.Run(dir.Path, [.. args, "-o", "x.log"]);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains($"crest: {args[0]}: not implemented yet", run.Stderr);
        Assert.True(File.Exists(Path.Combine(dir.Path, "x.log")));
    }

    [Fact]
    public void DumpWithoutTreeFails()
    {
        using var dir = new TempDirectory();
        var run = CrestProcess.Run(dir.Path, "dump", "-o", "d.log");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("No pid specified", run.Stderr);
        Assert.True(File.Exists(Path.Combine(dir.Path, "d.log")));
    }

    [Fact]
    public void BadOptionValueIsAUsageError()
    {
        using var dir = new TempDirectory();
        var run = CrestProcess.Run(dir.Path, "dump", "-t", "0");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("invalid argument for -t: 0", run.Stderr);
    }

    [Fact]
    public void ExcessOperandsAreAUsageError()
    {
        using var dir = new TempDirectory();
        var run = CrestProcess.Run(dir.Path, "dump", "-t", "1", "extra");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("extra", run.Stderr);
    }

    [Fact]
    public void UnsupportedOptionOfCheckIsNamed()
    {
        using var dir = new TempDirectory();
        var run = CrestProcess.Run(dir.Path, "check", "--tcp-established", "--feature", "userns");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("check: option --tcp-established is not supported yet", run.Stderr);
    }

    [Fact]
    public void ConfigFileFromEnvironmentIsRead()
    {
        using var dir = new TempDirectory();
        string config = Path.Combine(dir.Path, "crest.conf");
        File.WriteAllText(config, "# from the environment\nlink-remap\nlog-file env.log\n");
        var run = CrestProcess.Run(dir.Path, new Dictionary<string, string> { ["CRIU_CONFIG_FILE"] = config },
            "check", "--no-default-config");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("check: option --link-remap is not supported yet", run.Stderr);
        Assert.Contains("link-remap", File.ReadAllText(Path.Combine(dir.Path, "env.log")));
    }

    [Fact]
    public void ConfigFileFromOption()
    {
        using var dir = new TempDirectory();
        string config = Path.Combine(dir.Path, "crest.conf");
        File.WriteAllText(config, "tcp-close\n");
        var run = CrestProcess.Run(dir.Path, "--config", config, "check", "-o", "c.log");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("check: option --tcp-close is not supported yet", run.Stderr);
    }

    [Fact]
    public void HelpListsCommandsAndVerbs()
    {
        using var dir = new TempDirectory();
        var run = CrestProcess.Run(dir.Path, "--help");
        Assert.Equal(0, run.ExitCode);
        foreach (string command in new[] { "dump", "pre-dump", "restore", "check", "page-server", "lazy-pages", "decode", "show" })
            Assert.Contains(command, run.Stdout);
    }

    [Fact]
    public void CommandHelpListsItsOptions()
    {
        using var dir = new TempDirectory();
        var run = CrestProcess.Run(dir.Path, "dump", "-h");
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("--tcp-established", run.Stdout);
        Assert.Contains("-t, --tree", run.Stdout);
    }

    [Theory]
    [InlineData("decode", "--bogus")]
    [InlineData("encode", "--pretty")]
    [InlineData("decode", "-i")]
    [InlineData("show")]
    [InlineData("info", "a", "b")]
    public void CritVerbUsageErrorsExitTwoLikeArgparse(params string[] args)
    {
        using var dir = new TempDirectory();
        var run = CrestProcess.Run(dir.Path, args);
        Assert.Equal(2, run.ExitCode);
        Assert.StartsWith("crest: ", run.Stderr);
    }

    [Fact]
    public void DecodeOfAMissingFileFails()
    {
        using var dir = new TempDirectory();
        var run = CrestProcess.Run(dir.Path, "decode", "-i", "no-such.img", "--pretty");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("no-such.img", run.Stderr);
    }
}

public class LogAfterUsageErrorTests
{
    [Theory]
    [InlineData("dump", "-o", "dump.log", "-t", "1", "--bogus")]
    [InlineData("dump", "-o", "dump.log", "-t", "0")]
    [InlineData("dump", "-o", "dump.log", "-t", "1", "extra")]
    [InlineData("-o", "dump.log", "-t", "1")]
    [InlineData("restore", "-o", "dump.log", "a", "b")]
    public void LogExistsEvenAfterAUsageError(params string[] args)
    {
        using var dir = new TempDirectory();
        var run = CrestProcess.Run(dir.Path, args);
        Assert.Equal(1, run.ExitCode);
        string log = File.ReadAllText(Path.Combine(dir.Path, "dump.log"));
        Assert.Contains("Error: ", log);
        Assert.StartsWith("crest: ", run.Stderr);
    }
}
