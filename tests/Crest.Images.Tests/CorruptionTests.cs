// Broken images of every kind we can make — each truncation, each single bit flipped, random bytes,
// wrong magics, absurd lengths — must end in an ImageFormatException that names the file, the entry and
// an offset inside the file, or (when the damage leaves a valid image) decode cleanly. Never another
// exception type, never a hang: every test has a timeout.
using System.Text;
using System.Text.Json;
using Crest.Images.Json;

namespace Crest.Images.Tests;

public sealed class CorruptionTests
{
    public static TheoryData<string> SampleNames()
    {
        var data = new TheoryData<string>();
        foreach (string name in Samples.Names)
            data.Add(name);
        return data;
    }

    // Decodes the bytes; null on success, the ImageFormatException otherwise. Any other exception fails.
    private static ImageFormatException? TryDecode(byte[] image, string name, bool forwardOnly = false)
    {
        Stream input = forwardOnly ? new ForwardOnlyStream(new MemoryStream(image)) : new MemoryStream(image);
        try
        {
            CritTool.Decode(input, name, Stream.Null, pretty: true);
            return null;
        }
        catch (ImageFormatException e)
        {
            Assert.Equal(name, e.File);
            Assert.InRange(e.Offset, 0, image.Length);
            Assert.InRange(e.EntryIndex, ImageFormatException.HeaderEntry, image.Length);
            Assert.StartsWith($"{name}: ", e.Message);
            return e;
        }
    }

    // Entry boundaries of a valid image (where a truncated copy is still a complete image): the lengths
    // of the images encoded from the first k entries of its JSON, k = 0..n.
    private static HashSet<int> Boundaries(byte[] image, string name)
    {
        var json = new MemoryStream();
        CritTool.Decode(new MemoryStream(image), name, json, pretty: false);
        using JsonDocument document = JsonDocument.Parse(json.ToArray());
        string magic = document.RootElement.GetProperty("magic").GetString()!;
        JsonElement[] entries = document.RootElement.GetProperty("entries").EnumerateArray().ToArray();
        var boundaries = new HashSet<int>();
        for (int k = 0; k <= entries.Length; k++)
        {
            string prefix = $"{{\"magic\": \"{magic}\", \"entries\": [{string.Join(", ", entries[..k].Select(e => e.GetRawText()))}]}}";
            var encoded = new MemoryStream();
            CritTool.Encode(new MemoryStream(Encoding.UTF8.GetBytes(prefix)), name, encoded);
            boundaries.Add((int)encoded.Length);
        }
        return boundaries;
    }

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(SampleNames))]
    public async Task EveryTruncationIsReportedOrEndsAtAnEntryBoundary(string sample)
    {
        await Task.Yield();
        byte[] image = Samples.Image(sample);
        string name = Path.ChangeExtension(sample, ".img");
        HashSet<int> boundaries = Boundaries(image, name);
        foreach (bool forwardOnly in new[] { false, true })
        {
            for (int length = 0; length < image.Length; length++)
            {
                ImageFormatException? error = TryDecode(image[..length], name, forwardOnly);
                // A ghost file without chunks keeps the file's contents in the rest of the image: any cut
                // after its entry is a shorter, still valid file.
                bool irregularTail = length > boundaries.Min() && sample == "ghost-file-1a.json";
                if (boundaries.Contains(length) || irregularTail && error is null)
                    continue;
                Assert.True(error is not null, $"{sample} cut to {length} of {image.Length} bytes decoded without error");
            }
        }
    }

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(SampleNames))]
    public async Task EveryBitFlipIsReportedOrDecodes(string sample)
    {
        await Task.Yield();
        byte[] image = Samples.Image(sample);
        string name = Path.ChangeExtension(sample, ".img");
        for (int bit = 0; bit < image.Length * 8; bit++)
        {
            byte[] damaged = (byte[])image.Clone();
            damaged[bit / 8] ^= (byte)(1 << (bit % 8));
            TryDecode(damaged, name);
        }
    }

    [Fact(Timeout = 120_000)]
    public async Task RandomBytesAreReportedOrDecode()
    {
        await Task.Yield();
        var random = new Random(20261123);
        byte[][] headers = [[], [0x19, 0x43, 0x56, 0x54, 0x47, 0x38, 0x05, 0x55], [0x16, 0x31, 0x31, 0x58],
            [0x19, 0x43, 0x56, 0x54, 0x09, 0x37, 0x45, 0x56]];
        for (int i = 0; i < 4000; i++)
        {
            byte[] header = headers[i % headers.Length];
            byte[] image = new byte[header.Length + random.Next(0, 300)];
            random.NextBytes(image);
            header.CopyTo(image, 0);
            TryDecode(image, "random.img");
        }
    }

    [Fact]
    public void AnEntryLongerThanTheFileIsTruncation()
    {
        byte[] image = [0x19, 0x43, 0x56, 0x54, 0x30, 0x30, 0x27, 0x50, 120, 0, 0, 0, 8, 1, 16, 0];
        ImageFormatException error = Assert.Throws<ImageFormatException>(() => ReadAll(image, "pstree.img"));
        Assert.Equal("pstree.img: entry 0 at offset 0x8: truncated: length 120 but only 4 bytes remain", error.Message);
        Assert.Equal(0, error.EntryIndex);
        Assert.Equal(8, error.Offset);
    }

    [Fact]
    public void AnAbsurdLengthIsRefusedBeforeAllocating()
    {
        byte[] image = [0x19, 0x43, 0x56, 0x54, 0x30, 0x30, 0x27, 0x50, 0xf0, 0xff, 0xff, 0xff];
        foreach (bool forwardOnly in new[] { false, true })
        {
            Stream input = forwardOnly ? new ForwardOnlyStream(new MemoryStream(image)) : new MemoryStream(image);
            using var reader = new ImageReader(input, "pstree.img");
            ImageFormatException error = Assert.Throws<ImageFormatException>(() => reader.TryReadEntry(out _));
            Assert.Contains("length 4294967280 exceeds the limit", error.Message);
        }
    }

    [Fact]
    public void ATruncatedLengthIsReported()
    {
        byte[] image = [0x19, 0x43, 0x56, 0x54, 0x30, 0x30, 0x27, 0x50, 8, 0, 0, 0, 8, 1, 16, 0, 24, 1, 32, 1, 7, 0];
        ImageFormatException error = Assert.Throws<ImageFormatException>(() => ReadAll(image, "pstree.img"));
        Assert.Equal("pstree.img: entry 1 at offset 0x14: truncated: 2 of 4 length bytes", error.Message);
    }

    [Fact]
    public void MagicsAreChecked()
    {
        byte[] pstree = [0x19, 0x43, 0x56, 0x54, 0x30, 0x30, 0x27, 0x50];
        ImageFormatException wrongKind = Assert.Throws<ImageFormatException>(
            () => new ImageReader(new MemoryStream(pstree), "core-1.img", ImageKinds.Core));
        Assert.Equal("core-1.img: header at offset 0x4: bad magic 0x50273030, expected CORE 0x55053847", wrongKind.Message);

        byte[] unknown = [0x19, 0x43, 0x56, 0x54, 1, 2, 3, 4];
        ImageFormatException unknownMagic = Assert.Throws<ImageFormatException>(() => new ImageReader(new MemoryStream(unknown), "x.img"));
        Assert.Equal("x.img: header at offset 0x4: unknown magic 0x04030201", unknownMagic.Message);

        byte[] prefixedInventory = [0x19, 0x43, 0x56, 0x54, 0x16, 0x31, 0x31, 0x58];
        ImageFormatException prefix = Assert.Throws<ImageFormatException>(() => new ImageReader(new MemoryStream(prefixedInventory), "inventory.img"));
        Assert.Contains("INVENTORY magic 0x58313116 behind the common magic", prefix.Message);

        byte[] coreAsService = [0x40, 0x59, 0x10, 0x55, 0x47, 0x38, 0x05, 0x55];
        Assert.Throws<ImageFormatException>(() => new ImageReader(new MemoryStream(coreAsService), "core-1.img"));

        byte[] pages = new byte[4096];
        ImageFormatException raw = Assert.Throws<ImageFormatException>(() => new ImageReader(new MemoryStream(pages), "pages-1.img"));
        Assert.Equal("pages-1.img: header at offset 0x0: unknown magic 0x00000000 (pages-1.img is a PAGES image: raw data without magic or entries)", raw.Message);

        ImageFormatException shortHeader = Assert.Throws<ImageFormatException>(() => new ImageReader(new MemoryStream(pstree[..6]), "pstree.img"));
        Assert.Equal("pstree.img: header at offset 0x4: truncated header: 2 of 4 magic bytes", shortHeader.Message);
    }

    [Fact]
    public void ProtobufGarbageAndMissingRequiredFieldsAreReported()
    {
        // pstree entry of 3 bytes: field 1 varint 5, then a tag with wire type 7.
        byte[] garbage = [0x19, 0x43, 0x56, 0x54, 0x30, 0x30, 0x27, 0x50, 3, 0, 0, 0, 8, 5, 0x0f];
        ImageFormatException bad = Assert.Throws<ImageFormatException>(() => ReadAll(garbage, "pstree.img"));
        Assert.Contains("invalid wire type 7", bad.Message);

        byte[] pidOnly = [0x19, 0x43, 0x56, 0x54, 0x30, 0x30, 0x27, 0x50, 2, 0, 0, 0, 8, 5];
        ImageFormatException missing = Assert.Throws<ImageFormatException>(() => ReadAll(pidOnly, "pstree.img"));
        Assert.Equal("pstree.img: entry 0 at offset 0x8: PstreeEntry: required field PstreeEntry.ppid is missing (byte 0 of the entry)", missing.Message);
    }

    private static void ReadAll(byte[] image, string name)
    {
        using var reader = new ImageReader(new MemoryStream(image), name);
        while (reader.ReadEntry(Crest.Images.Protos.PstreeEntry.Parser) is not null)
        {
        }
    }
}
