// The page server against byte streams laid out as CRIU's dump side sends them (criu/page-xfer.c): the
// commands of today's CRIU (OPEN2, ADD_F, CLOSE) and of older ones (OPEN, ADD, HOLE, PARENT).
using System.Buffers.Binary;
using Crest.Images.Pages;
using Crest.Transport.PageServer;
using static Crest.Transport.PageServer.PageServerProtocol;

namespace Crest.Transport.Tests.PageServer;

public sealed class PageServerReceiverTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("crest-ps-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Reads from a prepared input; keeps what the server answers.</summary>
    private sealed class Duplex(byte[] input) : Stream
    {
        private readonly MemoryStream _in = new(input);
        public MemoryStream Answers { get; } = new();
        public override int Read(byte[] buffer, int offset, int count) => _in.Read(buffer, offset, count);
        public override void Write(byte[] buffer, int offset, int count) => Answers.Write(buffer, offset, count);
        public override void Flush() { }
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

    private sealed class Session
    {
        private readonly MemoryStream _bytes = new();
        public Session Iov(uint cmd, uint nrPages = 0, ulong vaddr = 0, ulong dstId = 0)
        {
            var header = new byte[PageServerIov.Size];
            new PageServerIov(cmd, nrPages, vaddr, dstId).Write(header);
            _bytes.Write(header);
            return this;
        }
        public Session Pages(uint n, byte fill)
        {
            var data = new byte[n * PageSize];
            Array.Fill(data, fill);
            _bytes.Write(data);
            return this;
        }
        public byte[] Bytes => _bytes.ToArray();
    }

    private static ulong Pid(ulong pid) => EncodeDstId(PagemapType.Task, pid);

    private List<PagemapRecord> Pagemap(ulong pid, out uint pagesId)
    {
        using var reader = PagemapReader.Open(Path.Combine(_dir, $"pagemap-{pid}.img"));
        var records = new List<PagemapRecord>();
        while (reader.TryRead(out var r)) records.Add(r);
        pagesId = reader.PagesId;
        return records;
    }

    [Fact]
    public void WireFormatIsCriusStruct()
    {
        var header = new byte[PageServerIov.Size];
        new PageServerIov(EncodeCommand(PS_IOV_ADD_F, 4), 3, 0x7f0000001000, Pid(4242)).Write(header);
        Assert.Equal(24, header.Length);
        Assert.Equal(0x0004_0006u, BinaryPrimitives.ReadUInt32LittleEndian(header));
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4)));
        Assert.Equal(0x7f0000001000ul, BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(8)));
        Assert.Equal(4242ul << 8 | 1, BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(16)));
        Assert.Equal((PagemapType.Task, 4242ul), DecodeDstId(4242ul << 8 | 11)); // CRIU 1.3 .. 3.0
        Assert.Equal((PagemapType.Shmem, 7ul), DecodeDstId(7ul << 8 | 2));
    }

    [Fact]
    public void CurrentCriuSessionWritesImagesAndAnswers()
    {
        var input = new Session()
            .Iov(PS_IOV_OPEN2, dstId: Pid(100))
            .Iov(EncodeCommand(PS_IOV_ADD_F, 4), 2, 0x10000, Pid(100)).Pages(2, 0xaa)
            .Iov(EncodeCommand(PS_IOV_ADD_F, 2), 5, 0x20000, Pid(100))   // PE_LAZY alone: no data
            .Iov(EncodeCommand(PS_IOV_ADD_F, 4), 1, 0x40000, Pid(100)).Pages(1, 0xbb)
            .Iov(PS_IOV_OPEN2, dstId: Pid(101))
            .Iov(EncodeCommand(PS_IOV_ADD_F, 4), 1, 0x1000, Pid(101)).Pages(1, 0xcc)
            .Iov(PS_IOV_CLOSE)
            .Bytes;
        var stream = new Duplex(input);
        var summary = new PageServerReceiver(_dir).Serve(stream);

        Assert.Equal(new byte[] { 0, 0, 0, 0, 0, 0 }, stream.Answers.ToArray()); // has_parent 0, 0; status 0
        Assert.Equal(2, summary.Pagemaps);
        Assert.Equal(4, summary.PagesReceived);
        var records = Pagemap(100, out uint pagesId);
        Assert.Equal(PageServerReceiver.FirstPagesId, pagesId);
        Assert.Equal([(0x10000ul, 2u, PagemapFlags.Present), (0x20000ul, 5u, PagemapFlags.Lazy), (0x40000ul, 1u, PagemapFlags.Present)],
            records.Select(r => (r.Vaddr, r.NrPages, r.Flags)));
        var pages = File.ReadAllBytes(Path.Combine(_dir, $"pages-{pagesId}.img"));
        Assert.Equal(3 * PageSize, pages.Length);
        Assert.All(pages.AsSpan(0, 2 * PageSize).ToArray(), b => Assert.Equal(0xaa, b));
        Assert.All(pages.AsSpan(2 * PageSize).ToArray(), b => Assert.Equal(0xbb, b));
        Pagemap(101, out uint secondId);
        Assert.Equal(PageServerReceiver.FirstPagesId + 1, secondId);
        Assert.Empty(Directory.GetFiles(_dir, ".*"));
    }

    [Fact]
    public void OlderCriuCommandsAndTheParentChain()
    {
        // The parent: a previous session into d1, linked from this directory.
        string d1 = Directory.CreateDirectory(Path.Combine(_dir, "d1")).FullName;
        new PageServerReceiver(d1).Serve(new Duplex(new Session()
            .Iov(PS_IOV_OPEN2, dstId: Pid(7))
            .Iov(EncodeCommand(PS_IOV_ADD_F, 4), 4, 0x10000, Pid(7)).Pages(4, 1)
            .Iov(PS_IOV_CLOSE).Bytes));
        File.CreateSymbolicLink(Path.Combine(_dir, "parent"), "d1");

        var stream = new Duplex(new Session()
            .Iov(PS_IOV_PARENT, dstId: Pid(7))
            .Iov(PS_IOV_PARENT, dstId: Pid(8))
            .Iov(PS_IOV_OPEN, dstId: Pid(7))                   // no answer
            .Iov(PS_IOV_ADD, 1, 0x10000, Pid(7)).Pages(1, 2)   // present
            .Iov(PS_IOV_HOLE, 3, 0x11000, Pid(7))              // in the parent
            .Iov(PS_IOV_CLOSE).Bytes);
        var summary = new PageServerReceiver(_dir).Serve(stream);
        Assert.Equal(new byte[] { 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, stream.Answers.ToArray());
        Assert.Equal(3, summary.PagesInParent);
        Assert.Equal([(0x10000ul, 1u, PagemapFlags.Present), (0x11000ul, 3u, PagemapFlags.Parent)],
            Pagemap(7, out _).Select(r => (r.Vaddr, r.NrPages, r.Flags)));
        var chain = PageChain.Resolve(_dir, 7);
        Assert.Equal(4 * PageSize, chain.Bytes);
    }

    [Fact]
    public void HoleTheParentDoesNotHoldIsRefused()
    {
        var input = new Session()
            .Iov(PS_IOV_OPEN2, dstId: Pid(9))
            .Iov(EncodeCommand(PS_IOV_ADD_F, 1), 2, 0x10000, Pid(9))
            .Iov(PS_IOV_CLOSE).Bytes;
        var e = Assert.Throws<PageServerException>(() => new PageServerReceiver(_dir).Serve(new Duplex(input)));
        Assert.Contains("no parent images", e.Message);
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    [Theory]
    [InlineData(10)]        // inside a command
    [InlineData(24 + 5000)] // inside page data
    [InlineData(-1)]        // everything but PS_IOV_CLOSE
    public void TruncatedSessionLeavesNothing(int keep)
    {
        var whole = new Session()
            .Iov(PS_IOV_OPEN2, dstId: Pid(5))
            .Iov(EncodeCommand(PS_IOV_ADD_F, 4), 2, 0x10000, Pid(5)).Pages(2, 3)
            .Iov(PS_IOV_CLOSE).Bytes;
        int length = keep < 0 ? whole.Length - PageServerIov.Size : PageServerIov.Size + keep;
        var e = Assert.Throws<PageServerException>(() => new PageServerReceiver(_dir).Serve(new Duplex(whole[..length])));
        Assert.Contains(keep < 0 ? "before PS_IOV_CLOSE" : "the connection ended inside", e.Message);
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public void LazyPagesRequestsAndUnknownCommandsAreRefused()
    {
        Assert.Throws<PageServerException>(() => new PageServerReceiver(_dir).Serve(new Duplex(new Session().Iov(PS_IOV_GET, 1, 0x1000, Pid(3)).Bytes)));
        Assert.Throws<PageServerException>(() => new PageServerReceiver(_dir).Serve(new Duplex(new Session().Iov(0x99).Bytes)));
        Assert.Throws<PageServerException>(() => new PageServerReceiver(_dir).Serve(new Duplex(new Session().Iov(PS_IOV_OPEN2, dstId: 5ul << 8 | 2).Bytes)));
    }

    [Fact]
    public void AnImageThatCannotTakeItsNameFailsTheSessionNamingTheFileAndLeavesNoPagemap()
    {
        // A directory with something in it where the pages image must go: the rename at PS_IOV_CLOSE fails.
        string blocker = Path.Combine(_dir, $"pages-{PageServerReceiver.FirstPagesId}.img");
        Directory.CreateDirectory(Path.Combine(blocker, "inside"));
        var stream = new Duplex(new Session()
            .Iov(PS_IOV_OPEN2, dstId: Pid(100))
            .Iov(EncodeCommand(PS_IOV_ADD_F, 4), 1, 0x10000, Pid(100)).Pages(1, 0xaa)
            .Iov(PS_IOV_CLOSE).Bytes);
        var e = Assert.Throws<PageServerException>(() => new PageServerReceiver(_dir).Serve(stream));
        Assert.Contains($"cannot rename {Path.Combine(_dir, $".pages-{PageServerReceiver.FirstPagesId}.img.part")} to {blocker}", e.Message);
        Assert.False(File.Exists(Path.Combine(_dir, "pagemap-100.img")));
        Assert.Empty(Directory.GetFiles(_dir, ".*"));
        Assert.Equal(new byte[] { 0 }, stream.Answers.ToArray()); // has_parent 0, no status: the dump side learns it failed
    }
}
