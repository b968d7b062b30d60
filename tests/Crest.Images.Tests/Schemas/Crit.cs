// Runs the installed crit (CRIU's image tool, Debian package criu) on an image file and parses its JSON.
using System.Diagnostics;
using System.Text.Json;

namespace Crest.Images.Tests.Schemas;

internal static class Crit
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    /// <summary>`crit decode -i FILE [--pretty]`; fails the test unless crit exits 0.</summary>
    public static JsonDocument Decode(string path, bool pretty = false)
    {
        (int exitCode, string stdout, string stderr) = Run(path, pretty);
        Assert.True(exitCode == 0, $"crit decode -i {path}{(pretty ? " --pretty" : "")} exited {exitCode}: {stderr}");
        return JsonDocument.Parse(stdout);
    }

    /// <summary>`crit decode -i FILE` without judging the outcome.</summary>
    public static (int ExitCode, string Stdout, string Stderr) Run(string path, bool pretty = false)
    {
        var start = new ProcessStartInfo("crit")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("decode");
        start.ArgumentList.Add("-i");
        start.ArgumentList.Add(path);
        if (pretty)
            start.ArgumentList.Add("--pretty");

        using Process process = Process.Start(start) ?? throw new InvalidOperationException("crit did not start");
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(s_timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"crit decode -i {path} did not finish within {s_timeout}");
        }
        // Both pipes close when crit exits; the bounded wait above already covered crit's run time.
        if (!Task.WaitAll([stdout, stderr], s_timeout))
            throw new TimeoutException($"crit decode -i {path}: output not drained within {s_timeout}");
        return (process.ExitCode, stdout.Result, stderr.Result);
    }
}

/// <summary>A scratch directory removed when the test class is done.</summary>
public sealed class ScratchDirectory : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("crest-schemas-").FullName;

    public string Write(string fileName, byte[] contents)
    {
        string path = System.IO.Path.Combine(Path, fileName);
        File.WriteAllBytes(path, contents);
        return path;
    }

    public void Dispose() => Directory.Delete(Path, recursive: true);
}
