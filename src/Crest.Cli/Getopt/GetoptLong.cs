// A getopt_long(3) work-alike (glibc semantics), so that every command line a program builds
// for CRIU means the same to Crest:
//   - argv is permuted: options and operands may be mixed; operands keep their order;
//     `--` ends the options; a lone `-` is an operand; with POSIXLY_CORRECT set the first
//     operand ends the options.
//   - short options bundle (`-dj`), take required arguments attached or as the next word
//     (`-D/tmp/x`, `-D /tmp/x`) and optional arguments only attached (`-v4`, `-v`); so
//     `-verbosity=0` is `-v` with the argument "erbosity=0".
//   - long options take required arguments as `--opt=value` or `--opt value`, optional ones
//     only as `--opt=value`; a flag given `=value` is an error.
//   - a long option may be shortened to any unambiguous prefix; an exact name always wins.
//   - options may repeat; the caller sees every occurrence in order.
// One deliberate extension: an option marked SeparateNumber (only --verbosity) also takes a
// following all-digits word, so `--verbosity 4` means level 4. Harnesses write it so; with
// plain getopt the "4" would be a stray operand and the command an error.
namespace Crest.Cli.Getopt;

/// <summary>One option as found on the command line, in order. <see cref="Value"/> is null when absent.</summary>
internal readonly record struct OptionOccurrence(OptionSpec Spec, string? Value, bool Short);

/// <summary>
/// What getopt_long returned, in order. When it stopped on an error, <see cref="Error"/> is set
/// and <see cref="Options"/> holds what came before it: CRIU acts on each option as getopt
/// returns it, so `-V --bogus` prints the version while `--bogus -V` is a usage error.
/// </summary>
internal sealed record GetoptResult(IReadOnlyList<OptionOccurrence> Options, IReadOnlyList<string> Operands, UsageException? Error);

internal sealed class GetoptLong
{
    private readonly IReadOnlyList<OptionSpec> _long;
    private readonly Dictionary<char, OptionSpec> _short = new();

    public GetoptLong(IReadOnlyList<OptionSpec> options)
    {
        _long = options;
        foreach (var spec in options)
            if (spec.Short != OptionSpec.NoShort && !spec.Negated)
                _short.TryAdd(spec.Short, spec);
    }

    /// <summary>Parses <paramref name="args"/> (without argv[0]); errors carry glibc's wording.</summary>
    public GetoptResult Parse(IReadOnlyList<string> args, bool posixlyCorrect = false)
    {
        var options = new List<OptionOccurrence>();
        var operands = new List<string>();
        try
        {
            ParseInto(args, posixlyCorrect, options, operands);
        }
        catch (UsageException e)
        {
            return new GetoptResult(options, operands, e);
        }
        return new GetoptResult(options, operands, null);
    }

    private void ParseInto(IReadOnlyList<string> args, bool posixlyCorrect, List<OptionOccurrence> options, List<string> operands)
    {
        int i = 0;
        while (i < args.Count)
        {
            string arg = args[i++];
            if (arg == "--")
            {
                for (; i < args.Count; i++) operands.Add(args[i]);
                break;
            }
            if (arg.Length < 2 || arg[0] != '-')
            {
                operands.Add(arg);
                if (posixlyCorrect)
                {
                    for (; i < args.Count; i++) operands.Add(args[i]);
                    break;
                }
                continue;
            }
            if (arg[1] == '-')
                options.Add(ParseLong(arg, args, ref i));
            else
                ParseShortCluster(arg, args, ref i, options);
        }
    }

    private OptionOccurrence ParseLong(string arg, IReadOnlyList<string> args, ref int i)
    {
        int eq = arg.IndexOf('=');
        string name = eq < 0 ? arg[2..] : arg[2..eq];
        string? attached = eq < 0 ? null : arg[(eq + 1)..];
        var spec = FindLong(name, arg);

        switch (spec.Argument)
        {
            case ArgumentKind.None:
                if (attached is not null)
                    throw new UsageException($"option '{spec.Display}' doesn't allow an argument");
                return new OptionOccurrence(spec, null, false);
            case ArgumentKind.Required:
                if (attached is not null) return new OptionOccurrence(spec, attached, false);
                if (i >= args.Count)
                    throw new UsageException($"option '{spec.Display}' requires an argument");
                return new OptionOccurrence(spec, args[i++], false);
            default:
                if (attached is null && spec.SeparateNumber && i < args.Count && IsNumber(args[i]))
                    return new OptionOccurrence(spec, args[i++], false);
                return new OptionOccurrence(spec, attached, false);
        }
    }

    private static bool IsNumber(string word) => word.Length > 0 && word.All(char.IsAsciiDigit);

    private OptionSpec FindLong(string name, string arg)
    {
        OptionSpec? found = null;
        List<OptionSpec>? candidates = null;
        bool ambiguous = false;
        foreach (var spec in _long)
        {
            if (!spec.Long.StartsWith(name, StringComparison.Ordinal)) continue;
            if (spec.Long.Length == name.Length) return spec;
            (candidates ??= []).Add(spec);
            if (found is null) found = spec;
            else if (found.Setting != spec.Setting || found.Negated != spec.Negated || found.Argument != spec.Argument)
                ambiguous = true;
        }
        if (name.Length == 0 || found is null)
            throw new UsageException($"unrecognized option '{arg}'");
        if (ambiguous)
        {
            string list = string.Join(" ", candidates!.Select(c => $"'{c.Display}'"));
            throw new UsageException($"option '--{name}' is ambiguous; possibilities: {list}");
        }
        return found;
    }

    private void ParseShortCluster(string arg, IReadOnlyList<string> args, ref int i, List<OptionOccurrence> options)
    {
        for (int pos = 1; pos < arg.Length; pos++)
        {
            char c = arg[pos];
            if (!_short.TryGetValue(c, out var spec))
                throw new UsageException($"invalid option -- '{c}'");
            string rest = arg[(pos + 1)..];
            switch (spec.Argument)
            {
                case ArgumentKind.None:
                    options.Add(new OptionOccurrence(spec, null, true));
                    continue;
                case ArgumentKind.Required:
                    if (rest.Length > 0) options.Add(new OptionOccurrence(spec, rest, true));
                    else if (i < args.Count) options.Add(new OptionOccurrence(spec, args[i++], true));
                    else throw new UsageException($"option requires an argument -- '{c}'");
                    return;
                default:
                    options.Add(new OptionOccurrence(spec, rest.Length > 0 ? rest : null, true));
                    return;
            }
        }
    }
}
