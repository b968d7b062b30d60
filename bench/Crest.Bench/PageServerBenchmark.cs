// Page server (issue 5): a 1 GiB process (native/random_memory.c) dumped with `crest dump --page-server` to a
// `crest page-server` on loopback that writes the pages into /dev/shm, beside a plain TCP copy of the same
// number of bytes in the same run (one thread sends from memory, one receives into a file in /dev/shm; and
// the same into nothing). Then the page server's images and the dump's are combined and restored; the
// process checks every byte. Usage: bench/run page-server [--mib=1024]
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Crest.Bench;

internal static class PageServerBenchmark
{
    public static int Run(BenchContext context)
    {
        string? o = context.Options.FirstOrDefault(x => x.StartsWith("--mib=", StringComparison.Ordinal));
        int mib = o is null ? 1024 : int.Parse(o["--mib=".Length..], CultureInfo.InvariantCulture);
        if (Native.prctl(Native.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) throw Native.Failure("prctl(PR_SET_CHILD_SUBREAPER)");
        string work = Path.Combine("/dev/shm", $"crest-bench-ps-{Environment.ProcessId}");
        string local = Path.Combine(work, "local"), remote = Path.Combine(work, "remote");
        Directory.CreateDirectory(local);
        Directory.CreateDirectory(remote);
        string output = Path.Combine(work, "target.out");
        int pid = Spawned.StartTarget(Path.Combine(AppContext.BaseDirectory, "native", "random_memory"), [mib.ToString(CultureInfo.InvariantCulture)], output);
        try
        {
            Spawned.WaitForLine(output, "READY", pid, TimeSpan.FromMinutes(2));
            long bytes = (long)mib << 20;
            Console.WriteLine($"  {mib} MiB process; {Environment.ProcessorCount} CPUs, load average {File.ReadAllText("/proc/loadavg").Split(' ')[0]} (figures from a busy machine are not limits)");

            var (toFileMs, toNothingMs) = (TcpCopy(bytes, Path.Combine(work, "tcp-copy")), TcpCopy(bytes, null));
            File.Delete(Path.Combine(work, "tcp-copy"));

            int port = FreePort();
            string ps = port.ToString(CultureInfo.InvariantCulture);
            var (_, serverStatus) = Spawned.Run(context.CrestBinary, ["page-server", "-D", remote, "--address", "127.0.0.1", "--port", ps, "-d",
                "--pidfile", Path.Combine(work, "ps.pid"), "-o", "ps.log", "-v4"], Path.Combine(work, "ps.out"));
            if (serverStatus != 0) return Fail($"crest page-server {Native.Describe(serverStatus)}: {Spawned.Tail(Path.Combine(work, "ps.out"))}");
            var (dumpMs, dumpStatus) = Spawned.Run(context.CrestBinary, ["dump", "-t", pid.ToString(CultureInfo.InvariantCulture), "-D", local,
                "--page-server", "--address", "127.0.0.1", "--port", ps, "-o", "dump.log", "-v4"], Path.Combine(work, "dump.out"));
            if (dumpStatus != 0) return Fail($"crest dump --page-server {Native.Describe(dumpStatus)}: {Spawned.Tail(Path.Combine(local, "dump.log"))}");
            DumpRestoreBenchmark.WaitGone(pid, TimeSpan.FromSeconds(10));
            var stats = DumpRestoreBenchmark.ReadStats(local, "stats-dump")?.Dump;
            if (stats is null) return Fail("no stats-dump");
            long sent = (long)stats.PagesWritten * 4096;
            double memdumpMs = stats.MemdumpTime / 1000.0;
            long stored = Directory.GetFiles(remote, "pages-*.img").Sum(f => new FileInfo(f).Length);

            Console.WriteLine($"  plain TCP copy, {bytes >> 20} MiB into a file   {toFileMs,8:F1} ms  {Rate(bytes, toFileMs),7:F0} MiB/s");
            Console.WriteLine($"  plain TCP copy, {bytes >> 20} MiB into nothing  {toNothingMs,8:F1} ms  {Rate(bytes, toNothingMs),7:F0} MiB/s");
            Console.WriteLine($"  crest dump --page-server        {dumpMs,8:F1} ms  whole call, {sent >> 20} MiB sent, {stored >> 20} MiB stored by the page server");
            Console.WriteLine($"    of which memory (scan, read, send) {memdumpMs,8:F1} ms  {Rate(sent, memdumpMs),7:F0} MiB/s = {100 * toFileMs / memdumpMs * sent / bytes:F0}% of the TCP copy into a file, " +
                $"frozen {stats.FrozenTime / 1000.0:F1} ms");

            foreach (string file in Directory.GetFiles(remote, "*.img")) File.Copy(file, Path.Combine(local, Path.GetFileName(file)));
            var (restoreMs, restoreStatus) = Spawned.Run(context.CrestBinary, ["restore", "-D", local, "-d", "-o", "restore.log"], Path.Combine(work, "restore.out"));
            if (restoreStatus != 0) return Fail($"crest restore {Native.Describe(restoreStatus)}: {Spawned.Tail(Path.Combine(local, "restore.log"))}");
            Native.kill(pid, Native.SIGTERM);
            DumpRestoreBenchmark.WaitGone(pid, TimeSpan.FromMinutes(2));
            string verdict = Spawned.Tail(output, 1);
            Console.WriteLine($"  restore from the combined images {restoreMs,8:F1} ms; restored process: {verdict}");
            return verdict == "PASS" && stored == sent ? 0 : 1;
        }
        finally
        {
            Spawned.Kill(pid);
            Native.ReapOrphans();
            Directory.Delete(work, recursive: true);
        }
    }

    private static double Rate(long bytes, double ms) => bytes / 1048576.0 / (ms / 1000);

    internal static int FreePort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    /// <summary>Sends <paramref name="bytes"/> from memory over loopback TCP; the receiver writes them to <paramref name="file"/> (or drops them). Milliseconds.</summary>
    internal static double TcpCopy(long bytes, string? file)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var data = new byte[1 << 20];
        Random.Shared.NextBytes(data);
        var clock = Stopwatch.StartNew();
        var receiver = Task.Run(() =>
        {
            using var socket = listener.Accept();
            using var sink = file is null ? Stream.Null : new FileStream(file, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
            var buffer = new byte[1 << 20];
            long left = bytes;
            while (left > 0)
            {
                int n = socket.Receive(buffer, (int)Math.Min(buffer.Length, left), SocketFlags.None);
                if (n == 0) throw new IOException("the sender stopped early");
                sink.Write(buffer, 0, n);
                left -= n;
            }
        });
        using (var sender = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            sender.Connect(listener.LocalEndPoint!);
            for (long sentBytes = 0; sentBytes < bytes; sentBytes += data.Length) sender.Send(data, (int)Math.Min(data.Length, bytes - sentBytes), SocketFlags.None);
            receiver.Wait();
        }
        return clock.Elapsed.TotalMilliseconds;
    }

    private static int Fail(string message)
    {
        Console.WriteLine($"  FAILED: {message}");
        return 1;
    }
}
