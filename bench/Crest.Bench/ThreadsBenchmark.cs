// `crest dump` and `crest restore -d` of a process with 0, 16 and 256 threads blocked in futex waits
// (native/waiting_threads.c), timed as a user sees them (spawn to exit), images on tmpfs. What the threads
// cost is the difference to the process without threads, per thread; Crest's own freezing and frozen
// times (stats-dump) are printed beside. Every restored process checks that each thread kept its TID.
// Usage: bench/run threads
using System.Globalization;
using Crest.Images;
using Crest.Images.Protos;

namespace Crest.Bench;

internal static class ThreadsBenchmark
{
    private const int Runs = 5;
    private static readonly int[] ThreadCounts = [0, 16, 256];

    public static int Run(BenchContext context)
    {
        if (Native.prctl(Native.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) throw Native.Failure("prctl(PR_SET_CHILD_SUBREAPER)");
        string work = Path.Combine("/dev/shm", $"crest-bench-threads-{Environment.ProcessId}");
        Directory.CreateDirectory(work);
        string target = Path.Combine(AppContext.BaseDirectory, "native", "waiting_threads");
        try
        {
            Console.WriteLine($"  {Environment.ProcessorCount} CPUs, load average {LoadAverage()}; {Runs} runs each, p50 (min)");
            Console.WriteLine($"  {"threads",-8} {"crest dump",-20} {"crest restore -d",-20} {"freezing",-10} {"frozen",-10}");
            var medians = new Dictionary<int, (double Dump, double Restore)>();
            foreach (int count in ThreadCounts)
            {
                var dumps = new List<double>();
                var restores = new List<double>();
                var freezing = new List<double>();
                var frozen = new List<double>();
                for (int run = 0; run < Runs; run++)
                {
                    string failure = OneRound(context, target, count, work, dumps, restores, freezing, frozen);
                    if (failure.Length > 0)
                    {
                        Console.WriteLine($"  {count,-8} FAILED: {failure}");
                        return 1;
                    }
                }
                medians[count] = (Median(dumps), Median(restores));
                Console.WriteLine($"  {count,-8} {Cell(dumps),-20} {Cell(restores),-20} {Median(freezing),6:F1} ms  {Median(frozen),6:F1} ms");
            }
            var none = medians[0];
            foreach (int count in ThreadCounts.Where(c => c > 0))
            {
                var m = medians[count];
                Console.WriteLine($"  per thread ({count}): dump {(m.Dump - none.Dump) * 1000 / count:F0} us, restore {(m.Restore - none.Restore) * 1000 / count:F0} us");
            }
            Console.WriteLine($"  load average at the end {LoadAverage()}");
            return 0;
        }
        finally
        {
            Native.ReapOrphans();
            Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>Start, dump, restore and verify one process; an empty string when all went well.</summary>
    private static string OneRound(BenchContext context, string target, int count, string work,
        List<double> dumps, List<double> restores, List<double> freezing, List<double> frozen)
    {
        string output = Path.Combine(work, $"threads-{count}.out");
        string images = Path.Combine(work, $"images-{count}");
        Directory.CreateDirectory(images);
        int pid = Spawned.StartTarget(target, [count.ToString(CultureInfo.InvariantCulture)], output);
        try
        {
            Spawned.WaitForLine(output, "READY", pid, TimeSpan.FromMinutes(1));
            var (dumpMs, dumpStatus) = Spawned.Run(context.CrestBinary, ["dump", "-t", pid.ToString(CultureInfo.InvariantCulture), "-D", images], Path.Combine(work, "dump.out"));
            if (dumpStatus != 0) return $"crest dump {Native.Describe(dumpStatus)}: {Spawned.Tail(Path.Combine(work, "dump.out"))}";
            Native.WaitFor(pid);
            if (Stats(images, "stats-dump")?.Dump is { } s)
            {
                freezing.Add(s.FreezingTime / 1000.0);
                frozen.Add(s.FrozenTime / 1000.0);
            }
            var (restoreMs, restoreStatus) = Spawned.Run(context.CrestBinary, ["restore", "-D", images, "-d"], Path.Combine(work, "restore.out"));
            if (restoreStatus != 0) return $"crest restore {Native.Describe(restoreStatus)}: {Spawned.Tail(Path.Combine(work, "restore.out"))}";
            int threads = Directory.GetDirectories($"/proc/{pid}/task").Length;
            if (threads != count + 1) return $"restored process has {threads} threads, not {count + 1}";
            Native.kill(pid, Native.SIGTERM);
            Spawned.WaitForExit(pid, TimeSpan.FromSeconds(30));
            string verdict = Spawned.Tail(output, 1);
            if (verdict != "PASS") return $"restored process: {verdict}";
            dumps.Add(dumpMs);
            restores.Add(restoreMs);
            return "";
        }
        finally
        {
            Spawned.Kill(pid);
            Native.ReapOrphans();
            Directory.Delete(images, recursive: true);
        }
    }

    private static StatsEntry? Stats(string images, string name)
    {
        string path = Path.Combine(images, name);
        if (!File.Exists(path)) return null;
        using var reader = ImageReader.Open(path, ImageKinds.Stats);
        return reader.ReadEntry(StatsEntry.Parser);
    }

    private static string Cell(List<double> values) => $"{Median(values),7:F1} ms ({values.Min(),6:F1})";

    private static double Median(List<double> values)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToList();
        return BenchContext.Percentile(sorted, 50);
    }

    private static string LoadAverage() => string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
}
