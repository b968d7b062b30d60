// migrate: `crest migrate` of a process that keeps dirtying its memory (native/dirtying_memory.c, 1 GiB rewriting
// 1% of its pages a second = 10 MiB/s by default) to an `image-cache --allow-restore` over loopback, both the AOT
// binary. Prints each round (pages dirty, bytes of images, bytes on the wire, time), the downtime (final freeze
// to the tree running at the destination: final dump + restore there), and the restored process's own check.
// Source and destination share this machine's pid namespace, so the restore waits for the source's pid to be
// reaped (this process is the target's parent and reaps it at once). Target: downtime < 300 ms.
// Options: --mib=1024, --permille=10, --compress=lz4, --max-rounds=8
using System.Globalization;
using System.Text.Json;

namespace Crest.Bench;

internal static class MigrateBenchmark
{
    public static int Run(BenchContext context)
    {
        int mib = Option(context, "--mib=", 1024), permille = Option(context, "--permille=", 10), maxRounds = Option(context, "--max-rounds=", 8);
        string codec = context.Options.FirstOrDefault(o => o.StartsWith("--compress=", StringComparison.Ordinal))?["--compress=".Length..] ?? "lz4";
        if (Native.prctl(Native.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) throw Native.Failure("prctl(PR_SET_CHILD_SUBREAPER)");
        Console.WriteLine($"load: {File.ReadAllText("/proc/loadavg").Trim()} ({Environment.ProcessorCount} cpus)");
        string work = Path.Combine("/dev/shm", $"crest-bench-migrate-{Environment.ProcessId}");
        string source = Path.Combine(work, "source"), destination = Path.Combine(work, "destination");
        Directory.CreateDirectory(source);
        Directory.CreateDirectory(destination);
        int port = 40000 + Environment.ProcessId % 20000;
        string output = Path.Combine(work, "target.out");
        int pid = Spawned.StartTarget(Path.Combine(AppContext.BaseDirectory, "native", "dirtying_memory"),
            [mib.ToString(CultureInfo.InvariantCulture), permille.ToString(CultureInfo.InvariantCulture)], output);
        try
        {
            Spawned.WaitForLine(output, "READY", pid, TimeSpan.FromMinutes(2));
            var (_, cacheStatus) = Spawned.Run(context.CrestBinary, ["image-cache", "--port", $"{port}", "--address", "127.0.0.1", "--allow-restore",
                "--cache-limit", $"{mib * 4 + 256}M", "-W", destination, "-d", "--pidfile", Path.Combine(destination, "cache.pid"), "-o", "cache.log", "-v2"],
                Path.Combine(work, "cache.out"));
            if (cacheStatus != 0) return Fail($"image-cache {Native.Describe(cacheStatus)}: {Spawned.Tail(Path.Combine(work, "cache.out"))}");
            // The source tree dies at the end of the final dump: reap it at once, so that its pid is free for the restore.
            var reaper = Task.Run(() => Native.WaitFor(pid));
            string migrateOut = Path.Combine(work, "migrate.out");
            var (ms, status) = Spawned.Run(context.CrestBinary, ["migrate", "-t", $"{pid}", "--address", "127.0.0.1", "--port", $"{port}", "--json",
                "--compress", codec, "--max-rounds", $"{maxRounds}", "-W", source, "-o", "migrate.log", "-v2"], migrateOut);
            if (status != 0) return Fail($"crest migrate {Native.Describe(status)}: {Spawned.Tail(migrateOut, 3)} {Spawned.Tail(Path.Combine(source, "migrate.log"))}");
            reaper.Wait(TimeSpan.FromSeconds(10));
            string text = File.ReadAllText(migrateOut);
            using var summary = JsonDocument.Parse(text[text.IndexOf('{')..]);
            var root = summary.RootElement;
            Console.WriteLine($"  {mib} MiB process rewriting {permille / 10.0:0.#}% of its pages a second, migrated over loopback ({codec}) in {ms:F0} ms");
            foreach (var r in root.GetProperty("rounds").EnumerateArray())
            {
                Console.WriteLine($"  round {r.GetProperty("round").GetInt32(),2} {r.GetProperty("kind").GetString(),-8} {r.GetProperty("pages_written").GetInt64(),8} pages dirty  " +
                    $"{r.GetProperty("image_bytes").GetInt64() / 1048576.0,8:F1} MiB of images  {r.GetProperty("sent_bytes").GetInt64() / 1048576.0,8:F1} MiB sent  " +
                    $"{r.GetProperty("ms").GetDouble(),8:F1} ms (frozen {r.GetProperty("frozen_ms").GetDouble():F1} ms)");
            }
            double downtime = root.GetProperty("downtime_ms").GetDouble();
            Console.WriteLine($"  downtime {downtime:F1} ms (target < 300): final dump {root.GetProperty("final_dump_ms").GetDouble():F1} ms, " +
                              $"restore at the destination {root.GetProperty("restore_ms").GetDouble():F1} ms; {root.GetProperty("sent_bytes").GetInt64() / 1048576.0:F1} MiB sent in all");
            Console.WriteLine($"  post-copy: {LazyFill(destination, pid)}");
            Native.kill(pid, Native.SIGTERM);
            DumpRestoreBenchmark.WaitGone(pid, TimeSpan.FromMinutes(2));
            string verdict = Spawned.Tail(output, 1);
            Console.WriteLine($"  restored process: {verdict}");
            return verdict == "PASS" ? 0 : 1;
        }
        finally
        {
            Spawned.Kill(pid);
            string cachePid = Path.Combine(destination, "cache.pid");
            if (File.Exists(cachePid) && int.TryParse(File.ReadAllText(cachePid), out int cache)) Native.kill(cache, Native.SIGTERM);
            Thread.Sleep(200);
            Native.ReapOrphans();
            Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>The destination's lazy-pages line for the task (the image-cache serves it, so it is in cache.log): how
    /// long after the restore handed it over the task had all its pages (waits for it up to 30 s).</summary>
    private static string LazyFill(string destination, int pid)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(30))
        {
            foreach (string log in Directory.GetFiles(destination, "*.log"))
            {
                string? line = File.ReadLines(log).LastOrDefault(l => l.Contains($"lazy-pages: {pid}: ", StringComparison.Ordinal) &&
                    (l.Contains("has all its pages", StringComparison.Ordinal) || l.Contains(": gone", StringComparison.Ordinal)));
                if (line is not null) return line[(line.IndexOf("lazy-pages:", StringComparison.Ordinal) + 12)..];
            }
            Thread.Sleep(20);
        }
        return "no lazy-pages daemon reported the task (eager restore?)";
    }

    private static int Option(BenchContext context, string prefix, int fallback)
    {
        string? o = context.Options.FirstOrDefault(x => x.StartsWith(prefix, StringComparison.Ordinal));
        return o is null ? fallback : int.Parse(o[prefix.Length..], CultureInfo.InvariantCulture);
    }

    private static int Fail(string message)
    {
        Console.WriteLine($"  FAILED: {message}");
        return 1;
    }
}
