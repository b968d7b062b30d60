// CRIU's value rules applied to parsed occurrences: verbosity arithmetic, last-one-wins,
// negations, atoi, and the values CRIU rejects.
using Crest.Cli.Criu;
using Crest.Cli.Getopt;
using Crest.Diagnostics;

namespace Crest.Cli.Tests.Criu;

public class CriuOptionsTests
{
    private static readonly GetoptLong Getopt = new(CriuOptionTable.All);

    private static CriuOptions Options(params string[] args)
    {
        var parsed = Getopt.Parse(args);
        Assert.Null(parsed.Error);
        return CriuOptions.From(parsed.Options);
    }

    private static string Rejection(params string[] args) =>
        Assert.Throws<UsageException>(() => Options(args)).Message;

    [Theory]
    [InlineData(new string[0], 2)]
    [InlineData(new[] { "-v4" }, 4)]
    [InlineData(new[] { "-v0" }, 0)]
    [InlineData(new[] { "-v" }, 3)]
    [InlineData(new[] { "-v", "-v" }, 4)]
    [InlineData(new[] { "-vv" }, 4)]
    [InlineData(new[] { "-vvvv" }, 6)]
    [InlineData(new[] { "-verbosity=0" }, 0)]
    [InlineData(new[] { "-verbosity=4" }, 0)]
    [InlineData(new[] { "--verbosity=4" }, 4)]
    [InlineData(new[] { "--verbosity", "4" }, 4)]
    [InlineData(new[] { "--verbosity" }, 3)]
    [InlineData(new[] { "-v4", "-v" }, 5)]
    [InlineData(new[] { "-v", "-v1" }, 1)]
    [InlineData(new[] { "--verb=3" }, 3)]
    public void VerbosityLevel(string[] args, int level)
    {
        Assert.Equal(level, Options(args).LogLevel);
    }

    [Theory]
    [InlineData(new[] { "-vvvv" }, LogLevel.Debug)]
    [InlineData(new[] { "-verbosity=0" }, LogLevel.Message)]
    [InlineData(new[] { "-v3" }, LogLevel.Info)]
    [InlineData(new string[0], LogLevel.Warning)]
    public void LogLevelIsClampedToCrestsLevels(string[] args, LogLevel level)
    {
        Assert.Equal(level, Options(args).EffectiveLogLevel);
    }

    [Fact]
    public void LastNegationWins()
    {
        Assert.DoesNotContain("tcp-established", Options("--tcp-established", "--no-tcp-established").InEffect);
        Assert.Contains("tcp-established", Options("--no-tcp-established", "--tcp-established").InEffect);
        Assert.DoesNotContain("restore-detached", Options("-d", "--no-daemon").InEffect);
        Assert.Contains("restore-detached", Options("--daemon").InEffect);
    }

    [Fact]
    public void LastScalarWinsAndListsAccumulate()
    {
        var options = Options("-D", "a", "--images-dir=b", "--external", "x", "--external", "y");
        Assert.Equal("b", options.ImagesDir);
        Assert.Equal(["x", "y"], options.Values("external"));
    }

    [Fact]
    public void InheritFdTakesEverythingAfterTheFirstColonAndExternalsKeepTheirOrder()
    {
        var options = Options("--inherit-fd", "fd[7]:pipe:[123]", "--inherit-fd=fd[0]:tmp/log", "--inherit-fd", "fd[ 3]:file[2a:1f]",
            "--external", "file[2a:1f]", "--external", "pipe:[123]");
        Assert.Equal([new(7, "pipe:[123]"), new(0, "tmp/log"), new(3, "file[2a:1f]")], options.InheritFds);
        Assert.Equal(["file[2a:1f]", "pipe:[123]"], options.External);
    }

    [Theory]
    [InlineData("7:pipe:[1]")]
    [InlineData("fd7:x")]
    [InlineData("fd[-1]:x")]
    [InlineData("fd[2]")]
    [InlineData("fd[2]:")]
    [InlineData("fd[2]x:y")]
    public void InheritFdRejectsWhatCriuRejects(string argument) =>
        Assert.Equal($"Invalid inherit fd argument: {argument}", Rejection("--inherit-fd", argument));

    [Fact]
    public void TreeIsAtoiAndPositive()
    {
        Assert.Equal(42, Options("-t", "42abc").Tree);
        Assert.Equal(7, Options("--tree= 7").Tree);
        Assert.Equal("invalid argument for -t: 0", Rejection("-t0"));
        Assert.Equal("invalid argument for --tree: abc", Rejection("--tree", "abc"));
        Assert.Equal("invalid argument for --tree: -3", Rejection("--tree=-3"));
    }

    [Fact]
    public void FinalStateFollowsTheLastOfLeaveRunningAndLeaveStopped()
    {
        Assert.Equal(FinalState.Dead, Options().FinalState);
        Assert.Equal(FinalState.Alive, Options("-s", "-R").FinalState);
        Assert.Equal(FinalState.Stopped, Options("--leave-running", "--leave-stopped").FinalState);
    }

    [Fact]
    public void ManageCgroupsModes()
    {
        Assert.Equal(CgroupMode.Default, Options().ManageCgroups);
        Assert.Equal(CgroupMode.Soft, Options("--manage-cgroups").ManageCgroups);
        Assert.Equal(CgroupMode.Full, Options("--manage-cgroups=full").ManageCgroups);
        Assert.Equal(CgroupMode.Ignore, Options("--manage-cgroups=ignore").ManageCgroups);
        Assert.Equal("Unknown cgroups mode `hard' selected", Rejection("--manage-cgroups=hard"));
    }

    [Fact]
    public void AllTurnsOnExtraAndExperimental()
    {
        var options = Options("--all");
        Assert.True(options.CheckExtra);
        Assert.True(options.CheckExperimental);
        Assert.False(Options("--extra", "--no-extra").CheckExtra);
    }

    [Fact]
    public void NumbersAndSizes()
    {
        Assert.Equal(1 << 20, Options().GhostLimit);
        Assert.Equal(10 << 10, Options("--ghost-limit", "10K").GhostLimit);
        Assert.Equal(100L << 20, Options("--ghost-limit=100M").GhostLimit);
        Assert.Equal(2L << 30, Options("--ghost-limit=2G").GhostLimit);
        Assert.Equal(10, Options().Timeout);
        Assert.Equal(3, Options("--timeout", "3").Timeout);
        Assert.Equal(27, Options("--port", "27").Port);
        Assert.Equal(5, Options("--status-fd", "5").StatusFd);
        Assert.Equal(-1, Options().StatusFd);
        Assert.Equal([4, 9], Options("--close", "4", "--close=9").CloseFds);
    }

    [Fact]
    public void ValuesCriuRejects()
    {
        Assert.Equal("invalid argument for --port: x", Rejection("--port", "x"));
        Assert.Equal("Unable to parse a value of --status-fd", Rejection("--status-fd", "x"));
        Assert.Equal("Unable to parse value of --pre-dump-mode", Rejection("--pre-dump-mode", "copy"));
        Assert.Equal("Unsupported empty namespace: pid", Rejection("--empty-ns", "pid"));
        Assert.Equal("Invalid value for --network-lock: ebpf", Rejection("--network-lock", "ebpf"));
        Assert.Equal("Unknown file validation method `md5' selected", Rejection("--file-validation", "md5"));
        Assert.Equal("Unknown FPU mode `avx' selected", Rejection("--cpu-cap=fpu,avx"));
        Assert.Equal("invalid argument for -J: net", Rejection("-J", "net"));
        Assert.Equal("invalid argument for --ext-mount-map: nocolon", Rejection("--ext-mount-map", "nocolon"));
        Assert.Equal("invalid argument for --veth-pair: eth0", Rejection("--veth-pair", "eth0"));
        Assert.Equal("Failed to parse unix socket inode from optarg: 12a", Rejection("--ext-unix-sk=12a"));
        Assert.StartsWith("--ms is deprecated", Rejection("--ms"));
    }

    [Fact]
    public void AcceptedSpecialValues()
    {
        Assert.True(Options("--pre-dump-mode", "read").PreDumpRead);
        Assert.False(Options("--pre-dump-mode", "splice").PreDumpRead);
        Assert.Contains("ext-mount-map", Options("-M", "auto").InEffect);
        Assert.Contains("cpu-cap", Options("--cpu-cap=^fpu,ins", "--cpu-cap").InEffect);
        Assert.Contains("join-ns", Options("-J", "net:/proc/1/ns/net").InEffect);
    }

    [Fact]
    public void ExtUnixSkBareAllowsEverySocketAndWithInodesOnlyThose()
    {
        Assert.False(Options().ExternalUnixSockets.Allows(5, 6));
        Assert.True(Options("--ext-unix-sk").ExternalUnixSockets.Allows(5, 6));
        Assert.True(Options("-x").ExternalUnixSockets.AllowAll);
        var some = Options("--ext-unix-sk=5,7", "-x9").ExternalUnixSockets;
        Assert.False(some.AllowAll);
        Assert.True(some.Allows(5, 0));
        Assert.True(some.Allows(1, 9));
        Assert.False(some.Allows(6, 8));
    }
}
