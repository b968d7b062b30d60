// `crit decode -i FILE` (Debian's criu package), the external check that an image is CRIU's format. Run as
// our own child through posix_spawn: this assembly traces, so System.Diagnostics.Process must not be used.
using System.Text.Json;
using Crest.Kernel.Processes;

namespace Crest.Engine.Tests.Dump;

internal static class Crit
{
    public static string Path { get; } = new[] { "/usr/bin/crit", "/usr/local/bin/crit", "/usr/sbin/crit" }.FirstOrDefault(File.Exists)
        ?? throw new InvalidOperationException("crit is not installed: run scripts/deps.sh");

    /// <summary>Decode <paramref name="image"/>; fails the test with crit's output if crit refuses it.</summary>
    public static JsonDocument Decode(string image)
    {
        string output = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"crest-crit-{Guid.NewGuid():N}.out");
        string errors = output + ".err";
        try
        {
            var options = new SpawnOptions();
            options.FileActions.Add(new SpawnFileAction.Open(0, "/dev/null", SpawnFileAction.O_RDONLY));
            options.FileActions.Add(new SpawnFileAction.Open(1, output, SpawnFileAction.O_WRONLY | SpawnFileAction.O_CREAT | SpawnFileAction.O_TRUNC));
            options.FileActions.Add(new SpawnFileAction.Open(2, errors, SpawnFileAction.O_WRONLY | SpawnFileAction.O_CREAT | SpawnFileAction.O_TRUNC));
            using var crit = ChildProcess.Spawn(Path, [Path, "decode", "-i", image], options);
            var status = crit.WaitForExit(TimeSpan.FromSeconds(60));
            string text = File.ReadAllText(output);
            if (!status.Exited || status.ExitCode != 0)
                Assert.Fail($"crit decode -i {image}: {status}\n{File.ReadAllText(errors)}");
            return JsonDocument.Parse(text);
        }
        finally
        {
            File.Delete(output);
            File.Delete(errors);
        }
    }

    /// <summary>Decode every image in <paramref name="dir"/> but the raw pages.</summary>
    public static void DecodeAll(string dir)
    {
        foreach (string image in Directory.GetFiles(dir, "*.img"))
            if (!System.IO.Path.GetFileName(image).StartsWith("pages-", StringComparison.Ordinal)) Decode(image).Dispose();
    }
}
