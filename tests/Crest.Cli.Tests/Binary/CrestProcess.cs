// Runs the real `crest`: the Native AOT binary named by CREST_BIN (test.sh publishes it to
// out/crest), or else the JIT build copied next to this assembly by the project reference
// (`dotnet exec crest.dll`), so the same tests run both ways.
using System.Diagnostics;

namespace Crest.Cli.Tests.Binary;

internal sealed record CrestRun(int ExitCode, string Stdout, string Stderr);

internal static class CrestProcess
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    public static CrestRun Run(string workingDirectory, params string[] args) => Run(workingDirectory, null, args);

    public static CrestRun Run(string workingDirectory, IReadOnlyDictionary<string, string>? environment, params string[] args) =>
        Run(workingDirectory, environment, null, args);

    /// <summary>
    /// Runs crest from /bin/sh after <paramref name="shellRedirections"/> (such as <c>exec 7&lt;file</c>), as a runtime
    /// hands crest the fds named by --inherit-fd: .NET itself passes no fd beyond 0-2 to a child.
    /// </summary>
    public static CrestRun RunWithFds(string workingDirectory, string shellRedirections, params string[] args) =>
        Run(workingDirectory, null, shellRedirections, args);

    private static CrestRun Run(string workingDirectory, IReadOnlyDictionary<string, string>? environment, string? shellRedirections, string[] args)
    {
        using var process = Start(workingDirectory, environment, shellRedirections, args);
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(Limit))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"crest {string.Join(' ', args)} ran longer than {Limit}");
        }
        process.WaitForExit();
        return new CrestRun(process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Starts crest without waiting (stdin closed, stdout and stderr redirected): for a restore that waits for its task.</summary>
    public static Process Start(string workingDirectory, IReadOnlyDictionary<string, string>? environment, params string[] args) =>
        Start(workingDirectory, environment, null, args);

    /// <summary>Starts crest from /bin/sh after <paramref name="shellRedirections"/> without waiting (a daemon given --status-fd).</summary>
    public static Process StartWithFds(string workingDirectory, string shellRedirections, params string[] args) =>
        Start(workingDirectory, null, shellRedirections, args);

    /// <summary>
    /// Starts crest as the last arguments of <paramref name="wrapper"/> (a program that runs its arguments as a command,
    /// such as fixtures/pty_shell), stdin closed, stdout and stderr redirected.
    /// </summary>
    public static Process StartUnder(string workingDirectory, string[] wrapper, params string[] args) =>
        Start(workingDirectory, null, null, args, wrapper);

    private static Process Start(string workingDirectory, IReadOnlyDictionary<string, string>? environment, string? shellRedirections, string[] args,
        string[]? wrapper = null)
    {
        var start = new ProcessStartInfo
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        string? bin = Environment.GetEnvironmentVariable("CREST_BIN");
        if (!string.IsNullOrEmpty(bin))
        {
            start.FileName = bin;
        }
        else
        {
            start.FileName = "dotnet";
            start.ArgumentList.Add("exec");
            start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "crest.dll"));
        }
        if (shellRedirections is not null)
        {
            // sh -c 'REDIRECTIONS; exec "$0" "$@"' CREST [ARGS...]
            start.ArgumentList.Insert(0, start.FileName);
            start.ArgumentList.Insert(0, $"{shellRedirections}; exec \"$0\" \"$@\"");
            start.ArgumentList.Insert(0, "-c");
            start.FileName = "/bin/sh";
        }
        if (wrapper is not null)
        {
            start.ArgumentList.Insert(0, start.FileName);
            for (int i = wrapper.Length - 1; i >= 1; i--) start.ArgumentList.Insert(0, wrapper[i]);
            start.FileName = wrapper[0];
        }
        foreach (string arg in args) start.ArgumentList.Add(arg);
        // Nothing from the test runner's environment may change how options parse.
        start.Environment.Remove("CRIU_CONFIG_FILE");
        start.Environment.Remove("POSIXLY_CORRECT");
        if (environment is not null)
            foreach (var (name, value) in environment) start.Environment[name] = value;

        var process = Process.Start(start) ?? throw new InvalidOperationException("crest did not start");
        process.StandardInput.Close();
        return process;
    }
}

/// <summary>A fresh directory under /tmp, removed afterwards.</summary>
internal sealed class TempDirectory : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("crest-cli-").FullName;

    public string Sub(string name) => Directory.CreateDirectory(System.IO.Path.Combine(Path, name)).FullName;

    public void Dispose() => Directory.Delete(Path, recursive: true);
}
