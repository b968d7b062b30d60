// The `crest` command: crit's verbs when argv starts with one (show, decode, encode, info),
// otherwise CRIU's command line (see Criu/CriuCommandLine.cs for how it is parsed).
using System.CommandLine;
using Crest.Cli.Criu;
using Crest.Cli.Crit;
using Crest.Cli.Getopt;
using Crest.Diagnostics;

namespace Crest.Cli;

internal static class CrestCommandLine
{
    /// <summary>Printed by --version / -V in CRIU's shape, "Version: X.Y.Z".</summary>
    public const string Version = "0.1.0";

    /// <summary>Exit code of every failure of a CRIU command, usage errors included (CRIU's).</summary>
    public const int Failure = 1;

    public static int Run(IReadOnlyList<string> args, TextWriter stdout, TextWriter stderr, Func<string, string?> environment)
    {
        var configuration = new ParserConfiguration { ResponseFileTokenReplacer = null };
        var invocation = new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false };

        if (args.Count > 0 && CritVerbs.Names.Contains(args[0]))
        {
            var critParse = BuildRoot(stdout, stderr, environment).Parse(args, configuration);
            if (critParse.Errors.Count > 0) return ReportParseErrors(critParse, stderr, CritVerbs.UsageExitCode);
            return critParse.Invoke(invocation);
        }

        CriuCommandLine line;
        try
        {
            line = CriuCommandLine.Parse(args, environment);
        }
        catch (UsageException e)
        {
            LogUsageError(e.Message, args, environment, stderr);
            return UsageError(e.Message, stderr);
        }
        if (line.VersionRequested)
        {
            stdout.Write($"Version: {Version}\n");
            return 0;
        }

        if (line.HelpRequested)
        {
            List<string> helpArgs = [.. line.Operands.Take(1), "--help"];
            return BuildRoot(stdout, stderr, environment, line).Parse(helpArgs, configuration).Invoke(invocation);
        }
        string? refusal = line.Operands.Count == 0 ? "Error: command is required"
            : line.Operands[0] == "exec" ? "Error: the \"exec\" action is not supported (CRIU deprecated it)"
            : null;
        if (refusal is not null)
        {
            LogUsageError(refusal, args, environment, stderr);
            return UsageError(refusal, stderr);
        }

        var root = BuildRoot(stdout, stderr, environment, line, CriuCommands.Find(line.Operands[0]));
        var parsed = root.Parse(line.Normalized(), configuration);
        if (parsed.Errors.Count > 0)
        {
            LogUsageError(string.Join("; ", parsed.Errors.Select(e => e.Message)), args, environment, stderr);
            return ReportParseErrors(parsed, stderr, Failure);
        }
        return parsed.Invoke(invocation);
    }

    /// <summary>
    /// The log must exist after every call (harnesses read it after a failure): when the command
    /// line named a log file, the usage error goes there too. CRIU itself would not have opened it yet.
    /// </summary>
    private static void LogUsageError(string message, IReadOnlyList<string> args, Func<string, string?> environment, TextWriter stderr)
    {
        var paths = CriuPaths.Resolve(CriuCommandLine.ScanUnchecked(args, environment), Directory.GetCurrentDirectory());
        if (paths.LogFile is not { } logFile || !Directory.Exists(Path.GetDirectoryName(logFile))) return;
        try
        {
            Log.ErrorsToStderr = false; // the caller reports it on stderr
            Log.Create(logFile);
            Log.Error(message);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"crest: can't create log file {logFile}: {e.Message}");
        }
        finally
        {
            Log.Close();
        }
    }

    /// <summary>The command tree; with <paramref name="only"/> just that CRIU command (and crit's verbs).</summary>
    private static RootCommand BuildRoot(TextWriter stdout, TextWriter stderr, Func<string, string?> environment,
        CriuCommandLine? line = null, CriuCommand? only = null)
    {
        var root = new RootCommand("crest: checkpoint/restore of Linux processes, CRIU-compatible.\n" +
            "Usage: crest COMMAND [OPTIONS] (CRIU's commands and options), crest show|decode|encode|info (crit's)");
        root.Directives.Clear();
        CriuCommandLine.AddCommands(root, (command, operands) =>
            CriuRunner.Run(new CriuInvocation(command, operands, line!.Options), stdout, stderr), only);
        CritVerbs.AddCommands(root, stdout, stderr);
        return root;
    }

    private static int UsageError(string message, TextWriter stderr)
    {
        stderr.WriteLine($"crest: {message}");
        stderr.WriteLine("Try 'crest --help' for more information.");
        return Failure;
    }

    private static int ReportParseErrors(ParseResult parsed, TextWriter stderr, int exitCode)
    {
        foreach (var error in parsed.Errors) stderr.WriteLine($"crest: {error.Message}");
        stderr.WriteLine("Try 'crest --help' for more information.");
        return exitCode;
    }
}
