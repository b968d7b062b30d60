using Crest.Transport.Streams;

namespace Crest.Transport.Tests;

public class ImageStreamTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(20);

    private static byte[] Random(int size, int seed)
    {
        var b = new byte[size];
        new Random(seed).NextBytes(b);
        return b;
    }

    private static Task<byte[]> WriteDumpAsync(params (string Name, byte[] Content)[] images) => WriteDumpAsync(Codec.None, images);

    private static async Task<byte[]> WriteDumpAsync(Codec codec, params (string Name, byte[] Content)[] images)
    {
        var wire = new MemoryStream();
        var w = new FrameWriter(wire);
        await w.WriteHelloAsync();
        foreach (var (name, content) in images)
            await w.WriteImageAsync("snap1", name, new MemoryStream(content), codec);
        await w.WriteDumpEndAsync("snap1");
        return wire.ToArray();
    }

    private static async Task<List<StreamEvent>> ReadAllAsync(byte[] wire)
    {
        var r = new FrameReader(new MemoryStream(wire));
        var events = new List<StreamEvent>();
        using var cancel = new CancellationTokenSource(Limit);
        while (await r.ReadWholeAsync(cancel.Token) is { } e) events.Add(e);
        return events;
    }

    [Fact]
    public async Task ImagesOfADumpArriveWholeAndInOrder()
    {
        var pages = Random(3 * FrameFormat.MaxChunk + 123, 1); // several data frames
        var core = Random(900, 2);
        var events = await ReadAllAsync(await WriteDumpAsync(("core-1.img", core), ("empty.img", []), ("pages-1.img", pages)));

        Assert.Equal(5, events.Count);
        Assert.Equal(new HelloEvent(FrameFormat.ProtocolVersion), events[0]);
        var img = Assert.IsType<ImageEvent>(events[1]);
        Assert.Equal(("snap1", "core-1.img"), (img.Snapshot, img.Name));
        Assert.Equal(core, img.Content);
        Assert.Empty(Assert.IsType<ImageEvent>(events[2]).Content);
        Assert.Equal(pages, Assert.IsType<ImageEvent>(events[3]).Content);
        Assert.Equal(new DumpEndEvent("snap1"), events[4]);
    }

    [Fact]
    public async Task ACorruptedByteIsCaughtByTheChecksum()
    {
        var wire = await WriteDumpAsync(("pages-1.img", Random(10000, 3)));
        wire[FrameFormat.HeaderSize + 4 /* hello */ + FrameFormat.HeaderSize + 1 + 2 + 5 + 2 + 11 + FrameFormat.HeaderSize + 500] ^= 0x40;
        var ex = await Assert.ThrowsAsync<StreamProtocolException>(() => ReadAllAsync(wire));
        Assert.Contains("snap1/pages-1.img: checksum mismatch", ex.Message);
    }

    [Fact]
    public async Task EveryTruncationIsAnErrorOrACleanFrameBoundary()
    {
        var wire = await WriteDumpAsync(("core-1.img", Random(300, 4)), ("mm-1.img", Random(40, 5)));
        for (int cut = 0; cut < wire.Length; cut++)
        {
            var part = wire[..cut];
            try
            {
                var events = await ReadAllAsync(part);
                // A clean end can only fall between frames outside an image, and then the dump is
                // visibly incomplete: no DumpEnd.
                Assert.DoesNotContain(events, e => e is DumpEndEvent);
            }
            catch (StreamProtocolException ex)
            {
                Assert.Matches("ended inside|cut short", ex.Message);
            }
        }
    }

    [Fact]
    public async Task HostileLengthsAndTypesAreRejectedBeforeAllocation()
    {
        var header = new byte[FrameFormat.HeaderSize];
        BitConverter.GetBytes(FrameFormat.Magic).CopyTo(header, 0);
        header[4] = (byte)FrameType.ImageBegin;
        BitConverter.GetBytes(ulong.MaxValue).CopyTo(header, 8);
        var ex = await Assert.ThrowsAsync<StreamProtocolException>(() => ReadAllAsync(header));
        Assert.Contains("exceeds", ex.Message);

        header[4] = 99;
        ex = await Assert.ThrowsAsync<StreamProtocolException>(() => ReadAllAsync(header));
        Assert.Contains("unknown frame type 99", ex.Message);

        ex = await Assert.ThrowsAsync<StreamProtocolException>(() => ReadAllAsync([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]));
        Assert.Contains("bad frame magic", ex.Message);
    }

    [Fact]
    public async Task DataOutsideAnImageIsAProtocolError()
    {
        var wire = new MemoryStream();
        var w = new FrameWriter(wire);
        await w.WriteDumpEndAsync("s");
        var bytes = wire.ToArray();
        bytes[4] = (byte)FrameType.ImageData;
        var ex = await Assert.ThrowsAsync<StreamProtocolException>(() => ReadAllAsync(bytes));
        Assert.Contains("ImageData frame outside an image", ex.Message);
    }

    [Fact]
    public async Task FramesCrossARealSocket()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        var content = Random(2 * FrameFormat.MaxChunk + 7, 6);
        using var cancel = new CancellationTokenSource(Limit);

        var sender = Task.Run(async () =>
        {
            using var client = new System.Net.Sockets.TcpClient();
            await client.ConnectAsync(System.Net.IPAddress.Loopback, port, cancel.Token);
            var stream = client.GetStream();
            var w = new FrameWriter(stream);
            await w.WriteImageAsync("snap", "pages-1.img", new MemoryStream(content), Codec.None, cancel.Token);
            await w.WriteDumpEndAsync("snap", cancel.Token);
            var ack = await new FrameReader(stream).ReadAsync(cancel.Token);
            return ack;
        });

        using var server = await listener.AcceptTcpClientAsync(cancel.Token);
        var s = server.GetStream();
        var r = new FrameReader(s);
        var image = Assert.IsType<ImageEvent>(await r.ReadWholeAsync(cancel.Token));
        Assert.Equal(content, image.Content);
        Assert.Equal(new DumpEndEvent("snap"), await r.ReadAsync(cancel.Token));
        await new FrameWriter(s).WriteAckAsync("snap", cancel.Token);
        Assert.Equal(new AckEvent("snap"), await sender);
    }

    /// <summary>Page-like data: zero pages, repeated text, and random pages mixed.</summary>
    private static byte[] PageLike(int pages, int seed)
    {
        var b = new byte[pages * 4096];
        var rng = new Random(seed);
        for (int p = 0; p < pages; p++)
        {
            var page = b.AsSpan(p * 4096, 4096);
            switch (p % 3)
            {
                case 0: break;
                case 1: System.Text.Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat($"line {p} of a log\n", 400)))[..4096].CopyTo(page); break;
                default: rng.NextBytes(page); break;
            }
        }
        return b;
    }

    [Theory]
    [InlineData(Codec.Lz4)]
    [InlineData(Codec.Zstd)]
    public async Task CompressedImagesArriveWholeAndSmaller(Codec codec)
    {
        var pages = PageLike(700, 7); // crosses chunk boundaries
        var random = Random(FrameFormat.MaxChunk + 5, 8); // incompressible: stored chunks
        var plain = await WriteDumpAsync(Codec.None, ("pages-1.img", pages), ("pages-2.img", random));
        var packed = await WriteDumpAsync(codec, ("pages-1.img", pages), ("pages-2.img", random));
        var events = await ReadAllAsync(packed);
        Assert.Equal(pages, Assert.IsType<ImageEvent>(events[1]).Content);
        Assert.Equal(random, Assert.IsType<ImageEvent>(events[2]).Content);
        Assert.True(packed.Length < plain.Length - pages.Length / 2, $"{codec}: {packed.Length} bytes against {plain.Length}");
    }

    [Theory]
    [InlineData(Codec.Lz4)]
    [InlineData(Codec.Zstd)]
    public async Task CorruptCompressedDataIsAnErrorNeverWrongBytes(Codec codec)
    {
        var wire = await WriteDumpAsync(codec, ("pages-1.img", PageLike(30, 9)));
        int data = FrameFormat.HeaderSize + 4 + FrameFormat.HeaderSize + 1 + 2 + 5 + 2 + 11 + FrameFormat.HeaderSize;
        var rng = new Random(10);
        for (int i = 0; i < 200; i++)
        {
            var bad = (byte[])wire.Clone();
            bad[data + 4 + rng.Next(200)] ^= (byte)(1 + rng.Next(255));
            var ex = await Assert.ThrowsAsync<StreamProtocolException>(() => ReadAllAsync(bad));
            Assert.Contains("snap1/pages-1.img", ex.Message);
        }
    }

    [Fact]
    public async Task UnknownCodecIsRefused()
    {
        var wire = await WriteDumpAsync(("core-1.img", Random(10, 11)));
        wire[FrameFormat.HeaderSize + 4 + FrameFormat.HeaderSize] = 9;
        var ex = await Assert.ThrowsAsync<StreamProtocolException>(() => ReadAllAsync(wire));
        Assert.Contains("unknown codec 9", ex.Message);
    }

    [Fact]
    public async Task RequestsAndAnswersRoundTrip()
    {
        var wire = new MemoryStream();
        var w = new FrameWriter(wire);
        await w.WriteGetAsync("d2", "core-1.img");
        await w.WriteGetSnapshotAsync("d1");
        await w.WriteNotFoundAsync("d2", "core-1.img", "the dump of d2 ended without it");
        await w.WriteErrorAsync("image-cache: memory limit reached");
        await w.WriteAckAsync("d2");
        var events = await ReadAllAsync(wire.ToArray());
        Assert.Equal<StreamEvent>([new GetEvent("d2", "core-1.img"), new GetSnapshotEvent("d1"),
            new NotFoundEvent("d2", "core-1.img", "the dump of d2 ended without it"), new ErrorEvent("image-cache: memory limit reached"),
            new AckEvent("d2")], events);
    }

    [Fact]
    public async Task ReadingPastAnUnreadImageIsAProgrammingError()
    {
        var r = new FrameReader(new MemoryStream(await WriteDumpAsync(("core-1.img", Random(10, 12)))));
        Assert.IsType<HelloEvent>(await r.ReadAsync());
        Assert.IsType<ImageBeginEvent>(await r.ReadAsync());
        await Assert.ThrowsAsync<InvalidOperationException>(() => r.ReadAsync());
    }
}
