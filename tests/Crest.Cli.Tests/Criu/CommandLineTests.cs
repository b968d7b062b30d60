// The whole CRIU command line short of running: configuration files before argv, -V/-h at
// their place, normalization for System.CommandLine, the support registry, path resolution.
using System.CommandLine;
using Crest.Cli.Criu;
using Crest.Cli.Getopt;

namespace Crest.Cli.Tests.Criu;

public class CommandLineTests
{
    private static readonly Func<string, string?> NoEnvironment = _ => null;

    private static CriuCommandLine Parse(params string[] args) => CriuCommandLine.Parse(args, NoEnvironment);

    [Fact]
    public void HarnessDumpLine()
    {
        var line = Parse("dump", "--no-default-config", "--log-file", "dump.log", "--images-dir", "/imgs",
            "--verbosity=4", "--tree", "4242", "--pidfile", "/run/p", "--timeout", "10", "--pre-dump-mode", "splice");
        Assert.Equal(["dump"], line.Operands);
        Assert.Equal(4242, line.Options.Tree);
        Assert.Equal(4, line.Options.LogLevel);
        Assert.Equal("dump.log", line.Options.LogFile);
        Assert.Equal("/imgs", line.Options.ImagesDir);
        Assert.Equal("/run/p", line.Options.PidFile);
    }

    [Fact]
    public void HarnessCheckLine()
    {
        var line = Parse("check", "--no-default-config", "--no-default-config", "-verbosity=0", "--feature", "uffd-noncoop");
        Assert.Equal(0, line.Options.LogLevel);
        Assert.Equal(["uffd-noncoop"], line.Options.Features);
        Assert.Null(Support.Refusal("check", line.Options.InEffect));
    }

    [Fact]
    public void VersionActsWhereGetoptMeetsIt()
    {
        Assert.True(Parse("-V", "--bogus").VersionRequested);
        Assert.True(Parse("dump", "--vers").VersionRequested);
        Assert.Equal("unrecognized option '--bogus'", Assert.Throws<UsageException>(() => Parse("--bogus", "-V")).Message);
        Assert.Equal("invalid argument for -t: 0", Assert.Throws<UsageException>(() => Parse("-t0", "-V")).Message);
    }

    [Fact]
    public void HelpAnywhereWins()
    {
        var line = Parse("dump", "--bogus", "-h");
        Assert.True(line.HelpRequested);
        Assert.Equal(["dump"], line.Operands);
        Assert.True(Parse("--he").HelpRequested);
    }

    [Fact]
    public void ConfigFileOptionsComeBeforeArgv()
    {
        string path = Path.Combine(Path.GetTempPath(), $"crest-config-{Guid.NewGuid():N}.conf");
        File.WriteAllText(path, "tcp-established\nimages-dir /from-config\n");
        try
        {
            var line = CriuCommandLine.Parse(["dump", "-D", "/from-argv", "--no-tcp-established"],
                name => name == "CRIU_CONFIG_FILE" ? path : null);
            Assert.Equal("/from-argv", line.Options.ImagesDir);
            Assert.DoesNotContain("tcp-established", line.Options.InEffect);
            Assert.Equal(["dump"], line.Operands);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void BadOptionInAConfigFileIsAUsageError()
    {
        string path = Path.Combine(Path.GetTempPath(), $"crest-config-{Guid.NewGuid():N}.conf");
        File.WriteAllText(path, "no-such-option\n");
        try
        {
            var e = Assert.Throws<UsageException>(() => CriuCommandLine.Parse(["--config", path, "check"], NoEnvironment));
            Assert.Equal("unrecognized option '--no-such-option'", e.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void NormalizedFormPutsCommandFirstAndOperandsLast()
    {
        var line = Parse("-v4", "restore", "--manage-cgroups", "-d", "--exec-cmd", "--", "/bin/true", "-x");
        Assert.Equal(
            ["restore", "--verbosity=4", "--manage-cgroups", "--restore-detached", "--exec-cmd", "--", "/bin/true", "-x"],
            line.Normalized());
    }

    [Theory]
    [InlineData("dump", "-t", "1", "--manage-cgroups", "--tcp-established", "--ext-unix-sk", "--external", "mnt[]:m")]
    [InlineData("restore", "-d", "--exec-cmd", "--", "/bin/sh", "-c", "true")]
    [InlineData("cpuinfo", "dump")]
    [InlineData("swrk", "3")]
    [InlineData("check", "--feature", "list", "--all")]
    [InlineData("page-server", "--port", "1234", "--status-fd", "5", "--address", "127.0.0.1")]
    [InlineData("lazy-pages", "--ext-unix-sk=5", "--manage-cgroups=soft", "-v")]
    public void SystemCommandLineAcceptsEveryNormalizedLine(params string[] args)
    {
        var line = Parse(args);
        var root = new RootCommand();
        CriuInvocation? ran = null;
        CriuCommandLine.AddCommands(root, (command, operands) =>
        {
            ran = new CriuInvocation(command, operands, line.Options);
            return 0;
        });
        var parsed = root.Parse(line.Normalized(), new ParserConfiguration { ResponseFileTokenReplacer = null });
        Assert.Empty(parsed.Errors);
        Assert.Equal(0, parsed.Invoke());
        Assert.Equal(args[0], ran!.Command.Name);
        Assert.Equal(line.Operands.Skip(1), ran.Operands);
    }

    [Theory]
    [InlineData("dump", "extra")]
    [InlineData("swrk")]
    [InlineData("nosuchcommand")]
    public void SystemCommandLineRejectsBadOperands(params string[] args)
    {
        var line = Parse(args);
        var root = new RootCommand();
        CriuCommandLine.AddCommands(root, (_, _) => 0);
        Assert.NotEmpty(root.Parse(line.Normalized()).Errors);
    }
}
