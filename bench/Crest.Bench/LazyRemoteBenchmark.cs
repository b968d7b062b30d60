// lazy-remote: post-copy migration without shared storage, as CRIU users run it, over loopback with the AOT binary.
// A 1 GiB process (native/random_memory.c) is dumped with `dump --lazy-pages --address --port` (the tasks splice
// their private anonymous pages into the dump's pipes and the tree is killed), `lazy-pages --page-server` fetches
// from that dump, and `restore --lazy-pages -d` brings the process back. Prints how long the tree was frozen
// beside an ordinary dump of the same process to tmpfs (--leave-running, same run), how long the restore took until
// the process runs, and how long until the destination has every page (the dump ends when the daemon says so)
// beside a plain TCP copy of as many bytes in the same run; then the process checks every byte.
// Source and destination share this machine's pid namespace: the restore needs the dumped pid free, so this process
// (the target's parent) reaps it at once. Usage: bench/run lazy-remote [--mib=1024] [--pre-dump-mode=read] (the dump
// copies the pages it keeps instead of having the task splice them).
using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Crest.Bench;

internal static class LazyRemoteBenchmark
{
    public static int Run(BenchContext context)
    {
        string? o = context.Options.FirstOrDefault(x => x.StartsWith("--mib=", StringComparison.Ordinal));
        int mib = o is null ? 1024 : int.Parse(o["--mib=".Length..], CultureInfo.InvariantCulture);
        string mode = context.Options.Contains("--pre-dump-mode=read") ? "read" : "splice";
        if (Native.prctl(Native.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) throw Native.Failure("prctl(PR_SET_CHILD_SUBREAPER)");
        Console.WriteLine($"  load: {File.ReadAllText("/proc/loadavg").Trim()} ({Environment.ProcessorCount} cpus; figures from a busy machine are not limits)");
        string work = Path.Combine("/dev/shm", $"crest-bench-lazy-remote-{Environment.ProcessId}");
        string images = Path.Combine(work, "images"), eager = Path.Combine(work, "eager");
        Directory.CreateDirectory(images);
        Directory.CreateDirectory(eager);
        string output = Path.Combine(work, "target.out");
        int pid = Spawned.StartTarget(Path.Combine(AppContext.BaseDirectory, "native", "random_memory"), [mib.ToString(CultureInfo.InvariantCulture)], output);
        int dump = 0;
        try
        {
            Spawned.WaitForLine(output, "READY", pid, TimeSpan.FromMinutes(2));
            long bytes = (long)mib << 20;
            double tcpMs = PageServerBenchmark.TcpCopy(bytes, null);

            // The baseline: an ordinary dump of the same process into tmpfs, the process left running.
            var (_, eagerStatus) = Spawned.Run(context.CrestBinary, ["dump", "-t", $"{pid}", "-D", eager, "--leave-running", "-o", "dump.log"], Path.Combine(work, "eager.out"));
            if (eagerStatus != 0) return Fail($"crest dump --leave-running {Native.Describe(eagerStatus)}: {Spawned.Tail(Path.Combine(eager, "dump.log"))}");
            double eagerFrozenMs = (DumpRestoreBenchmark.ReadStats(eager, "stats-dump")?.Dump?.FrozenTime ?? 0) / 1000.0;
            Directory.Delete(eager, recursive: true);

            int port = PageServerBenchmark.FreePort();
            var clock = Stopwatch.StartNew();
            dump = Spawned.Start(context.CrestBinary, ["dump", "-t", $"{pid}", "-D", images, "--lazy-pages", "--address", "127.0.0.1", "--port", $"{port}",
                "--pre-dump-mode", mode, "-o", "dump.log", "-v4"], Path.Combine(work, "dump.out"));
            string dumpLog = Path.Combine(images, "dump.log");
            while (!(File.Exists(dumpLog) && File.ReadAllText(dumpLog).Contains("kept for the lazy-pages daemon, waiting on", StringComparison.Ordinal)))
            {
                if (Native.TryReap(dump) is { } ended) return Fail($"crest dump --lazy-pages {Native.Describe(ended)}: {Spawned.Tail(dumpLog)}");
                if (clock.Elapsed > TimeSpan.FromMinutes(2)) return Fail($"crest dump --lazy-pages did not serve within 2 minutes: {Spawned.Tail(dumpLog)}");
                Thread.Sleep(2);
            }
            double dumpMs = clock.Elapsed.TotalMilliseconds;
            var stats = DumpRestoreBenchmark.ReadStats(images, "stats-dump")?.Dump;
            if (stats is null) return Fail("no stats-dump");
            string log = File.ReadAllText(dumpLog);
            var spliced = Regex.Match(log, @"(\d+) lazy pages spliced by the task into (\d+) pipes");
            if (DumpRestoreBenchmark.WaitGone(pid, TimeSpan.FromSeconds(10)) is null) return Fail($"{pid} still runs after the dump");

            var (_, daemonStatus) = Spawned.Run(context.CrestBinary, ["lazy-pages", "--page-server", "--address", "127.0.0.1", "--port", $"{port}", "-D", images,
                "-d", "--pidfile", Path.Combine(work, "lazy.pid"), "-o", "lazy.log", "-v4"], Path.Combine(work, "lazy.out"));
            if (daemonStatus != 0) return Fail($"crest lazy-pages {Native.Describe(daemonStatus)}: {Spawned.Tail(Path.Combine(images, "lazy.log"))}");

            clock.Restart();
            var (restoreMs, restoreStatus) = Spawned.Run(context.CrestBinary, ["restore", "-D", images, "--lazy-pages", "-d", "-o", "restore.log"], Path.Combine(work, "restore.out"));
            if (restoreStatus != 0) return Fail($"crest restore --lazy-pages {Native.Describe(restoreStatus)}: {Spawned.Tail(Path.Combine(images, "restore.log"))}");
            var dumpStatus = Spawned.WaitForExit(dump, TimeSpan.FromMinutes(2));
            double allPagesMs = clock.Elapsed.TotalMilliseconds;
            if (dumpStatus is not { } ds) return Fail($"the dump did not end within 2 minutes of the restore: {Spawned.Tail(dumpLog)}");
            dump = 0;
            if (ds != 0) return Fail($"crest dump --lazy-pages {Native.Describe(ds)}: {Spawned.Tail(dumpLog)}");
            string lazyLog = File.ReadAllText(Path.Combine(images, "lazy.log"));
            var filled = Regex.Match(lazyLog, @$"lazy-pages: {pid}: has all its pages after ([0-9.]+) ms: (\d+) pages copied, (\d+) faults");

            Console.WriteLine($"  {mib} MiB process, dump --lazy-pages / lazy-pages --page-server / restore --lazy-pages over loopback");
            Console.WriteLine($"  dump frozen        {stats.FrozenTime / 1000.0,8:F1} ms  ({stats.PagesLazy} lazy pages{(spliced.Success ? $" spliced into {spliced.Groups[2].Value} pipes" : ", copied")}, " +
                $"{stats.PagesWritten} written; whole call until it serves {dumpMs:F0} ms)");
            Console.WriteLine($"    ordinary dump of the same process into tmpfs, frozen {eagerFrozenMs,8:F1} ms (same run)");
            Console.WriteLine($"  restore until the process runs {restoreMs,8:F1} ms");
            Console.WriteLine($"  destination has every page     {allPagesMs,8:F1} ms after the restore started" +
                (filled.Success ? $" (the task {filled.Groups[1].Value} ms after it was handed over, {filled.Groups[2].Value} pages, {filled.Groups[3].Value} faults)" : ""));
            Console.WriteLine($"    plain TCP copy of {bytes >> 20} MiB into nothing {tcpMs,8:F1} ms (same run)");

            Native.kill(pid, Native.SIGTERM);
            DumpRestoreBenchmark.WaitGone(pid, TimeSpan.FromMinutes(2));
            string verdict = Spawned.Tail(output, 1);
            Console.WriteLine($"  restored process: {verdict}");
            return verdict == "PASS" ? 0 : 1;
        }
        finally
        {
            Spawned.Kill(pid);
            if (dump != 0) Spawned.Kill(dump);
            string daemonPid = Path.Combine(work, "lazy.pid");
            if (File.Exists(daemonPid) && int.TryParse(File.ReadAllText(daemonPid), out int daemon)) Native.kill(daemon, Native.SIGTERM);
            Thread.Sleep(200);
            Native.ReapOrphans();
            Directory.Delete(work, recursive: true);
        }
    }

    private static int Fail(string message)
    {
        Console.WriteLine($"  FAILED: {message}");
        return 1;
    }
}
