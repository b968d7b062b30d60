// CRIU's configuration files: words per line with `--` before the first, comments, quotes,
// and the order and conditions under which each file is read.
using Crest.Cli.Criu;

namespace Crest.Cli.Tests.Criu;

public class ConfigFilesTests
{
    private static List<string> Words(string line)
    {
        var words = new List<string>();
        ConfigFiles.ParseLine(line, words);
        return words;
    }

    [Fact]
    public void FirstWordBecomesALongOption()
    {
        Assert.Equal(["--tcp-established"], Words("tcp-established"));
        Assert.Equal(["--log-file", "/tmp/x.log"], Words("  log-file   /tmp/x.log  "));
        Assert.Equal(["--ghost-limit", "100M"], Words("ghost-limit\t100M"));
    }

    [Fact]
    public void CommentsAndBlankLines()
    {
        Assert.Empty(Words("# tcp-established"));
        Assert.Empty(Words("   "));
        Assert.Equal(["--link-remap"], Words("link-remap # allow link remaps"));
    }

    [Fact]
    public void QuotedWords()
    {
        Assert.Equal(["--root", "/a dir/with spaces"], Words("root \"/a dir/with spaces\""));
        Assert.Equal(["--action-script", "say \"hi\""], Words("action-script \"say \\\"hi\\\"\""));
        Assert.Equal(["--external", ""], Words("external \"\""));
    }

    [Fact]
    public void SourcesInCriusOrder()
    {
        var env = new Dictionary<string, string> { ["HOME"] = "/home/u", ["CRIU_CONFIG_FILE"] = "/env.conf" };
        Assert.Equal(
            [ConfigFiles.GlobalPath, "/home/u/.criu/default.conf", "/env.conf"],
            ConfigFiles.Sources(["dump"], env.GetValueOrDefault));
        // --no-default-config drops the defaults, not $CRIU_CONFIG_FILE.
        Assert.Equal(["/env.conf"], ConfigFiles.Sources(["dump", "--no-default-config"], env.GetValueOrDefault));
        // --config FILE implies --no-default-config and comes last.
        Assert.Equal(["/env.conf", "/c.conf"], ConfigFiles.Sources(["--config", "/c.conf", "dump"], env.GetValueOrDefault));
        Assert.Equal(["/env.conf", "/d.conf"], ConfigFiles.Sources(["--config=/d.conf"], env.GetValueOrDefault));
    }

    [Fact]
    public void UnreadableFileIsSkipped()
    {
        Assert.Null(ConfigFiles.Read("/nonexistent/crest/default.conf"));
    }

    [Fact]
    public void FileWordsAreReadLineByLine()
    {
        string path = Path.Combine(Path.GetTempPath(), $"crest-config-{Guid.NewGuid():N}.conf");
        File.WriteAllText(path, "# a comment\ntcp-established\nlog-file cfg.log\n\nverbosity=4\n");
        try
        {
            Assert.Equal(["--tcp-established", "--log-file", "cfg.log", "--verbosity=4"], ConfigFiles.Read(path));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
