// The option table is CRIU's: names unique, short forms exactly CRIU's short_opts, every
// boolean with its no- form.
using Crest.Cli.Criu;
using Crest.Cli.Getopt;

namespace Crest.Cli.Tests.Criu;

public class CriuOptionTableTests
{
    [Fact]
    public void LongNamesAreUnique()
    {
        var names = CriuOptionTable.All.Select(o => o.Long).ToList();
        Assert.Equal(names.Count, names.Distinct().Count());
    }

    [Fact]
    public void ShortFormsAreCriusShortOpts()
    {
        // criu/config.c: "dSsRt:hD:o:v::x::Vr:jJ:lW:L:M:"
        const string criuShortOpts = "dSsRt:hD:o:v::x::Vr:jJ:lW:L:M:";
        var expected = new Dictionary<char, ArgumentKind>();
        for (int i = 0; i < criuShortOpts.Length;)
        {
            char c = criuShortOpts[i++];
            int colons = 0;
            while (i < criuShortOpts.Length && criuShortOpts[i] == ':') { colons++; i++; }
            expected[c] = colons switch { 0 => ArgumentKind.None, 1 => ArgumentKind.Required, _ => ArgumentKind.Optional };
        }
        var actual = CriuOptionTable.All.Where(o => o.Short != OptionSpec.NoShort)
            .ToDictionary(o => o.Short, o => o.Argument);
        Assert.Equal(expected.OrderBy(p => p.Key), actual.OrderBy(p => p.Key));
    }

    [Theory]
    [InlineData("tcp-established")]
    [InlineData("skip-in-flight")]
    [InlineData("tcp-close")]
    [InlineData("link-remap")]
    [InlineData("file-locks")]
    [InlineData("shell-job")]
    [InlineData("track-mem")]
    [InlineData("auto-dedup")]
    [InlineData("display-stats")]
    [InlineData("restore-detached")]
    [InlineData("restore-sibling")]
    [InlineData("page-server")]
    [InlineData("tls")]
    [InlineData("mntns-compat-mode")]
    [InlineData("allow-uprobes")]
    public void BooleanOptionsHaveTheirNegation(string name)
    {
        var negation = CriuOptionTable.Get("no-" + name);
        Assert.True(negation.Negated);
        Assert.Equal(CriuOptionTable.Get(name).Setting, negation.Setting);
        Assert.Equal(ArgumentKind.None, negation.Argument);
    }

    [Theory]
    [InlineData("tree", "Required")]
    [InlineData("images-dir", "Required")]
    [InlineData("verbosity", "Optional")]
    [InlineData("manage-cgroups", "Optional")]
    [InlineData("ext-unix-sk", "Optional")]
    [InlineData("cpu-cap", "Optional")]
    [InlineData("ghost-limit", "Required")]
    [InlineData("external", "Required")]
    [InlineData("ext-mount-map", "Required")]
    [InlineData("status-fd", "Required")]
    [InlineData("lazy-pages", "None")]
    [InlineData("leave-running", "None")]
    [InlineData("enable-external-sharing", "None")]
    [InlineData("tls-no-cn-verify", "None")]
    [InlineData("no-default-config", "None")]
    [InlineData("network-lock", "Required")]
    [InlineData("lsm-mount-context", "Required")]
    public void ArgumentKindsAreCrius(string name, string kind)
    {
        Assert.Equal(Enum.Parse<ArgumentKind>(kind), CriuOptionTable.Get(name).Argument);
    }

    [Fact]
    public void EnableExternalOptionsHaveNoNegation()
    {
        // CRIU declares them without BOOL_OPT.
        Assert.DoesNotContain(CriuOptionTable.All, o => o.Long == "no-enable-external-sharing");
        Assert.DoesNotContain(CriuOptionTable.All, o => o.Long == "no-tls-no-cn-verify");
    }
}

public class CriuOptionHelpTests
{
    [Fact]
    public void EveryVisibleOptionHasAHelpLine()
    {
        var missing = CriuOptionTable.All.Where(o => !o.Negated && o.Setting is not ("help" or "version"))
            .Where(o => Crest.Cli.Criu.CriuOptionHelp.For(o.Long) is null)
            .Select(o => o.Long).ToList();
        Assert.Empty(missing);
    }
}
