// The schemas and magic table of the installed crit, read once per test run by crit_schema_dump.py.
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text.Json;

namespace Crest.Images.Tests.Schemas;

internal static class CritSchemas
{
    private static readonly Lazy<JsonDocument> s_document = new(Load);

    /// <summary>{ "messages": {name: [field...]}, "enums": {name: {value: number}}, "magics": {name: number} }.</summary>
    public static JsonDocument Document => s_document.Value;

    private static JsonDocument Load()
    {
        string script = Path.Combine(SourceDirectory(), "crit_schema_dump.py");
        var start = new ProcessStartInfo("/usr/bin/python3")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(script);
        using var process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException("crit_schema_dump.py did not finish within 60 s");
        }
        if (!Task.WaitAll([stdout, stderr], TimeSpan.FromSeconds(60)))
            throw new TimeoutException("crit_schema_dump.py: output not drained");
        Assert.True(process.ExitCode == 0, $"crit_schema_dump.py exited {process.ExitCode}: {stderr.Result}");
        return JsonDocument.Parse(stdout.Result);
    }

    private static string SourceDirectory([CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;
}
