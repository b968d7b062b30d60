// The registry of what is implemented: unimplemented commands and options refuse by name.
using Crest.Cli.Criu;

namespace Crest.Cli.Tests.Criu;

public class SupportTests
{
    private static IReadOnlyCollection<string> InEffect(params string[] args) =>
        CriuCommandLine.Parse(args, _ => null).Options.InEffect;

    [Theory]
    [InlineData("swrk")]
    [InlineData("service")]
    [InlineData("dedup")]
    [InlineData("cpuinfo")]
    public void CommandsWithoutAnEngineRefuse(string command)
    {
        Assert.Equal($"{command}: not implemented yet", Support.Refusal(command, InEffect("-v4", "-o", "x.log")));
    }

    [Fact]
    public void PreDumpAndIncrementalDumpTakeTheirOptions()
    {
        Assert.Null(Support.Refusal("pre-dump", InEffect("-t", "42", "-D", "d2", "--prev-images-dir", "../d1", "--track-mem")));
        Assert.Null(Support.Refusal("dump", InEffect("-t", "42", "-D", "d3", "--prev-images-dir", "../d2", "--track-mem")));
        Assert.Equal("pre-dump: option --leave-stopped is not supported yet", Support.Refusal("pre-dump", InEffect("-t", "42", "-s")));
    }

    [Fact]
    public void UnsupportedOptionOfAnImplementedCommandIsNamed()
    {
        Assert.Equal("check: option --tcp-established is not supported yet",
            Support.Refusal("check", InEffect("--feature", "userns", "--tcp-established")));
        Assert.Equal("check: option --manage-cgroups is not supported yet",
            Support.Refusal("check", InEffect("--manage-cgroups=soft")));
    }

    [Fact]
    public void DumpTakesWhatTheHarnessSendsAndShellJobButNotTcpEstablished()
    {
        Assert.Null(Support.Refusal("dump", InEffect("--no-default-config", "--log-file", "dump.log", "--images-dir", "/d",
            "--verbosity=4", "--tree", "42", "--pidfile", "/p", "--timeout", "10", "--pre-dump-mode", "splice")));
        Assert.Null(Support.Refusal("dump", InEffect("-t", "42", "-R")));
        Assert.Null(Support.Refusal("dump", InEffect("-t", "42", "-s")));
        Assert.Null(Support.Refusal("dump", InEffect("-t", "42", "--shell-job")));
        Assert.Null(Support.Refusal("restore", InEffect("-j", "-d")));
        Assert.Equal("dump: option --tcp-established is not supported yet", Support.Refusal("dump", InEffect("-t", "42", "--tcp-established")));
    }

    [Fact]
    public void RestoreTakesWhatTheHarnessSends()
    {
        Assert.Null(Support.Refusal("restore", InEffect("--no-default-config", "--log-file", "restore.log", "--images-dir", "/d",
            "--verbosity=4", "--pidfile", "/p", "--restore-detached")));
        Assert.Equal("restore: option --tcp-established is not supported yet",
            Support.Refusal("restore", InEffect("-d", "--tcp-established")));
    }

    [Fact]
    public void OptionTurnedOffAgainIsNoDemand()
    {
        Assert.Null(Support.Refusal("check", InEffect("--tcp-established", "--no-tcp-established")));
        Assert.Null(Support.Refusal("check", InEffect("--no-link-remap")));
    }

    [Fact]
    public void CommonOptionsAreHonouredEverywhere()
    {
        Assert.Null(Support.Refusal("check",
            InEffect("-v4", "-o", "c.log", "-D", "/d", "-W", "/w", "--no-default-config", "--close", "99", "--deprecated", "--all")));
    }

    [Fact]
    public void EveryCommandIsKnownToTheRegistryOrRefused()
    {
        foreach (var command in CriuCommands.All)
        {
            string? refusal = Support.Refusal(command.Name, []);
            Assert.True(refusal is null == Support.Implemented.ContainsKey(command.Name), command.Name);
        }
    }
}
