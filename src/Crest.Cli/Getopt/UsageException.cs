namespace Crest.Cli.Getopt;

/// <summary>
/// The command line cannot be understood: unknown or ambiguous option, missing or unexpected
/// argument, bad value. CRIU answers these with its usage text and exit code 1.
/// </summary>
internal sealed class UsageException(string message) : Exception(message);
