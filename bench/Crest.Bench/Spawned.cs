// Starting the programs a benchmark runs — crest itself and the processes it checkpoints — with
// posix_spawn (Crest.Kernel's ChildProcess) and reaping them with a blocking waitpid, so that a
// wall time is the child's whole life and nothing else (no polling interval in it).
using System.Diagnostics;
using Crest.Kernel.Processes;

namespace Crest.Bench;

internal static class Spawned
{
    /// <summary>Runs a program to its end: wall time from spawn to reaped, the raw wait status.</summary>
    public static (double Milliseconds, int Status) Run(string path, IReadOnlyList<string> args, string outputFile)
    {
        var options = new SpawnOptions();
        options.FileActions.Add(new SpawnFileAction.Open(0, "/dev/null", SpawnFileAction.O_RDONLY));
        options.FileActions.Add(new SpawnFileAction.Open(1, outputFile,
            SpawnFileAction.O_WRONLY | SpawnFileAction.O_CREAT | SpawnFileAction.O_APPEND));
        options.FileActions.Add(new SpawnFileAction.Dup2(1, 2));
        long start = Stopwatch.GetTimestamp();
        var child = ChildProcess.Spawn(path, [path, .. args], options);
        int status = Native.WaitFor(child.Pid);
        return (Stopwatch.GetElapsedTime(start).TotalMilliseconds, status);
    }

    /// <summary>Starts a program that runs on while the benchmark goes on (stdin /dev/null, output to
    /// <paramref name="outputFile"/>); returns its pid, a child of ours to reap.</summary>
    public static int Start(string path, IReadOnlyList<string> args, string outputFile)
    {
        var options = new SpawnOptions();
        options.FileActions.Add(new SpawnFileAction.Open(0, "/dev/null", SpawnFileAction.O_RDONLY));
        options.FileActions.Add(new SpawnFileAction.Open(1, outputFile,
            SpawnFileAction.O_WRONLY | SpawnFileAction.O_CREAT | SpawnFileAction.O_APPEND));
        options.FileActions.Add(new SpawnFileAction.Dup2(1, 2));
        return ChildProcess.Spawn(path, [path, .. args], options).Pid;
    }

    /// <summary>
    /// Starts a process to checkpoint the way a harness does: its own session, stdin /dev/null,
    /// stdout and stderr appended to <paramref name="outputFile"/>, no other fd (whatever `dotnet run`
    /// left open in this process is not the target's). Returns its pid; it is our child.
    /// </summary>
    public static int StartTarget(string path, IReadOnlyList<string> args, string outputFile)
    {
        var options = new SpawnOptions { NewSession = true };
        for (int fd = 3; fd < 256; fd++) options.FileActions.Add(new SpawnFileAction.Close(fd)); // glibc ignores EBADF here
        options.FileActions.Add(new SpawnFileAction.Open(0, "/dev/null", SpawnFileAction.O_RDONLY));
        options.FileActions.Add(new SpawnFileAction.Open(1, outputFile,
            SpawnFileAction.O_WRONLY | SpawnFileAction.O_CREAT | SpawnFileAction.O_APPEND));
        options.FileActions.Add(new SpawnFileAction.Dup2(1, 2));
        return ChildProcess.Spawn(path, [path, .. args], options).Pid;
    }

    /// <summary>Waits until <paramref name="file"/> holds a line starting with <paramref name="prefix"/>; returns that line.</summary>
    public static string WaitForLine(string file, string prefix, int pid, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            if (File.Exists(file))
                foreach (var line in File.ReadAllLines(file))
                    if (line.StartsWith(prefix, StringComparison.Ordinal)) return line;
            if (Native.TryReap(pid) is { } status)
                throw new InvalidOperationException($"process {pid} {Native.Describe(status)} before printing {prefix}: {Tail(file)}");
            if (clock.Elapsed > timeout)
                throw new TimeoutException($"process {pid} did not print {prefix} within {timeout.TotalSeconds} s: {Tail(file)}");
            Thread.Sleep(5);
        }
    }

    /// <summary>Waits at most <paramref name="timeout"/> for a child to end; null if it did not.</summary>
    public static int? WaitForExit(int pid, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (Native.TryReap(pid) is { } status) return status;
            Thread.Sleep(2);
        }
        return null;
    }

    /// <summary>SIGKILL and reap, for cleanup; a pid that is gone or not ours is left alone.</summary>
    public static void Kill(int pid)
    {
        if (Native.kill(pid, Native.SIGKILL) != 0) return;
        WaitForExit(pid, TimeSpan.FromSeconds(5));
    }

    public static bool IsAlive(int pid) => Native.kill(pid, 0) == 0;

    /// <summary>The last lines of a file, for error messages.</summary>
    public static string Tail(string file, int lines = 5)
    {
        if (!File.Exists(file)) return "(no output)";
        var all = File.ReadAllLines(file);
        return all.Length == 0 ? "(no output)" : string.Join(" | ", all.TakeLast(lines));
    }
}
