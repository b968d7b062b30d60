// How Crest's daemons (page-server, image-proxy, image-cache) start, as CRIU's page-server does: without -d they
// serve in the foreground; with -d the command starts itself again in a new session, with stdin, stdout and stderr
// on /dev/null, and returns once that copy is ready (or reports why it could not start). Ready means listening:
// the daemon writes its pid to --pidfile (O_EXCL, decimal, no newline), then exactly one \0 byte to --status-fd,
// then its readiness pipe. .NET cannot fork, so the copy is spawned (posix_spawn) with CREST_DAEMON_READY_FD
// naming the pipe; it appends to the log its starter began. Run() is the whole sequence; a new daemon command
// supplies how it binds and how it serves.
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Crest.Diagnostics;
using Crest.Kernel;
using Crest.Kernel.Files;
using Crest.Kernel.Processes;

namespace Crest.Cli.Criu;

internal static class DaemonMode
{
    private const string ReadyFdVariable = "CREST_DAEMON_READY_FD";
    /// <summary>Where the readiness pipe's write end is placed in the spawned copy.</summary>
    private const int ReadyFd = 200;

    /// <summary>True in the copy started by <see cref="StartDetached"/>: it serves instead of starting another.</summary>
    public static bool IsDetachedCopy => Environment.GetEnvironmentVariable(ReadyFdVariable) is not null;

    /// <summary>
    /// A daemon command from start to end. With -d (--daemon, CRIU's setting of --restore-detached) this process
    /// starts the command again detached and returns once that copy is ready. The copy, or a foreground run, binds
    /// (<paramref name="start"/>), says it is ready, and serves (<paramref name="serve"/>) until its work is done
    /// or, with <paramref name="untilSignalled"/>, until SIGTERM or SIGINT cancels the token it is given (without,
    /// the two keep their default action). What start throws reaches the starter of a detached copy as its error.
    /// </summary>
    /// <returns>The exit code for this process.</returns>
    public static int Run<TServer>(string name, CriuOptions options, CriuPaths paths, TextWriter stderr,
        Func<TServer> start, Func<TServer, CancellationToken, int> serve, bool untilSignalled = true) where TServer : IDisposable
    {
        if (options.IsOn("restore-detached") && !IsDetachedCopy) return StartDetached(name, stderr);
        TServer server;
        try
        {
            server = start();
            try
            {
                Ready(name, paths.PidFile, options.StatusFd);
            }
            catch
            {
                server.Dispose();
                throw;
            }
        }
        catch (Exception e)
        {
            Failed(e.Message);
            throw;
        }
        using (server)
        {
            if (!untilSignalled) return serve(server, CancellationToken.None);
            using var stop = new CancellationTokenSource();
            using var term = StopOn(PosixSignal.SIGTERM, stop);
            using var interrupt = StopOn(PosixSignal.SIGINT, stop);
            int code = serve(server, stop.Token);
            Log.Info($"{name}: stopped");
            return code;
        }
    }

    /// <summary>The signal cancels <paramref name="stop"/> instead of ending the process (while the registration is kept).</summary>
    private static PosixSignalRegistration StopOn(PosixSignal signal, CancellationTokenSource stop) =>
        PosixSignalRegistration.Create(signal, context =>
        {
            context.Cancel = true;
            stop.Cancel();
        });

    /// <summary>Starts this command again detached and waits until it is ready; returns the exit code for this process.</summary>
    public static int StartDetached(string name, TextWriter stderr)
    {
        // The copy opens the same log file afresh: this process writes no more to it.
        Log.Close();
        var (read, write) = FileDescriptor.CreatePipe();
        using (read)
        {
            string[] args = Environment.GetCommandLineArgs();
            string process = Environment.ProcessPath ?? throw new InvalidOperationException("the path of this program is unknown");
            List<string> argv = Path.GetFileNameWithoutExtension(process) == "dotnet"
                ? ["dotnet", "exec", .. args]
                : [process, .. args[1..]];
            var options = new SpawnOptions
            {
                NewSession = true,
                Environment = [.. CurrentEnvironment(), $"{ReadyFdVariable}={ReadyFd}"],
            };
            options.FileActions.Add(new SpawnFileAction.Open(0, "/dev/null", SpawnFileAction.O_RDONLY));
            options.FileActions.Add(new SpawnFileAction.Open(1, "/dev/null", SpawnFileAction.O_WRONLY));
            options.FileActions.Add(new SpawnFileAction.Open(2, "/dev/null", SpawnFileAction.O_WRONLY));
            options.FileActions.Add(new SpawnFileAction.Dup2(write.Fd, ReadyFd));
            ChildProcess child;
            using (write)
            {
                child = ChildProcess.Spawn(process, argv, options);
            }
            {
                // The copy writes \0 when it serves, or its error text, and closes the pipe.
                var answer = new MemoryStream();
                var buffer = new byte[512];
                int n;
                while ((n = read.Read(buffer)) > 0) answer.Write(buffer, 0, n);
                var bytes = answer.ToArray();
                if (bytes.Length > 0 && bytes[0] == 0) return 0; // the copy runs on; this process leaves it
                using (child)
                {
                    // Disposing kills it if it is still there, and reaps it.
                }
                string why = bytes.Length > 0 ? Encoding.UTF8.GetString(bytes) : $"{name} exited before it was ready";
                stderr.WriteLine($"Error: {why}");
                return CrestCommandLine.Failure;
            }
        }
    }

    /// <summary>The daemon listens: pidfile, --status-fd, then the readiness pipe of a detached copy.</summary>
    public static void Ready(string name, string? pidFile, int statusFd)
    {
        if (pidFile is not null)
        {
            using var file = FileDescriptor.Open(pidFile, OpenFlags.WriteOnly | OpenFlags.Create | OpenFlags.Exclusive | OpenFlags.CloseOnExec, 0x1a4);
            file.WriteAll(Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture)));
        }
        if (statusFd >= 0)
        {
            using var status = FileDescriptor.Own(statusFd);
            status.WriteAll([0]);
        }
        if (TakeReadyPipe() is { } ready)
        {
            using (ready) ready.WriteAll([0]);
        }
        Log.Info($"{name}: ready, pid {Environment.ProcessId}");
    }

    /// <summary>A detached copy that cannot start tells the command that started it why.</summary>
    public static void Failed(string message)
    {
        if (TakeReadyPipe() is { } ready)
        {
            using (ready)
            {
                try
                {
                    ready.WriteAll(Encoding.UTF8.GetBytes(message));
                }
                catch (KernelException)
                {
                    // the starter is gone
                }
            }
        }
    }

    private static FileDescriptor? TakeReadyPipe()
    {
        string? text = Environment.GetEnvironmentVariable(ReadyFdVariable);
        if (text is null || !int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int fd)) return null;
        Environment.SetEnvironmentVariable(ReadyFdVariable, null);
        return FileDescriptor.Own(fd);
    }

    private static IEnumerable<string> CurrentEnvironment()
    {
        foreach (System.Collections.DictionaryEntry e in Environment.GetEnvironmentVariables())
        {
            if ((string)e.Key == ReadyFdVariable) continue;
            yield return $"{e.Key}={e.Value}";
        }
    }
}
