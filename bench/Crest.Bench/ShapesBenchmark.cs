// `crest dump` and `crest restore -d` of processes whose cost is in their shape rather than their bytes
// (issue 4): a tree of 50 processes, 256 threads in one process, 1000 pipes with data in flight. The tree
// is set beside one process holding the same total memory: its dump must not take more than 10x as long.
// Every restored process checks itself (native/process_tree.c, many_threads.c, many_pipes.c) on SIGTERM.
// Usage: bench/run shapes
using System.Globalization;

namespace Crest.Bench;

internal static class ShapesBenchmark
{
    private const int Runs = 3;
    private const double TreeTargetRatio = 10;

    /// <summary>A target program; Processes is how many READY and PASS lines it prints.</summary>
    private sealed record Shape(string Label, string Program, string[] Args, int Processes);

    private sealed record Outcome(List<double> DumpMs, List<double> RestoreMs, string? Failure);

    public static int Run(BenchContext context)
    {
        if (Native.prctl(Native.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) throw Native.Failure("prctl(PR_SET_CHILD_SUBREAPER)");
        string work = Path.Combine("/dev/shm", $"crest-bench-shapes-{Environment.ProcessId}");
        Directory.CreateDirectory(work);
        try
        {
            Shape one = new("1 process, 64 MiB", "random_memory", ["64", "1"], 1);
            Shape tree = new("50-process tree, 64 MiB", "process_tree", ["50", "64"], 50);
            Shape[] shapes = [one, tree, new("256 threads", "many_threads", ["256"], 1), new("1000 pipes", "many_pipes", ["1000"], 1)];
            Console.WriteLine($"  crest {context.CrestBinary}; images in {work}; {Runs} runs each, median; load average {LoadAverage()}");
            Console.WriteLine();
            Console.WriteLine($"  {"shape",-26} {"crest dump",-12} {"crest restore -d",-18} restored processes");
            var outcomes = new Dictionary<Shape, Outcome>();
            bool ok = true;
            foreach (var shape in shapes)
            {
                var outcome = RunShape(context, shape, work);
                outcomes[shape] = outcome;
                string dump = outcome.DumpMs.Count > 0 ? $"{Median(outcome.DumpMs),7:F1} ms" : "failed";
                string restore = outcome.RestoreMs.Count > 0 ? $"{Median(outcome.RestoreMs),7:F1} ms" : "failed";
                string verdict = outcome.Failure is null ? $"checked themselves ({outcome.RestoreMs.Count}/{Runs} runs)" : "-";
                Console.WriteLine($"  {shape.Label,-26} {dump,-12} {restore,-18} {verdict}");
                if (outcome.Failure is not null)
                {
                    Console.WriteLine($"          FAILED: {outcome.Failure}");
                    ok = false;
                }
            }
            Console.WriteLine();
            Console.WriteLine("  targets");
            if (outcomes[one].DumpMs.Count > 0 && outcomes[tree].DumpMs.Count > 0)
            {
                double ratio = Median(outcomes[tree].DumpMs) / Median(outcomes[one].DumpMs);
                Console.WriteLine($"    50-process tree dump <= {TreeTargetRatio:F0}x one process of the same memory: {ratio:F1}x   {(ratio <= TreeTargetRatio ? "met" : "MISSED")}");
            }
            else
            {
                Console.WriteLine("    50-process tree dump: not measured");
            }
            Console.WriteLine($"  load average at the end {LoadAverage()}");
            return ok ? 0 : 1;
        }
        finally
        {
            Native.ReapOrphans();
            Directory.Delete(work, recursive: true);
        }
    }

    private static Outcome RunShape(BenchContext context, Shape shape, string work)
    {
        var dumps = new List<double>();
        var restores = new List<double>();
        string program = Path.Combine(AppContext.BaseDirectory, "native", shape.Program);
        for (int run = 0; run < Runs; run++)
        {
            string output = Path.Combine(work, $"{shape.Program}-{run}.out");
            int root = Spawned.StartTarget(program, shape.Args, output);
            var pids = new List<int> { root };
            try
            {
                var ready = WaitForLines(output, "READY", shape.Processes, root, TimeSpan.FromMinutes(2));
                if (shape.Processes > 1)
                    pids = ready.Select(l => int.Parse(l.Split(' ')[1], CultureInfo.InvariantCulture)).ToList();

                string images = Path.Combine(work, "images");
                if (Directory.Exists(images)) Directory.Delete(images, recursive: true);
                Directory.CreateDirectory(images);
                string log = Path.Combine(work, "crest.out");
                File.Delete(log);
                var (dumpMs, dumpStatus) = Spawned.Run(context.CrestBinary, ["dump", "-t", root.ToString(CultureInfo.InvariantCulture), "-D", images], log);
                if (dumpStatus != 0) return new Outcome(dumps, restores, $"crest dump {Native.Describe(dumpStatus)}: {Spawned.Tail(log)}");
                dumps.Add(dumpMs);
                if (!AllGone(pids, TimeSpan.FromSeconds(10))) return new Outcome(dumps, restores, "processes still run after crest dump");

                var (restoreMs, restoreStatus) = Spawned.Run(context.CrestBinary, ["restore", "-D", images, "-d"], log);
                if (restoreStatus != 0) return new Outcome(dumps, restores, $"crest restore {Native.Describe(restoreStatus)}: {Spawned.Tail(log)}");
                restores.Add(restoreMs);
                foreach (int pid in pids) Native.kill(pid, Native.SIGTERM);
                var passed = WaitForLines(output, "PASS", shape.Processes, -1, TimeSpan.FromMinutes(1));
                Directory.Delete(images, recursive: true);
            }
            catch (Exception e) when (e is TimeoutException or InvalidOperationException)
            {
                return new Outcome(dumps, restores, e.Message);
            }
            finally
            {
                foreach (int pid in pids) Native.kill(pid, Native.SIGKILL);
                AllGone(pids, TimeSpan.FromSeconds(5));
            }
        }
        return new Outcome(dumps, restores, null);
    }

    /// <summary>Waits for <paramref name="count"/> lines starting with <paramref name="prefix"/> (a FAIL line ends the wait).</summary>
    private static List<string> WaitForLines(string file, string prefix, int count, int pid, TimeSpan timeout)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            var lines = File.Exists(file) ? File.ReadAllLines(file) : [];
            var found = lines.Where(l => l.StartsWith(prefix, StringComparison.Ordinal)).ToList();
            if (found.Count >= count) return found;
            if (lines.FirstOrDefault(l => l.StartsWith("FAIL", StringComparison.Ordinal)) is { } failed)
                throw new InvalidOperationException(failed);
            if (pid > 0 && Native.TryReap(pid) is { } status)
                throw new InvalidOperationException($"process {pid} {Native.Describe(status)} before {count} {prefix} lines: {Spawned.Tail(file)}");
            if (clock.Elapsed > timeout)
                throw new TimeoutException($"{found.Count} of {count} {prefix} lines within {timeout.TotalSeconds} s: {Spawned.Tail(file)}");
            Thread.Sleep(5);
        }
    }

    /// <summary>Reaps what ends (we are the subreaper) until none of <paramref name="pids"/> exists.</summary>
    private static bool AllGone(List<int> pids, TimeSpan timeout)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            Native.ReapOrphans();
            if (pids.All(p => !Spawned.IsAlive(p))) return true;
            Thread.Sleep(1);
        }
        return false;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return BenchContext.Percentile(sorted, 50);
    }

    private static string LoadAverage() => string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
}
