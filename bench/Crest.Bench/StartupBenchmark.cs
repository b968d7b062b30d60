// Start-up time of the Native AOT binary: `crest --version`, spawned and waited for, against
// spawning /bin/true the same way (the cost of fork+exec+wait on this machine).
using System.Diagnostics;

namespace Crest.Bench;

internal static class StartupBenchmark
{
    private const int Runs = 200;

    public static int Run(BenchContext context)
    {
        var baseline = Measure("/bin/true", []);
        var crest = Measure(context.CrestBinary, ["--version"]);
        Print("/bin/true", baseline);
        Print("crest --version", crest);
        Console.WriteLine($"  crest start-up over exec baseline: {BenchContext.Percentile(crest, 50) - BenchContext.Percentile(baseline, 50):F2} ms (p50)");
        return 0;
    }

    private static List<double> Measure(string file, string[] args)
    {
        var times = new List<double>(Runs);
        for (int i = 0; i < Runs + 10; i++)
        {
            var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, UseShellExecute = false };
            foreach (var a in args) info.ArgumentList.Add(a);
            long start = Stopwatch.GetTimestamp();
            using var p = Process.Start(info)!;
            p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            double ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            if (p.ExitCode != 0) throw new InvalidOperationException($"{file} exited {p.ExitCode}");
            if (i >= 10) times.Add(ms); // the first runs warm the page cache
        }
        times.Sort();
        return times;
    }

    private static void Print(string name, List<double> sorted) =>
        Console.WriteLine($"  {name,-18} p50 {BenchContext.Percentile(sorted, 50):F2} ms  p90 {BenchContext.Percentile(sorted, 90):F2} ms  min {sorted[0]:F2} ms  ({sorted.Count} runs)");
}
