// A chain of pre-dump images: PE_PARENT entries are found in the "parent" directory (recursively), cut to
// the parent's own runs; a page the chain does not hold, a lazy entry or a missing link is an error.
using Crest.Images.Pages;

namespace Crest.Images.Tests;

public sealed class PageChainTests
{
    private const int Page = PageImageWriter.PageSize;
    private const ulong Pid = 77;

    private static void Write(string dir, uint pagesId, Action<PageImageWriter> entries)
    {
        Directory.CreateDirectory(dir);
        using var writer = PageImageWriter.Create(dir, Pid, pagesId);
        entries(writer);
    }

    private static byte[] Pages(int count, byte fill) => Enumerable.Repeat(fill, count * Page).ToArray();

    [Fact]
    public void ParentEntriesResolveThroughTwoLevels()
    {
        using var scratch = new TempDirectory();
        string d1 = scratch.File("d1"), d2 = scratch.File("d2"), d3 = scratch.File("d3");
        Write(d1, 1, w => w.AddPresent(0x10000, Pages(8, 1)));
        Write(d2, 1, w =>
        {
            w.AddPresent(0x10000, Pages(2, 2));
            w.AddWithoutData(0x12000, 6, PagemapFlags.Parent);
        });
        File.CreateSymbolicLink(Path.Combine(d2, "parent"), "../d1");
        Write(d3, 1, w =>
        {
            w.AddWithoutData(0x10000, 3, PagemapFlags.Parent);
            w.AddPresent(0x13000, Pages(1, 3));
            w.AddWithoutData(0x14000, 4, PagemapFlags.Parent);
        });
        File.CreateSymbolicLink(Path.Combine(d3, "parent"), "../d2");

        var chain = PageChain.Resolve(d3, Pid);
        Assert.Equal(3, chain.Sources.Count);
        string Where(PageRun r) => $"{r.Vaddr:x}+{r.NrPages}@{Path.GetFileName(Path.GetDirectoryName(chain.Sources[r.Source].Path))}:{r.Offset / Page}";
        Assert.Equal(["10000+2@d2:0", "12000+1@d1:2", "13000+1@d3:0", "14000+4@d1:4"], chain.Runs.Select(Where));
        Assert.Equal(8L * Page, chain.Bytes);

        // The data behind each run is what the round that wrote it saw.
        byte ByteOf(PageRun r)
        {
            using var f = File.OpenRead(chain.Sources[r.Source].Path);
            f.Seek(r.Offset, SeekOrigin.Begin);
            return (byte)f.ReadByte();
        }
        Assert.Equal(new byte[] { 2, 1, 3, 1 }, chain.Runs.Select(ByteOf));
    }

    [Fact]
    public void PageMissingFromTheParentIsAnError()
    {
        using var scratch = new TempDirectory();
        string d1 = scratch.File("d1"), d2 = scratch.File("d2");
        Write(d1, 1, w => w.AddPresent(0x10000, Pages(2, 1)));
        Write(d2, 1, w => w.AddWithoutData(0x10000, 3, PagemapFlags.Parent));
        File.CreateSymbolicLink(Path.Combine(d2, "parent"), "../d1");
        var e = Assert.Throws<ImageFormatException>(() => PageChain.Resolve(d2, Pid));
        Assert.Contains("page 0x12000 is marked as being in the parent images", e.Message);
    }

    [Fact]
    public void ParentEntriesWithoutALinkAreAnError()
    {
        using var scratch = new TempDirectory();
        string d2 = scratch.File("d2");
        Write(d2, 1, w => w.AddWithoutData(0x10000, 3, PagemapFlags.Parent));
        var e = Assert.Throws<ImageFormatException>(() => PageChain.Resolve(d2, Pid));
        Assert.Contains("is not a directory", e.Message);
    }

    [Fact]
    public void LinkLoopEnds()
    {
        using var scratch = new TempDirectory();
        string d1 = scratch.File("d1");
        Write(d1, 1, w => w.AddWithoutData(0x10000, 1, PagemapFlags.Parent));
        File.CreateSymbolicLink(Path.Combine(d1, "parent"), ".");
        var e = Assert.Throws<ImageFormatException>(() => PageChain.Resolve(d1, Pid));
        Assert.Contains("longer than", e.Message);
    }
}
