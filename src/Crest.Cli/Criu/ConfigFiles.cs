// CRIU's configuration files: each line is a long option without its leading `--` followed by
// its words ("log-file /tmp/x", "tcp-established"); `#` starts a comment; a word may be quoted
// with "..." (\" inside). They are read in CRIU's order, each by the same getopt rules as argv,
// before argv: /etc/criu/default.conf, $HOME/.criu/default.conf (both skipped with
// --no-default-config or --config), $CRIU_CONFIG_FILE, the --config file. A file that cannot
// be opened is skipped, as CRIU does.
using System.Text;

namespace Crest.Cli.Criu;

internal static class ConfigFiles
{
    public const string GlobalPath = "/etc/criu/default.conf";
    public const string UserRelativePath = ".criu/default.conf";

    /// <summary>
    /// CRIU's pre-parse of argv: literal `--no-default-config`, `--config FILE` and `--config=FILE`
    /// (no prefixes), seen before getopt runs.
    /// </summary>
    public static (bool NoDefaultConfig, string? ConfigFile) PreParse(IReadOnlyList<string> args)
    {
        bool noDefault = false;
        string? file = null;
        for (int i = 0; i < args.Count; i++)
        {
            if (args[i] == "--no-default-config") noDefault = true;
            else if (args[i] == "--config")
            {
                file = i + 1 < args.Count ? args[i + 1] : null;
                noDefault = true;
            }
            else if (args[i].StartsWith("--config=", StringComparison.Ordinal))
            {
                file = args[i]["--config=".Length..];
                noDefault = true;
            }
        }
        return (noDefault, file);
    }

    /// <summary>The configuration files to read, in order, for this argv and environment.</summary>
    public static IEnumerable<string> Sources(IReadOnlyList<string> args, Func<string, string?> environment)
    {
        var (noDefault, file) = PreParse(args);
        if (!noDefault)
        {
            yield return GlobalPath;
            if (environment("HOME") is { Length: > 0 } home) yield return Path.Combine(home, UserRelativePath);
        }
        if (environment("CRIU_CONFIG_FILE") is { Length: > 0 } fromEnvironment) yield return fromEnvironment;
        if (file is not null) yield return file;
    }

    /// <summary>The words of a configuration file as argv words, or null if it cannot be read.</summary>
    public static List<string>? Read(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        var words = new List<string>();
        foreach (string line in text.Split('\n')) ParseLine(line, words);
        return words;
    }

    /// <summary>Appends the words of one line; the first gets the `--` that makes it a long option.</summary>
    public static void ParseLine(string line, List<string> words)
    {
        bool first = true;
        int i = 0;
        while (true)
        {
            while (i < line.Length && char.IsWhiteSpace(line[i])) i++;
            if (i >= line.Length || line[i] == '#') return;

            string word;
            if (line[i] == '"' && line.IndexOf('"', i + 1) >= 0)
            {
                var quoted = new StringBuilder();
                int j = i + 1;
                for (; j < line.Length && line[j] != '"'; j++)
                {
                    if (line[j] == '\\' && j + 1 < line.Length && line[j + 1] == '"') j++;
                    quoted.Append(line[j]);
                }
                word = quoted.ToString();
                i = Math.Min(j + 1, line.Length);
            }
            else
            {
                int start = i;
                while (i < line.Length && !char.IsWhiteSpace(line[i])) i++;
                word = line[start..i];
            }
            words.Add(first ? "--" + word : word);
            first = false;
        }
    }
}
