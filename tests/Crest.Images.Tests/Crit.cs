// Runs Debian's crit (CRIU 3.17's image tool) as the external judge of our images, bounded by a timeout.
using System.Diagnostics;

namespace Crest.Images.Tests;

internal static class Crit
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static Result Run(params string[] arguments)
    {
        var start = new ProcessStartInfo("crit")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in arguments)
            start.ArgumentList.Add(argument);
        using Process process = Process.Start(start) ?? throw new InvalidOperationException("cannot start crit");
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(Timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"crit {string.Join(' ', arguments)} did not finish in {Timeout}");
        }
        process.WaitForExit();
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }

    public static string Decode(string image, bool pretty)
    {
        Result result = pretty ? Run("decode", "-i", image, "--pretty") : Run("decode", "-i", image);
        Assert.True(result.ExitCode == 0, $"crit decode {image} failed ({result.ExitCode}): {result.Stderr}");
        return result.Stdout;
    }

    public static byte[] Encode(string json, string scratchDirectory)
    {
        string output = Path.Combine(scratchDirectory, Path.GetFileNameWithoutExtension(json) + ".crit.img");
        Result result = Run("encode", "-i", json, "-o", output);
        Assert.True(result.ExitCode == 0, $"crit encode {json} failed ({result.ExitCode}): {result.Stderr}");
        return File.ReadAllBytes(output);
    }
}
