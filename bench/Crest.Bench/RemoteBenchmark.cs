// remote: images through `crest image-proxy` and `crest image-cache` (the AOT daemons) over loopback, against
// a plain TCP copy of the same bytes in the same run. The data is page-like (a third zero pages, a third
// text, a third random), sent as one pages image; the dump side is this process, speaking the dump's
// protocol to the proxy's unix socket, so that the figure is the transport's and not the dump engine's.
// Two plain copies, both from memory over one TCP connection: into nothing (the receiver drops the bytes),
// and into a tmpfs file (what a user copying the images would otherwise get at the destination, and where
// the cache keeps them). The percentage is against the second, the fair one; the first is shown for scale.
//   send:   first byte to the proxy until the cache acknowledged the snapshot (all of it in the cache)
//   fetch:  a restore's GetSnapshot until the last byte arrived from the cache
//   cpu:    CPU seconds (user + system, /proc/PID/stat) per GiB sent, of the sender (this process: the dump's side),
//           the proxy and the cache during the send; of this process for the plain copies (sender and receiver
//           together). Unlike the rates, these barely move when other work shares the machine.
// Two ways through the proxy: "lent" (the dump borrows the proxy's TCP connection and writes into it; what
// `crest dump --remote` does over plain TCP) and "relayed" (the images go through the proxy, as over TLS).
// Options: --size=1G, --codecs=none,lz4,zstd, --paths=lent,relayed
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Crest.Transport.Remote;

namespace Crest.Bench;

internal static partial class RemoteBenchmark
{
    public static int Run(BenchContext context)
    {
        long size = 1L << 30;
        string[] codecs = ["none", "lz4", "zstd"];
        string[] paths = ["lent", "relayed"];
        foreach (var o in context.Options)
        {
            if (o.StartsWith("--size=", StringComparison.Ordinal)) size = ParseSize(o[7..]);
            else if (o.StartsWith("--codecs=", StringComparison.Ordinal)) codecs = o[9..].Split(',');
            else if (o.StartsWith("--paths=", StringComparison.Ordinal)) paths = o[8..].Split(',');
        }
        Console.WriteLine($"load: {File.ReadAllText("/proc/loadavg").Trim()} ({Environment.ProcessorCount} cpus)");
        var data = PageLike(size);
        double gib = size / (double)(1L << 30);
        double cpu = CpuSeconds(Environment.ProcessId);
        double intoNothing = PlainTcpCopy(data, null);
        double cpuNothing = (CpuSeconds(Environment.ProcessId) - cpu) / gib;
        Console.WriteLine($"plain TCP copy over loopback into nothing:     {Mb(size)} MiB in {intoNothing:0} ms = {Rate(size, intoNothing):0} MiB/s; cpu {cpuNothing:0.00} s/GiB (both ends)");
        string tmpfsFile = Path.Combine("/dev/shm", $"crest-bench-remote-copy-{Environment.ProcessId}");
        cpu = CpuSeconds(Environment.ProcessId);
        double plain = PlainTcpCopy(data, tmpfsFile);
        double cpuPlain = (CpuSeconds(Environment.ProcessId) - cpu) / gib;
        Console.WriteLine($"plain TCP copy over loopback into a tmpfs file: {Mb(size)} MiB in {plain:0} ms = {Rate(size, plain):0} MiB/s (the baseline below); cpu {cpuPlain:0.00} s/GiB (both ends)");

        foreach (string codec in codecs)
        foreach (string path in paths)
        {
            string work = Directory.CreateTempSubdirectory("crest-bench-remote-").FullName;
            int port = 30000 + Environment.ProcessId % 20000;
            try
            {
                Daemon(context, work, "image-cache", "--port", $"{port}", "--address", "127.0.0.1", "--cache-limit", $"{(size >> 20) + 256}M");
                Daemon(context, work, "image-proxy", "--port", $"{port}", "--address", "127.0.0.1", "--compress", codec);
                int proxyPid = int.Parse(File.ReadAllText(Path.Combine(work, "proxy.pid")));
                int cachePid = int.Parse(File.ReadAllText(Path.Combine(work, "cache.pid")));
                double[] before = [CpuSeconds(Environment.ProcessId), CpuSeconds(proxyPid), CpuSeconds(cachePid)];
                var clock = Stopwatch.StartNew();
                RemoteImageClient.SendSnapshotAsync(ImageSockets.ProxySocket(work), "bench",
                    [new OutgoingImage("pages-1.img", () => new MemoryStream(data, writable: false))], CancellationToken.None, borrow: path == "lent").GetAwaiter().GetResult();
                double send = clock.Elapsed.TotalMilliseconds;
                double[] used = [CpuSeconds(Environment.ProcessId) - before[0], CpuSeconds(proxyPid) - before[1], CpuSeconds(cachePid) - before[2]];
                clock.Restart();
                long fetched = 0;
                RemoteImageClient.FetchSnapshotAsync(ImageSockets.CacheSocket(work), "bench", _ => new CountingStream(n => fetched += n), CancellationToken.None).GetAwaiter().GetResult();
                double fetch = clock.Elapsed.TotalMilliseconds;
                if (fetched != size) throw new InvalidOperationException($"fetched {fetched} bytes of {size}");
                var sent = SentRegex().Match(File.ReadAllText(Path.Combine(work, "proxy.log")));
                long wire = sent.Success ? long.Parse(sent.Groups[1].Value) : -1;
                Console.WriteLine($"{codec,-5} {path,-7} proxy->cache: {Rate(size, send),6:0} MiB/s ({send:0} ms, {100 * Rate(size, send) / Rate(size, plain):0}% of plain TCP into tmpfs, {100 * Rate(size, send) / Rate(size, intoNothing):0}% of into nothing), " +
                                  $"{wire} bytes on the wire ({100.0 * (size - wire) / size:0.0}% saved); cache->restore: {Rate(size, fetch):0} MiB/s ({fetch:0} ms)");
                Console.WriteLine($"      cpu per GiB sent: sender {used[0] / gib:0.00} s, proxy {used[1] / gib:0.00} s, cache {used[2] / gib:0.00} s, in all {used.Sum() / gib:0.00} s " +
                                  $"(plain copy into tmpfs: {cpuPlain:0.00} s)");
            }
            finally
            {
                foreach (string pidFile in Directory.GetFiles(work, "*.pid"))
                    if (int.TryParse(File.ReadAllText(pidFile), out int pid)) Native.kill(pid, 15);
                Thread.Sleep(200);
                Directory.Delete(work, recursive: true);
            }
        }
        return 0;
    }

    private static void Daemon(BenchContext context, string work, string command, params string[] args)
    {
        var (_, status) = Spawned.Run(context.CrestBinary, [command, .. args, "-W", work, "-d", "--pidfile", Path.Combine(work, $"{command[6..]}.pid"),
            "-o", Path.Combine(work, $"{command[6..]}.log"), "-v4"], Path.Combine(work, "daemons.out"));
        if (status != 0) throw new InvalidOperationException($"crest {command} failed: {File.ReadAllText(Path.Combine(work, "daemons.out"))}");
    }

    /// <summary>The bytes over one loopback TCP connection, dropped on arrival or written into <paramref name="intoFile"/> (then removed).</summary>
    private static double PlainTcpCopy(byte[] data, string? intoFile)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var clock = Stopwatch.StartNew();
        var receiver = Task.Run(async () =>
        {
            using var client = await listener.AcceptTcpClientAsync();
            var stream = client.GetStream();
            await using var file = intoFile is null ? null : new FileStream(intoFile, FileMode.Create, FileAccess.Write, FileShare.None, 0);
            var buffer = new byte[1 << 20];
            long total = 0;
            int n;
            while ((n = await stream.ReadAsync(buffer)) > 0)
            {
                if (file is not null) await file.WriteAsync(buffer.AsMemory(0, n));
                total += n;
            }
            return total;
        });
        using (var sender = new TcpClient())
        {
            sender.Connect(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
            var stream = sender.GetStream();
            for (int at = 0; at < data.Length; at += 1 << 20) stream.Write(data, at, Math.Min(1 << 20, data.Length - at));
        }
        long got = receiver.GetAwaiter().GetResult();
        double ms = clock.Elapsed.TotalMilliseconds;
        if (intoFile is not null) File.Delete(intoFile);
        if (got != data.Length) throw new InvalidOperationException($"plain copy moved {got} bytes of {data.Length}");
        return ms;
    }

    /// <summary>A third zero pages, a third short repeated text, a third random: like the memory of a real program, roughly.</summary>
    private static byte[] PageLike(long size)
    {
        var data = new byte[size];
        var rng = new Random(42);
        var text = System.Text.Encoding.ASCII.GetBytes(string.Concat(Enumerable.Range(0, 200).Select(i => $"entry {i}: value={i * 37} ok\n")));
        for (long page = 0; page < size / 4096; page++)
        {
            var span = data.AsSpan((int)(page * 4096), 4096);
            switch (page % 3)
            {
                case 1: text.AsSpan((int)(page % 64), 4096).CopyTo(span); break;
                case 2: rng.NextBytes(span); break;
            }
        }
        return data;
    }

    /// <summary>utime + stime of a process (fields 14 and 15 of /proc/PID/stat, after the parenthesised name).</summary>
    private static double CpuSeconds(int pid)
    {
        string stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(fields[11]) + long.Parse(fields[12])) / 100.0; // USER_HZ
    }

    private static long ParseSize(string text) =>
        text.EndsWith('G') ? long.Parse(text[..^1]) << 30 : text.EndsWith('M') ? long.Parse(text[..^1]) << 20 : long.Parse(text);

    private static long Mb(long bytes) => bytes >> 20;
    private static double Rate(long bytes, double ms) => bytes / 1048576.0 / (ms / 1000);

    [GeneratedRegex(@"bytes of images, (\d+) sent\)")]
    private static partial Regex SentRegex();

    private sealed class CountingStream(Action<int> counted) : Crest.Transport.Streams.WriteOnlyStream
    {
        public override void Write(ReadOnlySpan<byte> buffer) => counted(buffer.Length);
        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            counted(buffer.Length);
            return ValueTask.CompletedTask;
        }
    }
}
