// `crest dump -t PID -D DIR` and `crest restore -D DIR -d` through the AOT binary, timed as a user
// sees them (spawn to exit), on processes holding 64 MiB, 1 GiB and 4 GiB of pseudo-random data,
// images on tmpfs; beside them, measured in the same run on the same bytes, the machine's limits
// (MachineLimits.cs). Then a tiny process (`sleep 1000`), where fixed costs are all there is.
// Every restored process checks its own memory (native/random_memory.c) before the next run.
// Usage: bench/run dump-restore [--sizes=64M,1G,4G] (4G can be left out when time is short).
using System.Globalization;
using Crest.Images;
using Crest.Images.Protos;

namespace Crest.Bench;

internal static class DumpRestoreBenchmark
{
    private const int TinyRuns = 11;
    private const double DumpTargetOfWrite = 0.70;   // 1 GiB dump >= 70% of a tmpfs write
    private const double RestoreTargetOfFault = 1.5; // 1 GiB restore >= 1.5x the fault-in rate
    private const double TinyTargetMs = 20;

    private sealed record Size(string Label, int MiB, int Runs)
    {
        public long Bytes => (long)MiB << 20;
    }

    private static readonly Size[] AllSizes = [new("64 MiB", 64, 5), new("1 GiB", 1024, 3), new("4 GiB", 4096, 1)];

    /// <summary>One dump and restore of one process; RestoreMs is null when the restore failed.</summary>
    private sealed record Round(double DumpMs, double? RestoreMs, DumpStatsEntry? Stats, long ImageBytes, RestoreStatsEntry? RestoreStats = null);

    private sealed record Outcome(List<Round> Rounds, MachineLimits? Limits, string? Failure)
    {
        public bool Dumped => Rounds.Count > 0;
        public bool Restored => Rounds.Any(r => r.RestoreMs is not null);
        public double DumpMs => Median(Rounds.Select(r => r.DumpMs));
        public double RestoreMs => Median(Rounds.Where(r => r.RestoreMs is not null).Select(r => r.RestoreMs!.Value));
    }

    public static int Run(BenchContext context)
    {
        var sizes = SelectSizes(context.Options);
        if (sizes is null) return 2;
        if (Native.prctl(Native.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) throw Native.Failure("prctl(PR_SET_CHILD_SUBREAPER)");

        string work = Path.Combine("/dev/shm", $"crest-bench-{Environment.ProcessId}");
        Directory.CreateDirectory(work);
        try
        {
            string target = Path.Combine(AppContext.BaseDirectory, "native", "random_memory");
            Console.WriteLine($"  crest {context.CrestBinary}; images in {work} ({FileSystemOf("/dev/shm")}); THP {TransparentHugePages()}");
            Console.WriteLine($"  {Environment.ProcessorCount} CPUs, load average {LoadAverage()} (figures from a busy machine are not limits)");
            Console.WriteLine($"  {"crest --version",-12} p50 {StartupMs(context, work):F1} ms (fixed cost of every crest call)");
            Console.WriteLine();
            Console.WriteLine($"  {"size",-7} {"crest dump",-22} {"crest restore -d",-22}| {"write to tmpfs",-15} {"vm_readv",-10} {"fault-in",-10} | restored memory");

            var outcomes = new Dictionary<int, Outcome>();
            bool ok = true;
            foreach (var size in sizes)
            {
                var outcome = RunSize(context, size, target, work);
                outcomes[size.MiB] = outcome;
                PrintSize(size, outcome);
                ok &= outcome.Failure is null;
            }

            var tiny = RunTiny(context, work);
            Console.WriteLine();
            string tinyDump = tiny.Dumped ? Summary(tiny.Rounds.Select(r => r.DumpMs)) : "failed";
            string tinyRestore = tiny.Restored ? Summary(tiny.Rounds.Where(r => r.RestoreMs is not null).Select(r => r.RestoreMs!.Value)) : "failed";
            Console.WriteLine($"  sleep 1000 ({tiny.Rounds.Count} runs)  dump {tinyDump}   restore {tinyRestore}");
            if (tiny.Failure is not null)
            {
                Console.WriteLine($"          FAILED: {tiny.Failure}");
                ok = false;
            }

            PrintTargets(outcomes.GetValueOrDefault(1024), tiny);
            Console.WriteLine($"  load average at the end {LoadAverage()}");
            return ok ? 0 : 1;
        }
        finally
        {
            Native.ReapOrphans();
            Directory.Delete(work, recursive: true);
        }
    }

    private static Size[]? SelectSizes(IReadOnlyList<string> options)
    {
        var chosen = AllSizes;
        foreach (var option in options)
        {
            if (!option.StartsWith("--sizes=", StringComparison.Ordinal))
            {
                Console.Error.WriteLine($"bench dump-restore: unknown option {option} (known: --sizes=64M,1G,4G)");
                return null;
            }
            var labels = option["--sizes=".Length..].Split(',');
            chosen = AllSizes.Where(s => labels.Contains(s.MiB >= 1024 ? $"{s.MiB / 1024}G" : $"{s.MiB}M")).ToArray();
            if (chosen.Length != labels.Length)
            {
                Console.Error.WriteLine($"bench dump-restore: sizes are 64M, 1G and 4G, not {option}");
                return null;
            }
        }
        return chosen;
    }

    private static Outcome RunSize(BenchContext context, Size size, string target, string work)
    {
        var rounds = new List<Round>();
        MachineLimits? limits = null;
        for (int run = 0; run < size.Runs; run++)
        {
            string output = Path.Combine(work, $"target-{size.MiB}-{run}.out");
            int pid = Spawned.StartTarget(target, [size.MiB.ToString(CultureInfo.InvariantCulture), (run + 1).ToString(CultureInfo.InvariantCulture)], output);
            try
            {
                string ready = Spawned.WaitForLine(output, "READY", pid, TimeSpan.FromMinutes(2));
                ulong address = ulong.Parse(ready.Split(' ')[2].AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                limits ??= MachineLimits.Measure(pid, address, size.Bytes, work, repeats: size.MiB <= 1024 ? 3 : 2);

                var (round, failure) = DumpAndRestore(context, pid, Path.Combine(work, $"images-{size.MiB}"), work);
                if (round is not null) rounds.Add(round);
                if (failure is not null) return new Outcome(rounds, limits, failure);

                Native.kill(pid, Native.SIGTERM); // the restored process checks its memory and exits
                int? status = WaitGone(pid, TimeSpan.FromMinutes(2));
                string verdict = Spawned.Tail(output, 1);
                if (verdict != "PASS")
                    return new Outcome(rounds, limits, $"restored process {pid} {(status is { } s ? Native.Describe(s) : "ended")}: {verdict}");
            }
            finally
            {
                Spawned.Kill(pid);
                Native.ReapOrphans();
            }
        }
        return new Outcome(rounds, limits, null);
    }

    /// <summary>
    /// Dumps <paramref name="pid"/> into a fresh <paramref name="images"/>, checks it is gone, restores
    /// it, checks it runs. The round is there once the dump worked, the failure once anything did not.
    /// </summary>
    private static (Round? Round, string? Failure) DumpAndRestore(BenchContext context, int pid, string images, string work)
    {
        if (Directory.Exists(images)) Directory.Delete(images, recursive: true);
        Directory.CreateDirectory(images);
        try
        {
            string dumpOutput = Path.Combine(work, "crest-dump.out");
            File.Delete(dumpOutput);
            var (dumpMs, dumpStatus) = Spawned.Run(context.CrestBinary, ["dump", "-t", pid.ToString(CultureInfo.InvariantCulture), "-D", images], dumpOutput);
            if (dumpStatus != 0)
                return (null, $"crest dump {Native.Describe(dumpStatus)}: {Spawned.Tail(dumpOutput)}");
            if (WaitGone(pid, TimeSpan.FromSeconds(10)) is null)
                return (null, $"process {pid} still runs after crest dump");

            var stats = ReadStats(images, "stats-dump")?.Dump;
            long imageBytes = Directory.GetFiles(images).Sum(f => new FileInfo(f).Length);

            string restoreOutput = Path.Combine(work, "crest-restore.out");
            File.Delete(restoreOutput);
            var (restoreMs, restoreStatus) = Spawned.Run(context.CrestBinary, ["restore", "-D", images, "-d"], restoreOutput);
            var dumped = new Round(dumpMs, null, stats, imageBytes);
            if (restoreStatus != 0)
                return (dumped, $"crest restore {Native.Describe(restoreStatus)}: {Spawned.Tail(restoreOutput)}");
            if (!Spawned.IsAlive(pid))
                return (dumped, $"crest restore exited 0 but process {pid} does not run");
            return (dumped with { RestoreMs = restoreMs, RestoreStats = ReadStats(images, "stats-restore")?.Restore }, null);
        }
        finally
        {
            Directory.Delete(images, recursive: true);
        }
    }

    private static Outcome RunTiny(BenchContext context, string work)
    {
        var rounds = new List<Round>();
        for (int run = 0; run < TinyRuns; run++)
        {
            int pid = Spawned.StartTarget("/bin/sleep", ["1000"], Path.Combine(work, "sleep.out"));
            try
            {
                WaitForExec(pid, "sleep");
                var (round, failure) = DumpAndRestore(context, pid, Path.Combine(work, "images-sleep"), work);
                if (round is not null) rounds.Add(round);
                if (failure is not null) return new Outcome(rounds, null, failure);
            }
            finally
            {
                Spawned.Kill(pid);
                Native.ReapOrphans();
            }
        }
        return new Outcome(rounds, null, null);
    }

    /// <summary>
    /// Waits for a process to end: reaped when it is our child (the one we started, or a restored
    /// one handed to us as subreaper); otherwise until its pid is gone. Null if it still runs.
    /// </summary>
    internal static int? WaitGone(int pid, TimeSpan timeout)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            unsafe
            {
                int status;
                int rc = Native.waitpid(pid, &status, Native.WNOHANG);
                if (rc == pid) return status;
                if (rc < 0 && Native.Errno == Native.ECHILD && !Spawned.IsAlive(pid)) return -1;
            }
            Thread.Sleep(1);
        }
        return null;
    }

    private static void WaitForExec(int pid, string comm)
    {
        for (int i = 0; i < 2000; i++)
        {
            try
            {
                string stat = File.ReadAllText($"/proc/{pid}/stat");
                if (stat.Contains($"({comm}) S ", StringComparison.Ordinal)) return; // exec'd and asleep
            }
            catch (IOException) { }
            Thread.Sleep(1);
        }
        throw new TimeoutException($"process {pid} did not become {comm}");
    }

    /// <summary>What crest itself says it spent (stats-dump, stats-restore: CRIU's statistics, microseconds).</summary>
    internal static StatsEntry? ReadStats(string images, string name)
    {
        string path = Path.Combine(images, name);
        if (!File.Exists(path)) return null;
        using var reader = ImageReader.Open(path, ImageKinds.Stats);
        return reader.ReadEntry(StatsEntry.Parser);
    }

    private static double StartupMs(BenchContext context, string work)
    {
        var times = new List<double>();
        for (int i = 0; i < 25; i++)
        {
            var (ms, status) = Spawned.Run(context.CrestBinary, ["--version"], Path.Combine(work, "version.out"));
            if (status != 0) throw new InvalidOperationException($"crest --version {Native.Describe(status)}");
            if (i >= 5) times.Add(ms);
        }
        return Median(times);
    }

    private static void PrintSize(Size size, Outcome o)
    {
        string Rate(double ms) => $"{ms,7:F1} ms {size.Bytes / (ms / 1000) / 1e9,5:F2} GB/s";
        string Limit(double seconds) => $"{size.Bytes / seconds / 1e9,5:F2} GB/s";
        string dump = o.Dumped ? Rate(o.DumpMs) : "failed";
        string restore = o.Restored ? Rate(o.RestoreMs) : "failed";
        string limits = o.Limits is { } l ? $"{Limit(l.TmpfsWriteSeconds),-15} {Limit(l.VmReadvSeconds),-10} {Limit(l.FaultInSeconds),-10}" : $"{"-",-15} {"-",-10} {"-",-10}";
        string memory = o.Failure is null ? $"intact ({o.Rounds.Count}/{size.Runs} runs, median)" : "-";
        Console.WriteLine($"  {size.Label,-7} {dump,-22} {restore,-22}| {limits} | {memory}");
        if (o.Rounds.Count > 0 && o.Rounds[^1].Stats is { } s)
            Console.WriteLine($"          dump stats: freezing {s.FreezingTime / 1000.0:F1} ms, frozen {s.FrozenTime / 1000.0:F1} ms, memdump {s.MemdumpTime / 1000.0:F1} ms, memwrite {s.MemwriteTime / 1000.0:F1} ms, {s.PagesWritten} pages written of {s.PagesScanned} scanned; images {o.Rounds[^1].ImageBytes / 1048576.0:F1} MiB");
        if (o.Rounds.LastOrDefault(r => r.RestoreStats is not null)?.RestoreStats is { } r)
            Console.WriteLine($"          restore stats: forking {r.ForkingTime / 1000.0:F1} ms, restore {r.RestoreTime / 1000.0:F1} ms, {r.PagesRestored} pages restored");
        if (o.Failure is not null) Console.WriteLine($"          FAILED: {o.Failure}");
    }

    private static void PrintTargets(Outcome? gib, Outcome tiny)
    {
        Console.WriteLine();
        Console.WriteLine("  targets");
        if (gib is { Limits: { } limits, Dumped: true })
        {
            double dumpRate = (1L << 30) / (gib.DumpMs / 1000), writeRate = (1L << 30) / limits.TmpfsWriteSeconds;
            Console.WriteLine($"    1 GiB dump    >= {DumpTargetOfWrite:P0} of tmpfs write : {dumpRate / 1e9:F2} GB/s = {dumpRate / writeRate:P0} of {writeRate / 1e9:F2} GB/s   {Verdict(dumpRate >= DumpTargetOfWrite * writeRate)}");
        }
        else
        {
            Console.WriteLine("    1 GiB dump: not measured");
        }
        if (gib is { Limits: { } faults, Restored: true })
        {
            double restoreRate = (1L << 30) / (gib.RestoreMs / 1000), faultRate = (1L << 30) / faults.FaultInSeconds;
            Console.WriteLine($"    1 GiB restore >= {RestoreTargetOfFault:F1}x fault-in      : {restoreRate / 1e9:F2} GB/s = {restoreRate / faultRate:F2}x {faultRate / 1e9:F2} GB/s   {Verdict(restoreRate >= RestoreTargetOfFault * faultRate)}");
        }
        else
        {
            Console.WriteLine("    1 GiB restore: not measured");
        }
        if (tiny.Dumped)
            Console.WriteLine($"    sleep 1000 dump    <= {TinyTargetMs} ms        : p50 {tiny.DumpMs:F1} ms   {Verdict(tiny.DumpMs <= TinyTargetMs)}");
        if (tiny.Restored)
            Console.WriteLine($"    sleep 1000 restore <= {TinyTargetMs} ms        : p50 {tiny.RestoreMs:F1} ms   {Verdict(tiny.RestoreMs <= TinyTargetMs)}");
    }

    private static string Verdict(bool met) => met ? "met" : "MISSED";

    private static string Summary(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        return $"p50 {BenchContext.Percentile(sorted, 50):F1} ms  p90 {BenchContext.Percentile(sorted, 90):F1} ms  min {sorted[0]:F1} ms";
    }

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count == 0 ? double.NaN : BenchContext.Percentile(sorted, 50);
    }

    private static string FileSystemOf(string mountPoint)
    {
        foreach (var line in File.ReadAllLines("/proc/mounts"))
        {
            var fields = line.Split(' ');
            if (fields.Length > 2 && fields[1] == mountPoint) return fields[2];
        }
        return "unknown file system";
    }

    private static string LoadAverage() => string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));

    private static string TransparentHugePages()
    {
        const string path = "/sys/kernel/mm/transparent_hugepage/enabled";
        if (!File.Exists(path)) return "absent";
        string text = File.ReadAllText(path);
        int open = text.IndexOf('['), close = text.IndexOf(']');
        return open >= 0 && close > open ? text[(open + 1)..close] : text.Trim();
    }
}
