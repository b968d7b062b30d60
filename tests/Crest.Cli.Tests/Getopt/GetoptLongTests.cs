// getopt_long's rules as CRIU's table sees them: every quirk a harness relies on.
using Crest.Cli.Criu;
using Crest.Cli.Getopt;

namespace Crest.Cli.Tests.Getopt;

public class GetoptLongTests
{
    private static readonly GetoptLong Getopt = new(CriuOptionTable.All);

    private static GetoptResult Parse(params string[] args)
    {
        var result = Getopt.Parse(args);
        Assert.Null(result.Error);
        return result;
    }

    private static string Error(params string[] args) => Getopt.Parse(args).Error?.Message
        ?? throw new Xunit.Sdk.XunitException($"expected a usage error for: {string.Join(' ', args)}");

    private static (string Long, string? Value)[] Pairs(GetoptResult r) => r.Options.Select(o => (o.Spec.Long, o.Value)).ToArray();

    [Fact]
    public void ShortFlagsBundle()
    {
        var r = Parse("-dj", "restore");
        Assert.Equal([("restore-detached", (string?)null), ("shell-job", null)], Pairs(r));
        Assert.Equal(["restore"], r.Operands);
    }

    [Fact]
    public void ShortRequiredArgumentAttachedOrSeparate()
    {
        Assert.Equal([("images-dir", "/tmp/x"), ("tree", "123")], Pairs(Parse("-D/tmp/x", "-t123")));
        Assert.Equal([("images-dir", "/tmp/x"), ("tree", "123")], Pairs(Parse("-D", "/tmp/x", "-t", "123")));
    }

    [Fact]
    public void BundleEndsAtAShortOptionWithArgument()
    {
        Assert.Equal([("restore-detached", (string?)null), ("images-dir", "dir")], Pairs(Parse("-dDdir")));
        Assert.Equal([("shell-job", (string?)null), ("tree", "42")], Pairs(Parse("-jt", "42")));
    }

    [Theory]
    [InlineData("-v4", "4")]
    [InlineData("-v", null)]
    [InlineData("-vvvv", "vvv")]
    [InlineData("-verbosity=0", "erbosity=0")]
    [InlineData("--verbosity=4", "4")]
    [InlineData("--verbosity", null)]
    public void VerbosityForms(string arg, string? value)
    {
        var r = Parse(arg, "dump");
        Assert.Equal([("verbosity", value)], Pairs(r));
        Assert.Equal(["dump"], r.Operands);
    }

    [Fact]
    public void VerbosityTakesASeparateNumber()
    {
        var r = Parse("--verbosity", "4", "dump");
        Assert.Equal([("verbosity", (string?)"4")], Pairs(r));
        Assert.Equal(["dump"], r.Operands);
    }

    [Fact]
    public void VerbosityLeavesAWordThatIsNoNumber()
    {
        var r = Parse("--verbosity", "dump");
        Assert.Equal([("verbosity", (string?)null)], Pairs(r));
        Assert.Equal(["dump"], r.Operands);
    }

    [Fact]
    public void ShortOptionalArgumentIsNeverTheNextWord()
    {
        var r = Parse("-v", "4", "dump");
        Assert.Equal([("verbosity", (string?)null)], Pairs(r));
        Assert.Equal(["4", "dump"], r.Operands);
    }

    [Fact]
    public void LongRequiredArgumentWithEqualsOrNextWord()
    {
        Assert.Equal([("tree", "5")], Pairs(Parse("--tree=5")));
        Assert.Equal([("tree", "5")], Pairs(Parse("--tree", "5")));
        Assert.Equal([("log-file", "-")], Pairs(Parse("--log-file", "-")));
        Assert.Equal([("root", "--weird")], Pairs(Parse("--root", "--weird")));
        Assert.Equal([("external", "mnt[a]:b=c")], Pairs(Parse("--external=mnt[a]:b=c")));
    }

    [Fact]
    public void LongOptionalArgumentOnlyWithEquals()
    {
        var separate = Parse("--manage-cgroups", "soft", "dump");
        Assert.Equal([("manage-cgroups", (string?)null)], Pairs(separate));
        Assert.Equal(["soft", "dump"], separate.Operands);
        Assert.Equal([("manage-cgroups", "soft")], Pairs(Parse("--manage-cgroups=soft")));
        Assert.Equal([("ext-unix-sk", "123")], Pairs(Parse("--ext-unix-sk=123")));
        Assert.Equal([("ext-unix-sk", (string?)null)], Pairs(Parse("-x")));
        Assert.Equal([("ext-unix-sk", "123")], Pairs(Parse("-x123")));
    }

    [Fact]
    public void FlagRefusesAValue()
    {
        Assert.Equal("option '--leave-running' doesn't allow an argument", Error("--leave-running=yes"));
    }

    [Fact]
    public void MissingArgument()
    {
        Assert.Equal("option '--tree' requires an argument", Error("dump", "--tree"));
        Assert.Equal("option requires an argument -- 't'", Error("dump", "-t"));
    }

    [Fact]
    public void UnknownOptionsAreErrors()
    {
        Assert.Equal("unrecognized option '--bogus'", Error("dump", "--bogus"));
        Assert.Equal("unrecognized option '--bogus=1'", Error("--bogus=1"));
        Assert.Equal("invalid option -- 'q'", Error("-q"));
        Assert.Equal("invalid option -- 'q'", Error("-dq"));
    }

    [Fact]
    public void UnambiguousPrefixesAreAccepted()
    {
        Assert.Equal([("images-dir", "/x")], Pairs(Parse("--images", "/x")));
        Assert.Equal([("images-dir", "/x")], Pairs(Parse("--im=/x")));
        Assert.Equal([("leave-running", (string?)null)], Pairs(Parse("--leave-r")));
        Assert.Equal([("tcp-established", (string?)null)], Pairs(Parse("--tcp-e")));
    }

    [Fact]
    public void ExactNameWinsOverLongerNames()
    {
        // "tls" is also a prefix of tls-cacert, tls-cert...; "feature" is exact.
        Assert.Equal([("tls", (string?)null)], Pairs(Parse("--tls")));
        Assert.Equal([("all", (string?)null)], Pairs(Parse("--all")));
    }

    [Fact]
    public void AmbiguousPrefixIsAnError()
    {
        string message = Error("--tcp");
        Assert.StartsWith("option '--tcp' is ambiguous; possibilities:", message);
        Assert.Contains("'--tcp-established'", message);
        Assert.Contains("'--tcp-close'", message);
        Assert.StartsWith("option '--no' is ambiguous", Error("--no"));
        Assert.StartsWith("option '--leave' is ambiguous", Error("--leave"));
    }

    [Fact]
    public void PrefixOfOptionAndItsAliasOfTheSameMeaningIsNotAmbiguous()
    {
        // --restore-detached and --daemon share the setting but not a prefix; --no-d matches
        // --no-daemon, --no-default-config, --no-deprecated and --no-display-stats.
        Assert.StartsWith("option '--no-d' is ambiguous", Error("--no-d"));
        Assert.Equal([("no-daemon", (string?)null)], Pairs(Parse("--no-da")));
    }

    [Fact]
    public void OptionsRepeat()
    {
        var r = Parse("--no-default-config", "--no-default-config", "--external", "a", "--external", "b");
        Assert.Equal(
            [("no-default-config", (string?)null), ("no-default-config", null), ("external", "a"), ("external", "b")],
            Pairs(r));
    }

    [Fact]
    public void OptionsAndOperandsMix()
    {
        var r = Parse("-v4", "dump", "-t", "1", "-D", "dir");
        Assert.Equal(["dump"], r.Operands);
        Assert.Equal([("verbosity", "4"), ("tree", "1"), ("images-dir", "dir")], Pairs(r));
    }

    [Fact]
    public void DoubleDashEndsOptions()
    {
        var r = Parse("restore", "--exec-cmd", "--", "/bin/sh", "-c", "--tree");
        Assert.Equal(["restore", "/bin/sh", "-c", "--tree"], r.Operands);
        Assert.Equal([("exec-cmd", (string?)null)], Pairs(r));
    }

    [Fact]
    public void LoneDashIsAnOperand()
    {
        Assert.Equal(["dump", "-"], Parse("dump", "-").Operands);
    }

    [Fact]
    public void PosixlyCorrectStopsAtTheFirstOperand()
    {
        var r = Getopt.Parse(["-v4", "dump", "-t", "1"], posixlyCorrect: true);
        Assert.Null(r.Error);
        Assert.Equal(["dump", "-t", "1"], r.Operands);
        Assert.Equal([("verbosity", (string?)"4")], Pairs(r));
    }

    [Fact]
    public void OptionsBeforeAnErrorAreKept()
    {
        var r = Getopt.Parse(["-V", "--bogus"]);
        Assert.Equal("unrecognized option '--bogus'", r.Error?.Message);
        Assert.Equal([("version", (string?)null)], Pairs(r));
    }
}
