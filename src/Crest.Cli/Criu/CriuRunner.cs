// Runs a parsed CRIU command the way CRIU's main does: close --close fds, open the images
// directory, move to the work directory, open the log (every call, success or failure), check
// the option combination, then hand over to the command. Failures are logged and repeated on
// stderr, exit code 1: "crest: ..." for the command line, "Error: ..." for what the engines report.
using Crest.Cli.Getopt;
using Crest.Cli.Interop;
using Crest.Diagnostics;
using Crest.Engine.Check;
using Crest.Engine.Dump;
using Crest.Engine.Restore;
using Crest.Images;
using Crest.Kernel;
using Crest.Transport.PageServer;
using Crest.Transport.Tls;

namespace Crest.Cli.Criu;

internal static class CriuRunner
{
    public static int Run(CriuInvocation invocation, TextWriter stdout, TextWriter stderr)
    {
        var (command, operands, options) = invocation;
        foreach (int fd in options.CloseFds) Libc.close(fd); // CRIU ignores the result too

        bool remote = command.Name is "image-proxy" or "image-cache" or "migrate" || options.IsOn("remote");
        var paths = CriuPaths.Resolve(options, Directory.GetCurrentDirectory(), remote);
        if (remote && options.WorkDir is null && !Directory.Exists(paths.WorkDir))
        {
            try
            {
                Directory.CreateDirectory(paths.WorkDir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                stderr.WriteLine($"crest: can't create the work directory {paths.WorkDir}: {e.Message}");
                return CrestCommandLine.Failure;
            }
        }
        // With --remote, -D names a snapshot: no such directory exists on either machine.
        if (command.OpensImagesDir && !remote && !Directory.Exists(paths.ImagesDir))
        {
            stderr.WriteLine($"crest: can't open images directory {paths.ImagesDir}: no such directory");
            return CrestCommandLine.Failure;
        }
        if (!Directory.Exists(paths.WorkDir))
        {
            stderr.WriteLine($"crest: can't change directory to {paths.WorkDir}: no such directory");
            return CrestCommandLine.Failure;
        }

        Log.ErrorsToStderr = false; // Fail() repeats errors on stderr itself, once
        Log.Level = options.EffectiveLogLevel;
        try
        {
            if (paths.LogToStdout) Log.OpenStandardOutput();
            // A detached daemon goes on with the log its starter began (CRIU's daemon keeps the log fd).
            else if (paths.LogFile is { } logFile && DaemonMode.IsDetachedCopy) Log.Open(logFile);
            else if (paths.LogFile is { } newLog) Log.Create(newLog);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"crest: can't create log file {paths.LogFile}: {e.Message}");
            return CrestCommandLine.Failure;
        }
        bool logIsStderr = paths.LogFile is null && !paths.LogToStdout;

        try
        {
            Log.Info($"Version: {CrestCommandLine.Version}");
            Log.Info($"Command: {command.Name}, images {paths.ImagesDir}, work dir {paths.WorkDir}");
            if (ValidateOperands(command, operands, options) is { } usage) return Fail(usage, stderr, logIsStderr);
            if (Check(command, options) is { } invalid) return Fail(invalid, stderr, logIsStderr);
            if (Support.Refusal(command.Name, options.InEffect) is { } refusal) return Fail(refusal, stderr, logIsStderr);
            using var stopSignals = command.Name is "dump" or "pre-dump" or "restore" or "migrate" ? StopSignals.Register() : null;
            return command.Name switch
            {
                // KernelCheck's `all` covers CRIU's --extra, --experimental and --all alike.
                "check" => KernelCheck.Run(options.CheckExtra || options.CheckExperimental, options.Features, stdout),
                "dump" => CheckpointCommands.Dump(options, paths),
                "pre-dump" => CheckpointCommands.PreDump(options, paths),
                "restore" => CheckpointCommands.Restore(options, paths),
                "page-server" => PageServerCommand.Run(options, paths, stderr),
                "lazy-pages" => LazyPagesCommand.Run(options, paths, stderr),
                "image-cache" => RemoteCommands.ImageCache(options, paths, stderr),
                "image-proxy" => RemoteCommands.ImageProxy(options, paths, stderr),
                "migrate" => MigrateCommand.Run(options, paths, stdout, stderr),
                _ => Fail($"{command.Name}: not implemented yet", stderr, logIsStderr),
            };
        }
        catch (Crest.Transport.Remote.RemoteImageException e)
        {
            DaemonMode.Failed(e.Message);
            return EngineFailure(e.Message, stderr, logIsStderr);
        }
        catch (UsageException e)
        {
            return Fail(e.Message, stderr, logIsStderr);
        }
        catch (Exception e) when (e is DumpException or RestoreException or ImageFormatException or PageServerException or TlsException)
        {
            return EngineFailure(e.Message, stderr, logIsStderr);
        }
        catch (KernelException e)
        {
            return command.Name is "dump" or "pre-dump" or "restore" or "migrate" or "page-server" or "lazy-pages"
                ? EngineFailure(e.Message, stderr, logIsStderr)
                : Fail($"{command.Name}: {e.Message}", stderr, logIsStderr);
        }
        catch (Exception e) when (command.Name is "dump" or "pre-dump" or "restore" or "migrate" or "page-server" or "lazy-pages")
        {
            // A harness expects a plain failure, never a crash: anything the engines did not
            // anticipate is still reported as an error (with its stack in the log at -v4).
            Log.Debug($"{e}");
            return EngineFailure($"{command.Name}: unexpected {e.GetType().Name}: {e.Message}", stderr, logIsStderr);
        }
        finally
        {
            Log.Close();
        }
    }

    /// <summary>CRIU's rules for words after the command: cpuinfo and swrk take one, restore --exec-cmd takes a command.</summary>
    private static string? ValidateOperands(CriuCommand command, IReadOnlyList<string> operands, CriuOptions options)
    {
        if (options.HasExecCmd)
        {
            if (operands.Count == 0) return "--exec-cmd requires a command";
            if (command.Name != "restore") return "--exec-cmd is available for the restore command only";
            if (options.IsOn("restore-detached")) return "--restore-detached and --exec-cmd cannot be used together";
            return null;
        }
        if (command.Name == "restore" && operands.Count > 0)
            return $"excessive parameter{(operands.Count > 1 ? "s" : "")} for command restore";
        if (command.Name == "cpuinfo" && operands[0] is not ("dump" or "check"))
            return $"unknown cpuinfo command {operands[0]} (dump or check)";
        if (command.Name == "swrk" && !CLibParse.TryScanInt(operands[0], out _))
            return $"swrk needs a socket file descriptor, not {operands[0]}";
        return null;
    }

    /// <summary>CRIU's check_options() combinations.</summary>
    private static string? Check(CriuCommand command, CriuOptions options)
    {
        if (options.IsOn("restore-sibling") && !options.IsOn("restore-detached"))
            return "--restore-sibling only makes sense with --restore-detached";
        if (command.Name is "dump" or "pre-dump" or "migrate" && options.Tree == 0)
            return "No pid specified (-t option missing)";
        if (command.Name is "dump" or "pre-dump" && options.IsOn("page-server") && options.Port == 0)
            return "--page-server needs --port (and --address) of the page server";
        if (command.Name is "dump" or "pre-dump" && options.IsOn("page-server") && options.Last("address") is null)
            return "--page-server needs --address of the page server";
        return null;
    }

    /// <summary>What an engine reports (CONTRACT.md): "Error: message" in the log and on stderr.</summary>
    private static int EngineFailure(string message, TextWriter stderr, bool logIsStderr)
    {
        Log.Error(message);
        if (!logIsStderr) stderr.WriteLine($"Error: {message}");
        return CrestCommandLine.Failure;
    }

    private static int Fail(string message, TextWriter stderr, bool logIsStderr)
    {
        Log.Error(message);
        if (!logIsStderr) stderr.WriteLine($"crest: {message}");
        return CrestCommandLine.Failure;
    }
}
