namespace Crest.Cli.Getopt;

/// <summary>
/// One entry of a getopt_long table. <see cref="Setting"/> names what the option acts on: the
/// long option and its short form share it, and so do a boolean option and its `no-` negation
/// (<see cref="Negated"/> = true), so that the last one given wins as in CRIU.
/// <see cref="SeparateNumber"/>: an optional-argument long option that also takes a following
/// all-digits word as its value (`--verbosity 4`), which plain getopt would leave as an operand.
/// </summary>
internal sealed record OptionSpec(string Long, char Short, ArgumentKind Argument, string Setting, bool Negated = false, bool SeparateNumber = false)
{
    public const char NoShort = '\0';

    /// <summary>`--long` for messages.</summary>
    public string Display => "--" + Long;
}
