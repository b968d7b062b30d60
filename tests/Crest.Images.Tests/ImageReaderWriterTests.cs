// Typed messages written by ImageWriter come back equal from ImageReader, from files and from streams
// that cannot seek; extra payloads are read, copied or skipped; and crit reads what the writer wrote.
using Crest.Images.Protos;
using Google.Protobuf;

namespace Crest.Images.Tests;

public sealed class ImageReaderWriterTests
{
    private static CoreEntry SampleCore() => new()
    {
        Mtype = CoreEntry.Types.March.X8664,
        ThreadInfo = new ThreadInfoX86
        {
            ClearTidAddr = 0x7f3c2a1ff9d0,
            Gpregs = new UserX86RegsEntry
            {
                R15 = 0, R14 = 0, R13 = 0, R12 = 0, Bp = 0, Bx = 0, R11 = 0x246, R10 = 0, R9 = 0, R8 = 0,
                Ax = unchecked((ulong)-516), Cx = 0, Dx = 0, Si = 0, Di = 0, OrigAx = 230, Ip = 0x401000,
                Cs = 0x33, Flags = 0x246, Sp = 0x7ffd6b1c2d28, Ss = 0x2b, FsBase = 0, GsBase = 0, Ds = 0, Es = 0,
                Fs = 0, Gs = 0,
            },
            Fpregs = new UserX86FpregsEntry { Cwd = 0x37f, Swd = 0, Twd = 0, Fop = 0, Rip = 0, Rdp = 0, Mxcsr = 0x1f80, MxcsrMask = 0xffff },
        },
        Tc = new TaskCoreEntry { TaskState = 1, ExitCode = 0, Personality = 0, Flags = 0, Comm = "sleeper", BlkSigset = 0x10000, OomScoreAdj = -17 },
    };

    [Fact(Timeout = 60_000)]
    public async Task WrittenCoreReadsBackAndCritDecodesIt()
    {
        await Task.Yield();
        using var scratch = new TempDirectory();
        string path = scratch.File("core-4242.img");
        CoreEntry core = SampleCore();
        using (ImageWriter writer = ImageWriter.Create(path, ImageKinds.Core))
            writer.WriteEntry(core);

        using (ImageReader reader = ImageReader.Open(path, ImageKinds.Core))
        {
            Assert.Equal(core, reader.ReadEntry(CoreEntry.Parser));
            Assert.Null(reader.ReadEntry(CoreEntry.Parser));
            Assert.Equal(new FileInfo(path).Length, reader.Offset);
        }
        using (ImageReader reader = ImageReader.Open(path))
            Assert.Equal([core], reader.ReadEntries(CoreEntry.Parser).ToList());

        string json = Crit.Decode(path, pretty: true);
        Assert.Contains("\"comm\": \"sleeper\"", json);
        Assert.Contains("\"ax\": \"0xfffffffffffffdfc\"", json);
        Assert.Contains("\"task_state\": \"Alive\"", json);
    }

    [Fact]
    public void KindIsFoundFromTheMagic()
    {
        var image = new MemoryStream();
        using (var writer = new ImageWriter(image, ImageKinds.Inventory, leaveOpen: true))
            writer.WriteEntry(new InventoryEntry { ImgVersion = 2, FdinfoPerId = true });
        Assert.Equal("16313158", Convert.ToHexString(image.ToArray(), 0, 4));

        image.Position = 0;
        using var reader = new ImageReader(new ForwardOnlyStream(image), "inventory.img");
        Assert.Same(ImageKinds.Inventory, reader.Kind);
        Assert.Equal(2u, reader.ReadEntry(InventoryEntry.Parser)!.ImgVersion);
    }

    [Fact]
    public void StatsUseTheServiceMagic()
    {
        var image = new MemoryStream();
        using (var writer = new ImageWriter(image, ImageKinds.Stats, leaveOpen: true))
            writer.WriteEntry(new StatsEntry { Dump = new DumpStatsEntry { FreezingTime = 1, FrozenTime = 2, MemdumpTime = 3, MemwriteTime = 4, PagesScanned = 5, PagesSkippedParent = 0, PagesWritten = 3, PagesLazy = 0 } });
        Assert.Equal("4059105506330957", Convert.ToHexString(image.ToArray(), 0, 8));
        image.Position = 0;
        using var reader = new ImageReader(image, "stats-dump.img");
        Assert.Same(ImageKinds.Stats, reader.Kind);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PayloadsAreReadCopiedOrSkipped(bool forwardOnly)
    {
        var image = new MemoryStream();
        byte[] first = "first pipe"u8.ToArray();
        byte[] second = new byte[70_000];
        new Random(1).NextBytes(second);
        using (var writer = new ImageWriter(image, ImageKinds.PipesData, leaveOpen: true))
        {
            writer.WriteEntry(new PipeDataEntry { PipeId = 1, Bytes = (uint)first.Length });
            writer.WritePayload(first);
            writer.WriteEntry(new PipeDataEntry { PipeId = 2, Bytes = (uint)second.Length });
            writer.WritePayload(second.AsSpan(0, 1000));
            writer.WritePayload(second.AsSpan(1000));
            writer.WriteEntry(new PipeDataEntry { PipeId = 3, Bytes = 1 });
            Assert.Throws<InvalidOperationException>(() => writer.WriteEntry(new PipeDataEntry { PipeId = 4, Bytes = 0 }));
            Assert.Throws<InvalidOperationException>(writer.Complete);
            writer.WritePayload([42]);
            writer.Complete();
        }

        image.Position = 0;
        Stream input = forwardOnly ? new ForwardOnlyStream(image) : image;
        using var reader = new ImageReader(input, "pipes-data.img");
        Assert.Equal(1u, reader.ReadEntry(PipeDataEntry.Parser)!.PipeId);
        Assert.Equal(first, reader.ReadPayload());
        Assert.Equal(2u, reader.ReadEntry(PipeDataEntry.Parser)!.PipeId);
        var copy = new MemoryStream();
        reader.CopyPayloadTo(copy);
        Assert.Equal(second, copy.ToArray());
        Assert.Equal(3u, reader.ReadEntry(PipeDataEntry.Parser)!.PipeId);
        Assert.Equal(1, reader.PendingPayloadLength);
        Assert.Null(reader.ReadEntry(PipeDataEntry.Parser)); // skips the unread byte
    }

    [Fact]
    public void PayloadLongerThanTheFileIsCorruption()
    {
        var image = new MemoryStream();
        using (var writer = new ImageWriter(image, ImageKinds.PipesData, leaveOpen: true))
            writer.WriteEntry(new PipeDataEntry { PipeId = 1, Bytes = 1000 });
        image.Position = 0;
        using var reader = new ImageReader(image, "pipes-data.img");
        ImageFormatException error = Assert.Throws<ImageFormatException>(() => reader.ReadEntry(PipeDataEntry.Parser));
        Assert.Equal("pipes-data.img: entry 0 at offset 0x8: truncated: payload of 1000 bytes but only 0 bytes remain", error.Message);
    }

    [Fact]
    public void WriterRefusesAnEntryWithoutItsRequiredFields()
    {
        // Google.Protobuf writes an unset proto2 field not at all, even a required one; CRIU would refuse it.
        using var writer = new ImageWriter(new MemoryStream(), ImageKinds.Pstree);
        ArgumentException error = Assert.Throws<ArgumentException>(() => writer.WriteEntry(new PstreeEntry { Pid = 1, Ppid = 0, Pgid = 1 }));
        Assert.Contains("required field PstreeEntry.sid is missing", error.Message);
        writer.WriteEntry(new PstreeEntry { Pid = 1, Ppid = 0, Pgid = 1, Sid = 1 });
        Assert.Equal(1, writer.EntryCount);
    }

    [Fact]
    public void WriterSerialisesLikeOurWireEncoder()
    {
        // Google.Protobuf writes fields in field-number order, the order protobuf-c and our JSON encoder use.
        CoreEntry core = SampleCore();
        byte[] google = core.ToByteArray();
        byte[] ours = Wire.ProtoWire.Serialize(Wire.ProtoWire.Parse(CoreEntry.Descriptor, google));
        Assert.Equal(Convert.ToHexString(google), Convert.ToHexString(ours));
    }
}
