// Fixtures started the way a harness starts them (setsid, orphaned, output to a file), for the end-to-end tests that
// move them between network namespaces (RemoteImagesTests, MigrateTests).
using System.Diagnostics;
using System.Runtime.InteropServices;
using Crest.Kernel.Processes;

namespace Crest.Cli.Tests.EndToEnd;

internal static partial class OrphanedFixtures
{
    /// <summary>Starts a fixture as its own session's leader, orphaned (as a harness starts it); returns its pid.</summary>
    public static int Start(string outputDir, List<int> started, TimeSpan limit, string name, params string[] args)
    {
        string path = Path.Combine(AppContext.BaseDirectory, "fixtures", name);
        string output = Path.Combine(outputDir, $"{name}.out");
        using (var launcher = ChildProcess.Spawn("/bin/sh", ["sh", "-c", $"setsid {path} {string.Join(' ', args)} >{output} 2>&1 </dev/null &"]))
            launcher.WaitForExit(limit);
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < limit)
        {
            string text = File.Exists(output) ? File.ReadAllText(output) : "";
            int at = text.IndexOf("READY pid=", StringComparison.Ordinal);
            if (at >= 0)
            {
                int end = at + 10;
                while (end < text.Length && char.IsAsciiDigit(text[end])) end++;
                if (end < text.Length)
                {
                    int pid = int.Parse(text.AsSpan(at + 10, end - at - 10));
                    started.Add(pid);
                    return pid;
                }
            }
            Thread.Sleep(10);
        }
        throw new TimeoutException($"{name} printed no READY line: {File.ReadAllText(output)}");
    }

    /// <summary>SIGUSR1: the fixture checks itself; its verdict line.</summary>
    public static string Verify(string outputDir, TimeSpan limit, string name, int pid)
    {
        string output = Path.Combine(outputDir, $"{name}.out");
        Assert.Equal(0, kill(pid, 10));
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < limit)
        {
            var verdict = File.ReadAllLines(output).FirstOrDefault(l => l.StartsWith("PASS") || l.StartsWith("FAIL"));
            if (verdict is not null) return verdict;
            Thread.Sleep(10);
        }
        return $"no verdict: {File.ReadAllText(output)}";
    }

    /// <summary>A field of /proc/PID/status, as the kernel prints it.</summary>
    public static string StatusField(int pid, string name) =>
        File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith(name + ":", StringComparison.Ordinal))[(name.Length + 1)..].Trim();

    /// <summary>After a dump that failed: the process runs on, and nobody traces it any more.</summary>
    public static void AssertRunsUntraced(int pid)
    {
        Assert.True(Exists(pid), $"{pid} is gone");
        Assert.Equal("0", StatusField(pid, "TracerPid"));
    }

    public static bool Exists(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[stat.LastIndexOf(')') + 2] is not ('Z' or 'X');
        }
        catch (IOException)
        {
            return false;
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);
}
