// From argv to a CRIU command ready to run, in CRIU's order: help if `-h`/`--help` appears
// anywhere; configuration files then argv through getopt_long; each option applied as getopt
// returns it (so -V / --help act at their place); then the command word. The getopt pass is
// authoritative: System.CommandLine cannot express getopt's rules (optional arguments that are
// only attached, `-vvvv` counting, unambiguous prefixes, last-of-`--X`/`--no-X` wins across two
// option names, options both before and after the command). So argv is normalized into a form
// System.CommandLine reads without ambiguity — `COMMAND --long[=value]... -- OPERAND...` — and
// System.CommandLine provides the command tree: dispatch, operand counts, and the help text.
using System.CommandLine;
using Crest.Cli.Getopt;

namespace Crest.Cli.Criu;

/// <summary>A CRIU command and what it was asked to do.</summary>
internal sealed record CriuInvocation(CriuCommand Command, IReadOnlyList<string> Operands, CriuOptions Options);

internal sealed class CriuCommandLine
{
    private static readonly GetoptLong Getopt = new(CriuOptionTable.All);

    /// <summary>Set when parsing ended on `--version` / `-V`.</summary>
    public bool VersionRequested { get; private set; }

    /// <summary>Set when parsing ended on `--help` / `-h`.</summary>
    public bool HelpRequested { get; private set; }

    public CriuOptions Options { get; } = new();

    /// <summary>Operands of argv in order; the first is the command.</summary>
    public IReadOnlyList<string> Operands { get; private set; } = [];

    /// <summary>Every option occurrence, configuration files first, in the order applied.</summary>
    public List<OptionOccurrence> Occurrences { get; } = [];

    /// <summary>Runs the getopt pass over configuration files and argv; throws <see cref="UsageException"/>.</summary>
    public static CriuCommandLine Parse(IReadOnlyList<string> args, Func<string, string?> environment)
    {
        var line = new CriuCommandLine();
        if (args.Any(a => a is "-h" or "--help"))
        {
            line.HelpRequested = true;
            line.Operands = args.Where(a => CriuCommands.Find(a) is not null).Take(1).ToList();
            return line;
        }
        bool posixlyCorrect = environment("POSIXLY_CORRECT") is not null;
        foreach (string path in ConfigFiles.Sources(args, environment))
        {
            if (ConfigFiles.Read(path) is not { } words) continue;
            if (!line.Take(Getopt.Parse(words, posixlyCorrect))) return line;
        }
        var result = Getopt.Parse(args, posixlyCorrect);
        line.Operands = result.Operands;
        line.Take(result);
        return line;
    }

    /// <summary>
    /// The options getopt finds in configuration files and argv, values unchecked, even when the
    /// command line is wrong: enough to know where the log of that failure belongs.
    /// </summary>
    public static CriuOptions ScanUnchecked(IReadOnlyList<string> args, Func<string, string?> environment)
    {
        bool posixlyCorrect = environment("POSIXLY_CORRECT") is not null;
        var occurrences = new List<OptionOccurrence>();
        foreach (string path in ConfigFiles.Sources(args, environment))
            if (ConfigFiles.Read(path) is { } words) occurrences.AddRange(Getopt.Parse(words, posixlyCorrect).Options);
        occurrences.AddRange(Getopt.Parse(args, posixlyCorrect).Options);
        return CriuOptions.Unchecked(occurrences);
    }

    /// <summary>Applies the occurrences of one getopt run; false when -V or -h ended parsing.</summary>
    private bool Take(GetoptResult result)
    {
        foreach (var occurrence in result.Options)
        {
            if (occurrence.Spec.Setting == "version") { VersionRequested = true; return false; }
            if (occurrence.Spec.Setting == "help") { HelpRequested = true; return false; }
            Options.Apply(occurrence);
            Occurrences.Add(occurrence);
        }
        if (result.Error is not null) throw result.Error;
        return true;
    }

    /// <summary>The argv System.CommandLine sees: `COMMAND --long[=value]... -- OPERAND...`.</summary>
    public List<string> Normalized()
    {
        var tokens = new List<string> { Operands[0] };
        foreach (var o in Occurrences)
            tokens.Add(o.Value is null ? o.Spec.Display : $"{o.Spec.Display}={o.Value}");
        tokens.Add("--");
        tokens.AddRange(Operands.Skip(1));
        return tokens;
    }

    /// <summary>
    /// The System.CommandLine tree of CRIU's commands: each takes every CRIU option (shared
    /// instances, as long names; short forms shown in help) and its operands.
    /// <paramref name="run"/> is what a parsed command does. <paramref name="only"/> limits the
    /// tree to one command when the command word is already known: a smaller tree parses faster.
    /// </summary>
    public static void AddCommands(RootCommand root, Func<CriuCommand, string[], int> run, CriuCommand? only = null)
    {
        var options = new List<Option>();
        foreach (var spec in CriuOptionTable.All)
        {
            if (spec.Setting is "help" or "version") continue; // System.CommandLine's own
            var option = new Option<string[]>(spec.Display)
            {
                Arity = spec.Argument == ArgumentKind.None ? ArgumentArity.Zero : ArgumentArity.ZeroOrMore,
                AllowMultipleArgumentsPerToken = false,
                Hidden = spec.Negated,
                HelpName = spec.Argument == ArgumentKind.None ? null : "value",
                Description = CriuOptionHelp.For(spec.Long),
            };
            if (spec.Short != OptionSpec.NoShort && !spec.Negated) option.Aliases.Add("-" + spec.Short);
            options.Add(option);
        }
        foreach (var criu in only is null ? CriuCommands.All : [only])
        {
            var command = new Command(criu.Name, criu.Summary);
            foreach (var option in options) command.Options.Add(option);
            var operands = new Argument<string[]>("operands")
            {
                Arity = criu.MaxOperands == 0 ? ArgumentArity.Zero
                    : new ArgumentArity(criu.MinOperands, ArgumentArity.ZeroOrMore.MaximumNumberOfValues),
                Hidden = criu.MaxOperands == 0,
            };
            // A string[] argument cannot have a maximum of one, so the upper bound is checked here.
            operands.Validators.Add(result =>
            {
                if (result.Tokens.Count > criu.MaxOperands)
                    result.AddError($"excessive parameters for command {criu.Name}");
            });
            command.Arguments.Add(operands);
            command.SetAction(parsed => run(criu, parsed.GetValue(operands) ?? []));
            root.Subcommands.Add(command);
        }
    }
}
