// Incremental pre-dump (issue 5): a 1 GiB process rewrites 1% of its pages every second
// (native/dirtying_memory.c). `crest pre-dump` writes all of it; a second later `crest dump
// --prev-images-dir ../d1 --track-mem` must write about what the process wrote in between: its rate
// times the time from the end of the pre-dump to the end of the dump (an upper bound: the freeze comes
// before the dump's end). Then `crest restore` from the second directory, and the process checks every page.
// Usage: bench/run predump [--mib=1024] [--permille=10] [--pause-ms=1000]
using System.Diagnostics;
using System.Globalization;

namespace Crest.Bench;

internal static class PreDumpBenchmark
{
    public static int Run(BenchContext context)
    {
        int mib = Option(context, "--mib=", 1024), permille = Option(context, "--permille=", 10), pauseMs = Option(context, "--pause-ms=", 1000);
        if (Native.prctl(Native.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) throw Native.Failure("prctl(PR_SET_CHILD_SUBREAPER)");
        string work = Path.Combine("/dev/shm", $"crest-bench-predump-{Environment.ProcessId}");
        string d1 = Path.Combine(work, "d1"), d2 = Path.Combine(work, "d2");
        Directory.CreateDirectory(d1);
        Directory.CreateDirectory(d2);
        string output = Path.Combine(work, "target.out");
        int pid = Spawned.StartTarget(Path.Combine(AppContext.BaseDirectory, "native", "dirtying_memory"),
            [mib.ToString(CultureInfo.InvariantCulture), permille.ToString(CultureInfo.InvariantCulture)], output);
        try
        {
            string ready = Spawned.WaitForLine(output, "READY", pid, TimeSpan.FromMinutes(2));
            long perSecond = long.Parse(ready.Split(' ')[3]["per_second=".Length..], CultureInfo.InvariantCulture);
            long pages = (long)mib << 8;
            string p = pid.ToString(CultureInfo.InvariantCulture);

            var (preMs, preStatus) = Spawned.Run(context.CrestBinary, ["pre-dump", "-t", p, "-D", d1, "-o", "pre.log", "-v4"], Path.Combine(work, "pre.out"));
            var afterPre = Stopwatch.StartNew();
            if (preStatus != 0) return Fail($"crest pre-dump {Native.Describe(preStatus)}: {Spawned.Tail(Path.Combine(d1, "pre.log"))}");
            Thread.Sleep(pauseMs);
            var (dumpMs, dumpStatus) = Spawned.Run(context.CrestBinary, ["dump", "-t", p, "-D", d2, "--prev-images-dir", "../d1", "--track-mem", "-o", "dump.log", "-v4"],
                Path.Combine(work, "dump.out"));
            double betweenMs = afterPre.Elapsed.TotalMilliseconds;
            if (dumpStatus != 0) return Fail($"crest dump {Native.Describe(dumpStatus)}: {Spawned.Tail(Path.Combine(d2, "dump.log"))}");
            DumpRestoreBenchmark.WaitGone(pid, TimeSpan.FromSeconds(10));

            var first = DumpRestoreBenchmark.ReadStats(d1, "stats-dump")?.Dump;
            var second = DumpRestoreBenchmark.ReadStats(d2, "stats-dump")?.Dump;
            if (first is null || second is null) return Fail("no stats-dump");
            long written = (long)second.PagesWritten, expected = (long)(perSecond * betweenMs / 1000);
            long pagesBytes = new FileInfo(Path.Combine(d2, "pages-1.img")).Length;
            Console.WriteLine($"  {mib} MiB process rewriting {permille / 10.0:0.#}% of its {pages} pages a second ({perSecond} pages/s)");
            Console.WriteLine($"  pre-dump   {preMs,8:F1} ms  {first.PagesWritten,8} pages written  frozen {first.FrozenTime / 1000.0:F1} ms");
            Console.WriteLine($"  dump       {dumpMs,8:F1} ms  {written,8} pages written ({100.0 * written / pages:F2}% of the process, {pagesBytes >> 20} MiB), " +
                $"{second.PagesSkippedParent} in the parent  frozen {second.FrozenTime / 1000.0:F1} ms");
            Console.WriteLine($"  the process rewrote at most {expected} pages ({100.0 * expected / pages:F2}%) in the {betweenMs:F0} ms from the end of the pre-dump to the end of the dump");

            string restoreOut = Path.Combine(work, "restore.out");
            var (restoreMs, restoreStatus) = Spawned.Run(context.CrestBinary, ["restore", "-D", d2, "-d", "-o", "restore.log", "-v4"], restoreOut);
            if (restoreStatus != 0) return Fail($"crest restore {Native.Describe(restoreStatus)}: {Spawned.Tail(Path.Combine(d2, "restore.log"))}");
            Native.kill(pid, Native.SIGTERM);
            DumpRestoreBenchmark.WaitGone(pid, TimeSpan.FromMinutes(2));
            string verdict = Spawned.Tail(output, 1);
            Console.WriteLine($"  restore    {restoreMs,8:F1} ms  from the chain d2 -> d1; restored process: {verdict}");
            return verdict == "PASS" && written <= expected * 2 + 64 ? 0 : 1;
        }
        finally
        {
            Spawned.Kill(pid);
            Native.ReapOrphans();
            Directory.Delete(work, recursive: true);
        }
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
