namespace Crest.Cli.Getopt;

/// <summary>getopt_long's has_arg: no_argument, required_argument, optional_argument.</summary>
internal enum ArgumentKind
{
    /// <summary>A flag: `--name`, `-x`. `--name=value` is an error.</summary>
    None,
    /// <summary>`--name value`, `--name=value`, `-xvalue`, `-x value`.</summary>
    Required,
    /// <summary>Only attached: `--name=value`, `-xvalue`; a separate word is never taken.</summary>
    Optional,
}
