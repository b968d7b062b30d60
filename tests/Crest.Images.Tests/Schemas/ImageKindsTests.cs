// The image-kind table: lookups by magic, crit name and file name, and agreement with crit's magic table.
using System.Text.Json;
using Crest.Images.Protos;
using Google.Protobuf.Reflection;

namespace Crest.Images.Tests.Schemas;

public sealed class ImageKindsTests
{
    // Entries of crit's magic table that are not image kinds: the format version, the two prefixes, and
    // kerndat's cache, which lives in /run and not in an image directory.
    private static readonly HashSet<string> s_notKinds = ["CRTOOLS_IMAGES_V1_1", "IMG_COMMON", "IMG_SERVICE", "KDAT"];

    [Fact]
    public void MagicsAreCritsMagics()
    {
        JsonElement magics = CritSchemas.Document.RootElement.GetProperty("magics");
        Assert.Equal(ImageKinds.CommonMagic, magics.GetProperty("IMG_COMMON").GetUInt32());
        Assert.Equal(ImageKinds.ServiceMagic, magics.GetProperty("IMG_SERVICE").GetUInt32());

        foreach (ImageKind kind in ImageKinds.All.Where(k => !k.IsRaw))
        {
            Assert.True(magics.TryGetProperty(kind.Name, out JsonElement magic), $"crit has no magic named {kind.Name}");
            Assert.True(magic.GetUInt32() == kind.Magic, $"{kind.Name}: 0x{kind.Magic:x8} here, 0x{magic.GetUInt32():x8} in crit");
        }
        foreach (JsonProperty magic in magics.EnumerateObject())
        {
            if (!s_notKinds.Contains(magic.Name))
                Assert.True(ImageKinds.ByName(magic.Name) is not null, $"crit's {magic.Name} has no image kind");
        }
    }

    [Fact]
    public void NamesAndMagicsDetermineEachOther()
    {
        foreach (IGrouping<uint, ImageKind> sameMagic in ImageKinds.All.Where(k => !k.IsRaw).GroupBy(k => k.Magic))
            Assert.Single(sameMagic.Select(k => k.Name).Distinct());
        foreach (IGrouping<string, ImageKind> sameName in ImageKinds.All.GroupBy(k => k.Name))
            Assert.Single(sameName.Select(k => k.Magic).Distinct());
        Assert.Equal(ImageKinds.All.Count, ImageKinds.All.Select(k => k.FileNamePattern).Distinct().Count());
    }

    [Fact]
    public void ByMagicAndByNameFindTheFirstKindOfAMagic()
    {
        foreach (ImageKind kind in ImageKinds.All.Where(k => !k.IsRaw))
        {
            ImageKind first = ImageKinds.All.First(k => k.Magic == kind.Magic);
            Assert.Same(first, ImageKinds.ByMagic(kind.Magic));
            Assert.Same(first, ImageKinds.ByName(kind.Name));
        }
        Assert.Same(ImageKinds.Pagemap, ImageKinds.ByMagic(0x56084025));
        Assert.Same(ImageKinds.Signal, ImageKinds.ByName("SIGNAL"));
        Assert.Same(ImageKinds.Pages, ImageKinds.ByName("PAGES"));
        Assert.Null(ImageKinds.ByMagic(0));
        Assert.Null(ImageKinds.ByMagic(ImageKinds.CommonMagic));
        Assert.Null(ImageKinds.ByMagic(0xdeadbeef));
        Assert.Null(ImageKinds.ByName("core"));
    }

    [Theory]
    [InlineData("core-42.img", "core-{id}.img")]
    [InlineData("/var/lib/dump/core-1.img", "core-{id}.img")]
    [InlineData("pages-1.img", "pages-{id}.img")]
    [InlineData("pagemap-3.img", "pagemap-{id}.img")]
    [InlineData("pagemap-shmem-77.img", "pagemap-shmem-{id}.img")]
    [InlineData("inventory.img", "inventory.img")]
    [InlineData("tty.img", "tty.img")]
    [InlineData("tty-info.img", "tty-info.img")]
    [InlineData("netns-3.img", "netns-{id}.img")]
    [InlineData("netns-ct-3.img", "netns-ct-{id}.img")]
    [InlineData("signal-p-9.img", "signal-p-{id}.img")]
    [InlineData("tcp-stream-1a2b.img", "tcp-stream-{hexid}.img")]
    [InlineData("ghost-file-ff.img", "ghost-file-{hexid}.img")]
    [InlineData("stats-dump.img", "stats-dump.img")]
    [InlineData("stats-restore.img", "stats-restore.img")]
    [InlineData("tmpfs-dev-5.tar.gz.img", "tmpfs-dev-{id}.tar.gz.img")]
    public void ForFileNameFindsTheKind(string fileName, string pattern) =>
        Assert.Equal(pattern, ImageKinds.ForFileName(fileName)?.FileNamePattern);

    [Theory]
    [InlineData("core-.img")]
    [InlineData("core-4a.img")]
    [InlineData("core-42.img.tmp")]
    [InlineData("pagemap-shmem-x.img")]
    [InlineData("restore.log")]
    [InlineData("")]
    public void ForFileNameRejectsOtherNames(string fileName) => Assert.Null(ImageKinds.ForFileName(fileName));

    [Fact]
    public void FileNameRoundTripsThroughForFileName()
    {
        foreach (ImageKind kind in ImageKinds.All)
            Assert.Same(kind, ImageKinds.ForFileName(ImageKinds.FileName(kind, 4242)));
        Assert.Equal("core-4242.img", ImageKinds.FileName(ImageKinds.Core, 4242));
        Assert.Equal("tcp-stream-1092.img", ImageKinds.FileName(ImageKinds.TcpStream, 0x1092));
        Assert.Equal("inventory.img", ImageKinds.FileName(ImageKinds.Inventory));
    }

    [Fact]
    public void PrefixesAndEntriesFitEachKind()
    {
        Assert.Equal(MagicPrefix.None, ImageKinds.Inventory.Prefix);
        Assert.Equal(MagicPrefix.Service, ImageKinds.Stats.Prefix);
        Assert.Equal(0x57093306u, ImageKinds.Stats.Magic);
        Assert.Equal(MagicPrefix.Service, ImageKinds.StatsRestore.Prefix);
        Assert.Equal(MagicPrefix.Service, ImageKinds.IrmapCache.Prefix);
        Assert.Same(PagemapHead.Descriptor, ImageKinds.Pagemap.HeadEntry);
        Assert.Same(PagemapEntry.Descriptor, ImageKinds.Pagemap.Entry);
        Assert.Same(CoreEntry.Descriptor, ImageKinds.Core.Entry);
        Assert.Equal("bytes", ImageKinds.PipesData.ExtraPayloadField);
        Assert.Equal(["bytes"], ImageKinds.FifoData.ExtraPayloadFields);
        Assert.Equal(["length"], ImageKinds.SkQueues.ExtraPayloadFields);
        Assert.Equal(["inq_len", "outq_len"], ImageKinds.TcpStream.ExtraPayloadFields);
        Assert.Equal(["keys_bytes", "values_bytes"], ImageKinds.BpfmapData.ExtraPayloadFields);

        foreach (ImageKind kind in ImageKinds.All)
        {
            if (kind.IsRaw)
            {
                Assert.Equal(0u, kind.Magic);
                Assert.Null(kind.Entry);
                continue;
            }
            Assert.NotNull(kind.Entry);
            Assert.NotEqual(MagicPrefix.Raw, kind.Prefix);
            Assert.Equal(kind.Name is "INVENTORY", kind.Prefix == MagicPrefix.None);
            Assert.Equal(kind.Name is "STATS" or "IRMAP_CACHE", kind.Prefix == MagicPrefix.Service);
            if (kind.ExtraPayloadField is not null)
                Assert.Equal(kind.ExtraPayloadField, kind.ExtraPayloadFields[0]);
            foreach (string countField in kind.ExtraPayloadFields)
            {
                FieldDescriptor? field = kind.Entry!.FindFieldByName(countField);
                Assert.True(field is { FieldType: FieldType.UInt32, IsRepeated: false }, $"{kind.Name}.{countField} is not a u32 count");
            }
        }
    }
}
