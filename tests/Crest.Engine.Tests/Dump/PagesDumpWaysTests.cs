using Crest.Engine.Dump;
using Crest.Engine.Memory;
using Crest.Images.Pages;
using Crest.Kernel.Tests.Fixtures;

namespace Crest.Engine.Tests.Dump;

// Two other ways than the buffered writer: the dumper reads memory straight into a shared mapping of
// pages-1.img by several readers ("mapped"), or the task writes its own pages into the file ("task",
// the default where the task may). The images must be byte for byte those of the buffered writer (the
// same entries, the same page data in order). Something in the fixture's small data (two words of one
// page) may change between dumps that leave it running, so the other dump is taken between two buffered
// ones: the entries must be identical, the large data areas too, and at most two small pages may differ
// from the nearer of the two.
[Collection("Children of the test process")]
public sealed class PagesDumpWaysTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("crest-pages-ways-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData("mapped")]
    [InlineData("task")]
    public void OtherWaysAndBufferedDumpsWriteTheSameMemoryImages(string way)
    {
        using var fixture = FixtureProcess.Start("restore_memory", "40");
        string before = Dump(fixture, "buffered-before", "buffered");
        long byTasks = PageDumper.BytesWrittenByTasks;
        string mapped = Dump(fixture, way, way);
        if (way == "task") Assert.True(PageDumper.BytesWrittenByTasks - byTasks >= 40 << 20, "the task did not write its pages");
        string after = Dump(fixture, "buffered-after", "buffered");

        string pagemap = $"pagemap-{fixture.Pid}.img";
        byte[] expected = File.ReadAllBytes(Path.Combine(before, pagemap));
        Assert.Equal(expected, File.ReadAllBytes(Path.Combine(mapped, pagemap)));
        Assert.Equal(expected, File.ReadAllBytes(Path.Combine(after, pagemap)));

        byte[] a = File.ReadAllBytes(Path.Combine(before, "pages-1.img")), m = File.ReadAllBytes(Path.Combine(mapped, "pages-1.img")),
            b = File.ReadAllBytes(Path.Combine(after, "pages-1.img"));
        Assert.Equal(a.Length, m.Length);
        Assert.Equal(a.Length, b.Length);
        Assert.True(a.Length >= 40 << 20);
        var differing = new[] { DifferingPages(a, m), DifferingPages(m, b) }.MinBy(d => d.Count)!;
        Assert.True(differing.Count <= 2, $"the mapped dump differs from the buffered ones in {differing.Count} pages: {string.Join(", ", differing.Take(10))}");
        using var entries = PagemapReader.Open(Path.Combine(mapped, pagemap));
        while (entries.TryRead(out PagemapRecord entry))
        {
            if (entry.NrPages < 256) continue;
            long first = entry.PagesOffset / 4096;
            Assert.DoesNotContain(differing, p => p >= first && p < first + entry.NrPages);
        }
        Assert.Equal("PASS", fixture.Verify(10, TimeSpan.FromSeconds(30)));
    }

    private string Dump(FixtureProcess fixture, string name, string way)
    {
        string dir = Path.Combine(_dir, name);
        Directory.CreateDirectory(dir);
        PageDumper.MapPagesFile = way == "mapped";
        PageDumper.TaskWrites = way == "task";
        try
        {
            DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = dir, LeaveRunning = true });
        }
        finally
        {
            PageDumper.MapPagesFile = PageDumper.MapPagesFileByDefault;
            PageDumper.TaskWrites = true;
        }
        return dir;
    }

    private static List<int> DifferingPages(byte[] x, byte[] y) =>
        Enumerable.Range(0, x.Length / 4096).Where(p => !x.AsSpan(p * 4096, 4096).SequenceEqual(y.AsSpan(p * 4096, 4096))).ToList();
}
