using System.Net;
using System.Net.Sockets;
using Crest.Transport.Remote;
using Crest.Transport.Streams;

namespace Crest.Transport.Tests;

/// <summary>image-proxy and image-cache on loopback, with their unix sockets in a temporary work directory.</summary>
public sealed class ImageCacheProxyTests : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);
    private readonly string _work = Directory.CreateTempSubdirectory("crest-remote-test-").FullName;
    private readonly CancellationTokenSource _stop = new(Limit);
    private readonly List<string> _log = [];

    public void Dispose()
    {
        _stop.Cancel();
        Directory.Delete(_work, recursive: true);
    }

    private void Log(string line)
    {
        lock (_log) _log.Add(line);
    }

    private bool Logged(string text)
    {
        lock (_log) return _log.Any(l => l.Contains(text));
    }

    private ImageCache StartCache(long limit = 1L << 30)
    {
        var cache = new ImageCache(new IPEndPoint(IPAddress.Loopback, 0), ImageSockets.CacheSocket(_work), limit, Log);
        _ = cache.RunAsync(_stop.Token);
        return cache;
    }

    private async Task<ImageProxy> StartProxyAsync(EndPoint cache, Codec codec = Codec.Lz4)
    {
        var proxy = await ImageProxy.StartAsync(ImageSockets.ProxySocket(_work), cache, codec, Log, _stop.Token);
        _ = proxy.RunAsync(_stop.Token);
        return proxy;
    }

    private static byte[] PageLike(int pages, int seed)
    {
        var b = new byte[pages * 4096];
        var rng = new Random(seed);
        for (int p = 0; p < pages; p += 2) rng.NextBytes(b.AsSpan(p * 4096, 4096)); // every other page zero
        return b;
    }

    private static OutgoingImage Image(string name, byte[] content) => new(name, () => new MemoryStream(content));

    private async Task<Dictionary<string, byte[]>> FetchAsync(string snapshot)
    {
        var got = new Dictionary<string, MemoryStream>();
        await RemoteImageClient.FetchSnapshotAsync(ImageSockets.CacheSocket(_work), snapshot, name => got[name] = new MemoryStream(), _stop.Token);
        return got.ToDictionary(p => p.Key, p => p.Value.ToArray());
    }

    [Fact]
    public async Task ASnapshotGoesThroughProxyAndCacheWholeAndCompressed()
    {
        using var cache = StartCache();
        using var proxy = await StartProxyAsync(cache.LocalEndPoint);
        var pages = PageLike(900, 1);
        var core = PageLike(1, 2);
        await RemoteImageClient.SendSnapshotAsync(proxy.UnixSocketPath, "d1",
            [Image("core-1.img", core), Image("pages-1.img", pages), Image("empty.img", [])], _stop.Token);

        var got = await FetchAsync("d1");
        Assert.Equal(3, got.Count);
        Assert.Equal(core, got["core-1.img"]);
        Assert.Equal(pages, got["pages-1.img"]);
        Assert.Empty(got["empty.img"]);
        Assert.True(proxy.SentBytes < proxy.RawBytes * 3 / 4, $"{proxy.SentBytes} bytes sent for {proxy.RawBytes}");
        Assert.Equal(core, await RemoteImageClient.FetchImageAsync(ImageSockets.CacheSocket(_work), "d1", "core-1.img", _stop.Token));
        Assert.Null(await RemoteImageClient.FetchImageAsync(ImageSockets.CacheSocket(_work), "d1", "mm-1.img", _stop.Token));
    }

    [Fact]
    public async Task SeveralSnapshotsShareOneConnection()
    {
        using var cache = StartCache();
        using var proxy = await StartProxyAsync(cache.LocalEndPoint, Codec.Zstd);
        for (int i = 1; i <= 3; i++)
            await RemoteImageClient.SendSnapshotAsync(proxy.UnixSocketPath, $"d{i}", [Image("pages-1.img", PageLike(10 * i, i))], _stop.Token);
        for (int i = 1; i <= 3; i++)
            Assert.Equal(PageLike(10 * i, i), (await FetchAsync($"d{i}"))["pages-1.img"]);
        Assert.Single(_log, l => l.Contains("proxy connected"));
    }

    [Theory]
    [InlineData(Codec.None)]
    [InlineData(Codec.Lz4)]
    [InlineData(Codec.Zstd)]
    public async Task ADumpWritesIntoTheLentConnectionAndTheProxyRelaysTheAnswer(Codec codec)
    {
        using var cache = StartCache();
        using var proxy = await StartProxyAsync(cache.LocalEndPoint, codec);
        var pages = PageLike(2000, 12); // several chunks, the last one short
        var streamed = PageLike(700, 13);
        using (var upload = await SnapshotUpload.OpenAsync(proxy.UnixSocketPath, "lent1", _stop.Token))
        {
            Assert.True(upload.Lent);
            // A page image streamed in small writes, as a dump's page writer does, then the rest.
            using (var image = upload.OpenImage("pages-2.img"))
                for (int at = 0; at < streamed.Length; at += 12288) image.Write(streamed, at, Math.Min(12288, streamed.Length - at));
            long raw = await upload.FinishAsync([Image("core-1.img", [7, 8, 9]), Image("pages-1.img", pages), Image("empty.img", [])], _stop.Token);
            Assert.Equal(streamed.Length + 3 + pages.Length, raw);
        }
        var got = await FetchAsync("lent1");
        Assert.Equal(4, got.Count);
        Assert.Equal(streamed, got["pages-2.img"]);
        Assert.Equal(pages, got["pages-1.img"]);
        Assert.Equal([7, 8, 9], got["core-1.img"]);
        Assert.Empty(got["empty.img"]);
        Assert.Contains(_log, l => l.Contains("is lent to the dump of lent1"));
        Assert.Equal(streamed.Length + 3 + pages.Length, proxy.RawBytes);
        if (codec != Codec.None) Assert.True(proxy.SentBytes < proxy.RawBytes * 3 / 4, $"{proxy.SentBytes} bytes sent for {proxy.RawBytes}");
        // The connection is the proxy's again: the next dump takes it over the same connection.
        await RemoteImageClient.SendSnapshotAsync(proxy.UnixSocketPath, "lent2", [Image("pages-1.img", PageLike(3, 14))], _stop.Token);
        Assert.Equal(PageLike(3, 14), (await FetchAsync("lent2"))["pages-1.img"]);
        Assert.Single(_log, l => l.Contains("proxy connected"));
    }

    [Fact]
    public async Task DumpsAtOnceBorrowTheConnectionInTurn()
    {
        using var cache = StartCache();
        using var proxy = await StartProxyAsync(cache.LocalEndPoint, Codec.Lz4);
        var sends = Enumerable.Range(1, 4).Select(i => Task.Run(() =>
            RemoteImageClient.SendSnapshotAsync(proxy.UnixSocketPath, $"turn{i}", [Image("pages-1.img", PageLike(300 * i, 20 + i)), Image("core-1.img", [(byte)i])], _stop.Token))).ToArray();
        await Task.WhenAll(sends);
        for (int i = 1; i <= 4; i++)
        {
            var got = await FetchAsync($"turn{i}");
            Assert.Equal(PageLike(300 * i, 20 + i), got["pages-1.img"]);
            Assert.Equal([(byte)i], got["core-1.img"]);
        }
        Assert.Equal(4, _log.Count(l => l.Contains("is lent to the dump of turn")));
        Assert.Single(_log, l => l.Contains("proxy connected"));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ADumpThatDiesHoldingTheLentConnectionBreaksItsSnapshotAndTheNextDumpWorks(bool keepsItsCopy)
    {
        using var cache = StartCache();
        using var proxy = await StartProxyAsync(cache.LocalEndPoint, Codec.Lz4);
        var socket = await ImageSockets.ConnectUnixAsync(proxy.UnixSocketPath, "image-proxy", _stop.Token);
        var unix = new FrameWriter(new NetworkStream(socket, ownsSocket: false));
        await unix.WriteHelloAsync(_stop.Token);
        await unix.WriteBorrowAsync("dies", _stop.Token);
        var (frame, descriptor) = await DescriptorPassing.ReceiveFrameAsync(socket, _stop.Token);
        Assert.Equal(new LendEvent(Codec.Lz4, Attached: true), await new FrameReader(new MemoryStream(frame)).ReadAsync(_stop.Token));
        Assert.True(descriptor >= 0);
        var lent = new LentSocketStream(descriptor);
        // Half an image into the cache, then the end of the dump: its unix connection goes, without Returned.
        var tcp = new FrameWriter(lent);
        await tcp.BeginImageAsync("dies", "pages-1.img", Codec.None, _stop.Token);
        tcp.WriteImageData(PageLike(300, 15));
        for (int i = 0; i < 1000 && cache.HeldBytes == 0; i++) await Task.Delay(10);
        Assert.NotEqual(0, cache.HeldBytes);
        // A dump that hangs on to its copy of the descriptor cannot keep the connection alive: the proxy shuts it down.
        if (!keepsItsCopy) lent.Dispose();
        socket.Dispose();
        var fetch = await Assert.ThrowsAsync<RemoteImageException>(() => FetchAsync("dies"));
        Assert.Contains("broke while receiving dies", fetch.Message);
        Assert.Equal(0, cache.HeldBytes);
        // The proxy logs it right after it dropped the connection, which the fetch saw first.
        const string Failed = "dump of dies failed: the dump of dies ended while it held the connection to the image-cache";
        for (int i = 0; i < 1000 && !Logged(Failed); i++) await Task.Delay(10);
        Assert.True(Logged(Failed), string.Join("\n", _log));
        if (keepsItsCopy)
        {
            Assert.Throws<IOException>(() => tcp.WriteImageData(new byte[1 << 20]));
            lent.Dispose();
        }

        await RemoteImageClient.SendSnapshotAsync(proxy.UnixSocketPath, "next", [Image("pages-1.img", PageLike(64, 16))], _stop.Token);
        Assert.Equal(PageLike(64, 16), (await FetchAsync("next"))["pages-1.img"]);
        Assert.Equal(2, _log.Count(l => l.Contains("proxy connected")));
    }

    [Fact]
    public async Task AProxyThatEndsWhileItsConnectionIsLentStopsTheDumpsWrites()
    {
        // A stand-in for a proxy killed half-way: it lends a TCP connection whose far end drains everything, then its
        // unix connection ends while the TCP connection (held by the dump's copy too) stays up.
        using var sink = new TcpListener(IPAddress.Loopback, 0);
        sink.Start();
        using var tcp = new TcpClient();
        await tcp.ConnectAsync((IPEndPoint)sink.LocalEndpoint, _stop.Token);
        using var far = await sink.AcceptTcpClientAsync(_stop.Token);
        _ = far.GetStream().CopyToAsync(Stream.Null, _stop.Token);
        using var listener = ImageSockets.Listen(ImageSockets.ProxySocket(_work));
        var proxying = Task.Run(async () =>
        {
            using var dump = await listener.AcceptAsync(_stop.Token);
            var reader = new FrameReader(new NetworkStream(dump, ownsSocket: false));
            Assert.IsType<HelloEvent>(await reader.ReadAsync(_stop.Token));
            Assert.Equal(new BorrowEvent("orphan"), await reader.ReadAsync(_stop.Token));
            DescriptorPassing.Send(dump, FrameWriter.LendFrame(Codec.None, attached: true), tcp.Client.SafeHandle);
        });
        using var upload = await SnapshotUpload.OpenAsync(ImageSockets.ProxySocket(_work), "orphan", _stop.Token);
        Assert.True(upload.Lent);
        await proxying;
        var chunk = new byte[1 << 20];
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var ex = Assert.Throws<IOException>(() =>
        {
            using var image = upload.OpenImage("pages-1.img");
            while (clock.Elapsed < Limit) image.Write(chunk);
        });
        Assert.Contains("the image-proxy ended while the dump of orphan held its connection to the image-cache", ex.Message);
    }

    [Fact]
    public async Task AnAbsentCacheIsReportedByTheProxy()
    {
        using var unused = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        unused.Bind(new IPEndPoint(IPAddress.Loopback, 0)); // bound, never listening: connections are refused
        var ex = await Assert.ThrowsAsync<RemoteImageException>(() => StartProxyAsync(unused.LocalEndPoint!));
        Assert.Contains("cannot connect to the image-cache at 127.0.0.1", ex.Message);
    }

    [Fact]
    public async Task AnAbsentProxyIsReportedByTheDump()
    {
        var ex = await Assert.ThrowsAsync<RemoteImageException>(() =>
            RemoteImageClient.SendSnapshotAsync(ImageSockets.ProxySocket(_work), "d1", [Image("core-1.img", [1])], _stop.Token));
        Assert.Contains("no image-proxy answers on", ex.Message);
    }

    [Fact]
    public async Task TheProxyPassesTheDumpsChecksumOnAndTheCacheChecksIt()
    {
        using var cache = StartCache();
        using var proxy = await StartProxyAsync(cache.LocalEndPoint, Codec.Lz4);
        var pages = PageLike(600, 5);
        // A dump whose end frame carries a checksum that does not match its data: the proxy does not hash, the cache must refuse it.
        using (var socket = await ImageSockets.ConnectUnixAsync(proxy.UnixSocketPath, "image-proxy", _stop.Token))
        using (var stream = new NetworkStream(socket, ownsSocket: false))
        {
            var writer = new FrameWriter(stream);
            await writer.WriteHelloAsync(_stop.Token);
            await writer.BeginForwardedImageAsync("liar", "pages-1.img", Codec.None, _stop.Token);
            var frame = new byte[FrameWriter.FrameBufferSize];
            for (int at = 0; at < pages.Length; at += FrameFormat.MaxChunk)
            {
                int n = Math.Min(FrameFormat.MaxChunk, pages.Length - at);
                int payload = FrameWriter.PackChunk(Codec.None, pages.AsSpan(at, n), frame);
                await writer.WriteForwardedDataAsync(frame, payload, n, _stop.Token);
            }
            await writer.EndForwardedImageAsync((ulong)pages.Length, 0x1234, _stop.Token);
            await writer.WriteDumpEndAsync("liar", _stop.Token);
            var answer = await new FrameReader(stream).ReadAsync(_stop.Token);
            var error = Assert.IsType<ErrorEvent>(answer);
            Assert.Contains("checksum mismatch", error.Message);
        }
        var fetch = await Assert.ThrowsAsync<RemoteImageException>(() => FetchAsync("liar"));
        Assert.Contains("checksum mismatch", fetch.Message);

        // The proxy's forwarding of honest dumps is whole, compressed in parallel and in order (two connections at most: the cache dropped the first).
        for (int i = 1; i <= 2; i++)
        {
            try
            {
                await RemoteImageClient.SendSnapshotAsync(proxy.UnixSocketPath, $"honest{i}", [Image("pages-1.img", pages), Image("core-1.img", PageLike(1, 6))], _stop.Token);
            }
            catch (RemoteImageException) when (i == 1)
            {
                continue;
            }
            Assert.Equal(pages, (await FetchAsync($"honest{i}"))["pages-1.img"]);
        }
    }

    [Fact]
    public async Task AFullCacheRefusesTheSnapshotAndTakesTheNextOne()
    {
        using var cache = StartCache(limit: 2 << 20);
        using var proxy = await StartProxyAsync(cache.LocalEndPoint);
        var ex = await Assert.ThrowsAsync<RemoteImageException>(() =>
            RemoteImageClient.SendSnapshotAsync(proxy.UnixSocketPath, "big", [Image("pages-1.img", PageLike(1024, 3))], _stop.Token));
        Assert.Contains("memory limit of 2097152 bytes reached while receiving big/pages-1.img", ex.Message);
        Assert.Equal(0, cache.HeldBytes);
        var fetch = await Assert.ThrowsAsync<RemoteImageException>(() => FetchAsync("big"));
        Assert.Contains("memory limit", fetch.Message);

        await RemoteImageClient.SendSnapshotAsync(proxy.UnixSocketPath, "small", [Image("pages-1.img", PageLike(16, 4))], _stop.Token);
        Assert.Equal(PageLike(16, 4), (await FetchAsync("small"))["pages-1.img"]);
    }

    [Fact]
    public async Task RestoreWaitsForTheEndOfTheDumpAndNamesWhatIsMissing()
    {
        using var cache = StartCache();
        using var tcp = new TcpClient();
        await tcp.ConnectAsync((IPEndPoint)cache.LocalEndPoint, _stop.Token);
        var w = new FrameWriter(tcp.GetStream());
        await w.WriteHelloAsync(_stop.Token);
        await w.WriteImageAsync("d1", "core-1.img", new MemoryStream([1, 2, 3]), Codec.None, _stop.Token);
        await w.FlushAsync(_stop.Token);
        // The cache must have taken the image in before the restore asks: a snapshot it never heard of fails at once.
        for (int i = 0; i < 1000 && cache.HeldBytes == 0; i++) await Task.Delay(10);

        var fetch = FetchAsync("d1");
        var missing = RemoteImageClient.FetchImageAsync(ImageSockets.CacheSocket(_work), "d1", "mm-1.img", _stop.Token);
        await Task.Delay(300);
        Assert.False(fetch.IsCompleted);
        Assert.False(missing.IsCompleted);
        await w.WriteDumpEndAsync("d1", _stop.Token);
        Assert.Equal(new AckEvent("d1"), await new FrameReader(tcp.GetStream()).ReadAsync(_stop.Token));
        Assert.Equal([1, 2, 3], (await fetch)["core-1.img"]);
        Assert.Null(await missing);

        var unknown = await Assert.ThrowsAsync<RemoteImageException>(() => FetchAsync("d9"));
        Assert.Contains("no dump of d9 reached this image-cache", unknown.Message);
    }

    [Fact]
    public async Task AConnectionCutMidStreamFailsTheDumpAndTheRestoreAndTheNextDumpReconnects()
    {
        using var cache = StartCache();
        using var relay = new CuttingRelay((IPEndPoint)cache.LocalEndPoint, cutAfter: 3 << 20);
        using var proxy = await StartProxyAsync(relay.EndPoint, Codec.None);
        var ex = await Assert.ThrowsAsync<RemoteImageException>(() =>
            RemoteImageClient.SendSnapshotAsync(proxy.UnixSocketPath, "d1", [Image("pages-1.img", PageLike(4096, 5))], _stop.Token));
        Assert.Contains("image-proxy", ex.Message);
        var fetch = await Assert.ThrowsAsync<RemoteImageException>(() => FetchAsync("d1"));
        Assert.Contains("broke while receiving d1", fetch.Message);
        Assert.Equal(0, cache.HeldBytes);

        relay.CutAfter = long.MaxValue;
        await RemoteImageClient.SendSnapshotAsync(proxy.UnixSocketPath, "d1", [Image("pages-1.img", PageLike(64, 6))], _stop.Token);
        Assert.Equal(PageLike(64, 6), (await FetchAsync("d1"))["pages-1.img"]);
    }

    [Fact]
    public async Task ImagesOfASnapshotAreFilesInThePrivateCacheDirectoryAndGoWithTheCache()
    {
        string store;
        var pages = PageLike(300, 8);
        using (var cache = StartCache())
        {
            store = cache.StoreDirectory;
            Assert.StartsWith("/dev/shm/crest-cache-", store);
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(store));
            using var proxy = await StartProxyAsync(cache.LocalEndPoint);
            await RemoteImageClient.SendSnapshotAsync(proxy.UnixSocketPath, "d1", [Image("pages-1.img", pages), Image("core-1.img", [1, 2])], _stop.Token);
            await RemoteImageClient.SendSnapshotAsync(proxy.UnixSocketPath, "d2",
                [Image("pages-1.img", PageLike(4, 9)), Image("parent", "d1"u8.ToArray())], _stop.Token);

            Assert.Equal(pages, File.ReadAllBytes(Path.Combine(store, "d1", "pages-1.img")));
            Assert.Equal([1, 2], File.ReadAllBytes(Path.Combine(store, "d1", "core-1.img")));
            // The parent is the link a local chain has, and is served as the id it names.
            Assert.Equal("../d1", new FileInfo(Path.Combine(store, "d2", "parent")).LinkTarget);
            Assert.Equal("d1"u8.ToArray(), (await FetchAsync("d2"))["parent"]);
            Assert.Equal(pages.Length + 2 + 4 * 4096 + 2, cache.HeldBytes);
            Assert.Equal(pages, (await FetchAsync("d1"))["pages-1.img"]);
        }
        Assert.False(Directory.Exists(store));
    }

    [Fact]
    public async Task ADirectoryLeftByADeadCacheIsRemovedAtStart()
    {
        string stale = $"/dev/shm/crest-cache-{99_999_999}"; // above any pid_max
        Directory.CreateDirectory(Path.Combine(stale, "d1"));
        File.WriteAllBytes(Path.Combine(stale, "d1", "pages-1.img"), [1]);
        try
        {
            using var cache = StartCache();
            Assert.False(Directory.Exists(stale));
            Assert.Contains(_log, l => l.Contains($"removing {stale}"));
        }
        finally
        {
            if (Directory.Exists(stale)) Directory.Delete(stale, recursive: true);
        }
        await Task.CompletedTask;
    }

    [Fact]
    public async Task ALeaseKeepsAChainInPlaceUntilItIsDisposed()
    {
        using var cache = StartCache();
        using var proxy = await StartProxyAsync(cache.LocalEndPoint);
        await RemoteImageClient.SendSnapshotAsync(proxy.UnixSocketPath, "chain-1", [Image("pages-1.img", PageLike(8, 10))], _stop.Token);
        await RemoteImageClient.SendSnapshotAsync(proxy.UnixSocketPath, "chain-2", [Image("pages-1.img", PageLike(2, 11)), Image("parent", "chain-1"u8.ToArray())], _stop.Token);
        using (var lease = await cache.LeaseAsync("chain-2", _stop.Token))
        {
            Assert.Equal(Path.Combine(cache.StoreDirectory, "chain-2"), lease.Directory);
            Assert.Equal(["chain-2", "chain-1"], lease.Chain);
            Assert.Equal(PageLike(8, 10), File.ReadAllBytes(Path.Combine(lease.Directory, "parent", "pages-1.img")));
            // Neither replaced nor forgotten while a restore reads it.
            var ex = await Assert.ThrowsAsync<RemoteImageException>(() =>
                RemoteImageClient.SendSnapshotAsync(proxy.UnixSocketPath, "chain-1", [Image("pages-1.img", [9])], _stop.Token));
            Assert.Contains("chain-1 is being restored from this cache", ex.Message);
            Assert.Equal(new AckEvent("chain-"), await ForgetAsync(cache, "chain-"));
            Assert.Equal(PageLike(8, 10), File.ReadAllBytes(Path.Combine(lease.Directory, "parent", "pages-1.img")));
        }
        var missing = await Assert.ThrowsAsync<RemoteImageException>(() => cache.LeaseAsync("chain-3", _stop.Token));
        Assert.Contains("no dump of chain-3 reached this image-cache", missing.Message);
    }

    [Fact]
    public async Task ForgetDropsTheSnapshotsOfAMigrationAndNothingElse()
    {
        using var cache = StartCache();
        using var proxy = await StartProxyAsync(cache.LocalEndPoint);
        for (int i = 1; i <= 2; i++)
            await RemoteImageClient.SendSnapshotAsync(proxy.UnixSocketPath, $"migrate-7-1-{i}", [Image("pages-1.img", PageLike(16, i))], _stop.Token);
        await RemoteImageClient.SendSnapshotAsync(proxy.UnixSocketPath, "migrate-70-1-1", [Image("pages-1.img", PageLike(4, 3))], _stop.Token);

        Assert.Equal(new AckEvent("migrate-7-1-"), await ForgetAsync(cache, "migrate-7-1-"));
        Assert.Equal(["migrate-70-1-1"], Directory.GetDirectories(cache.StoreDirectory).Select(Path.GetFileName));
        Assert.Equal(4 * 4096, cache.HeldBytes);
        var gone = await Assert.ThrowsAsync<RemoteImageException>(() => FetchAsync("migrate-7-1-1"));
        Assert.Contains("no dump of migrate-7-1-1 reached this image-cache", gone.Message);
        Assert.Equal(PageLike(4, 3), (await FetchAsync("migrate-70-1-1"))["pages-1.img"]);
        // A prefix that would take everything is refused.
        Assert.IsType<ErrorEvent>(await ForgetAsync(cache, ""));
    }

    [Fact]
    public async Task ASnapshotIdOrImageNameThatIsNoFileNameIsRefused()
    {
        using var cache = StartCache();
        using var proxy = await StartProxyAsync(cache.LocalEndPoint);
        var ex = await Assert.ThrowsAsync<RemoteImageException>(() =>
            RemoteImageClient.SendSnapshotAsync(proxy.UnixSocketPath, "..", [Image("core-1.img", [1])], _stop.Token));
        Assert.Contains("is not a snapshot id", ex.Message);
        ex = await Assert.ThrowsAsync<RemoteImageException>(() =>
            RemoteImageClient.SendSnapshotAsync(proxy.UnixSocketPath, "d1", [Image("../../etc/x", [1])], _stop.Token));
        Assert.Contains("is not an image name", ex.Message);
        ex = await Assert.ThrowsAsync<RemoteImageException>(() =>
            RemoteImageClient.SendSnapshotAsync(proxy.UnixSocketPath, "d2", [Image("parent", "../d1"u8.ToArray())], _stop.Token));
        Assert.Contains("names a parent \"../d1\" that is not a snapshot id", ex.Message);
        Assert.Empty(Directory.GetFileSystemEntries(cache.StoreDirectory));
        Assert.Equal(0, cache.HeldBytes);
    }

    /// <summary>Forget{prefix} on a TCP connection of its own, as `crest migrate` sends it; the cache's answer.</summary>
    private async Task<StreamEvent?> ForgetAsync(ImageCache cache, string prefix)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync((IPEndPoint)cache.LocalEndPoint, _stop.Token);
        var w = new FrameWriter(tcp.GetStream());
        await w.WriteHelloAsync(_stop.Token);
        await w.WriteForgetAsync(prefix, _stop.Token);
        await w.FlushAsync(_stop.Token);
        return await new FrameReader(tcp.GetStream()).ReadAsync(_stop.Token);
    }

    /// <summary>A CA and a certificate it signed for <paramref name="name"/>, as PEM files in the work directory.</summary>
    private (string Ca, string Cert, string Key) MakeCertificates(string prefix, string name)
    {
        using var caKey = System.Security.Cryptography.ECDsa.Create();
        var caRequest = new System.Security.Cryptography.X509Certificates.CertificateRequest($"CN={prefix} test CA", caKey, System.Security.Cryptography.HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new System.Security.Cryptography.X509Certificates.X509BasicConstraintsExtension(true, false, 0, true));
        // One clock reading for both: a certificate may not outlive its issuer, not even by the second between two readings.
        var now = DateTimeOffset.UtcNow;
        using var ca = caRequest.CreateSelfSigned(now.AddDays(-1), now.AddDays(2));
        using var key = System.Security.Cryptography.ECDsa.Create();
        var request = new System.Security.Cryptography.X509Certificates.CertificateRequest($"CN={name}", key, System.Security.Cryptography.HashAlgorithmName.SHA256);
        var san = new System.Security.Cryptography.X509Certificates.SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        using var cert = request.Create(ca, now.AddDays(-1), now.AddDays(1), [1, 2, 3, 4]);
        string Write(string file, string text)
        {
            string path = Path.Combine(_work, file);
            File.WriteAllText(path, text);
            return path;
        }
        return (Write($"{prefix}-ca.pem", ca.ExportCertificatePem()), Write($"{prefix}-cert.pem", cert.ExportCertificatePem()),
            Write($"{prefix}-key.pem", key.ExportPkcs8PrivateKeyPem()));
    }

    [Fact]
    public async Task ImagesCrossTlsAndAStrangerIsTurnedAway()
    {
        var server = MakeCertificates("server", "cache");
        var client = MakeCertificates("client", "proxy");
        // Each side trusts the CA of the other; the cache thereby requires the proxy's certificate.
        var cacheTls = new TlsSettings(server.Cert, server.Key, client.Ca, NoCnVerify: false).Load();
        var proxyTls = new TlsSettings(client.Cert, client.Key, server.Ca, NoCnVerify: false).Load();
        using var cache = new ImageCache(new IPEndPoint(IPAddress.Loopback, 0), ImageSockets.CacheSocket(_work), 1L << 30, Log, cacheTls);
        _ = cache.RunAsync(_stop.Token);
        using (var proxy = await ImageProxy.StartAsync(ImageSockets.ProxySocket(_work), cache.LocalEndPoint, Codec.Lz4, Log, _stop.Token, proxyTls, "127.0.0.1"))
        {
            _ = proxy.RunAsync(_stop.Token);
            await RemoteImageClient.SendSnapshotAsync(proxy.UnixSocketPath, "t1", [Image("pages-1.img", PageLike(300, 7))], _stop.Token);
            Assert.Equal(PageLike(300, 7), (await FetchAsync("t1"))["pages-1.img"]);
            Assert.Contains(_log, l => l.Contains("over TLS"));
            // The TLS session lives in the proxy: it relays, and lends nothing.
            Assert.DoesNotContain(_log, l => l.Contains("is lent"));
            using var upload = await SnapshotUpload.OpenAsync(proxy.UnixSocketPath, "t2", _stop.Token);
            Assert.False(upload.Lent);
        }

        // A proxy that trusts another CA refuses the cache.
        var stranger = MakeCertificates("stranger", "cache");
        var ex = await Assert.ThrowsAsync<RemoteImageException>(() => ImageProxy.StartAsync(ImageSockets.ProxySocket(_work), cache.LocalEndPoint, Codec.Lz4, Log,
            _stop.Token, new TlsSettings(client.Cert, client.Key, stranger.Ca, NoCnVerify: false).Load(), "127.0.0.1"));
        Assert.Contains("TLS handshake with the image-cache", ex.Message);
    }

    /// <summary>A TCP relay that resets both sides once it forwarded <see cref="CutAfter"/> bytes towards the target.</summary>
    private sealed class CuttingRelay : IDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly CancellationTokenSource _stop = new();

        public CuttingRelay(IPEndPoint target, long cutAfter)
        {
            CutAfter = cutAfter;
            _listener.Start();
            _ = Task.Run(async () =>
            {
                while (!_stop.IsCancellationRequested)
                {
                    var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                    var server = new TcpClient();
                    await server.ConnectAsync(target, _stop.Token);
                    long limit = CutAfter;
                    _ = Pump(client, server, limit);
                    _ = Pump(server, client, long.MaxValue);
                }
            });
        }

        public long CutAfter { get; set; }
        public EndPoint EndPoint => _listener.LocalEndpoint;

        private async Task Pump(TcpClient from, TcpClient to, long limit)
        {
            var buffer = new byte[65536];
            long sent = 0;
            try
            {
                while (true)
                {
                    int n = await from.GetStream().ReadAsync(buffer, _stop.Token);
                    if (n == 0) break;
                    if (sent + n > limit)
                    {
                        from.Client.LingerState = new LingerOption(true, 0);
                        to.Client.LingerState = new LingerOption(true, 0);
                        from.Close();
                        to.Close();
                        return;
                    }
                    await to.GetStream().WriteAsync(buffer.AsMemory(0, n), _stop.Token);
                    sent += n;
                }
                to.Client.Shutdown(SocketShutdown.Send);
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException or InvalidOperationException)
            {
                from.Close();
                to.Close();
            }
        }

        public void Dispose()
        {
            _stop.Cancel();
            _listener.Stop();
        }
    }
}
