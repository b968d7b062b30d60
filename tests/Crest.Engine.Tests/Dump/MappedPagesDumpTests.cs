using Crest.Engine.Dump;
using Crest.Engine.Memory;
using Crest.Kernel.Tests.Fixtures;

namespace Crest.Engine.Tests.Dump;

// The dumper reads memory straight into a shared mapping of pages-1.img by several readers; the images
// must be byte for byte those of the buffered writer (the same entries, the same page data in order).
// The fixture's libc changes a word of one page between dumps that leave it running, so the mapped dump is
// taken between two buffered ones and a page may differ only where those two differ as well.
[Collection("Children of the test process")]
public sealed class MappedPagesDumpTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("crest-mapped-dump-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void MappedAndBufferedDumpsWriteTheSameMemoryImages()
    {
        using var fixture = FixtureProcess.Start("restore_memory", "40");
        string before = Dump(fixture, "buffered-before", mapped: false);
        string mapped = Dump(fixture, "mapped", mapped: true);
        string after = Dump(fixture, "buffered-after", mapped: false);

        string pagemap = $"pagemap-{fixture.Pid}.img";
        byte[] expected = File.ReadAllBytes(Path.Combine(before, pagemap));
        Assert.Equal(expected, File.ReadAllBytes(Path.Combine(mapped, pagemap)));
        Assert.Equal(expected, File.ReadAllBytes(Path.Combine(after, pagemap)));

        byte[] a = File.ReadAllBytes(Path.Combine(before, "pages-1.img")), m = File.ReadAllBytes(Path.Combine(mapped, "pages-1.img")),
            b = File.ReadAllBytes(Path.Combine(after, "pages-1.img"));
        Assert.Equal(a.Length, m.Length);
        Assert.Equal(a.Length, b.Length);
        Assert.True(a.Length >= 40 << 20);
        var changing = DifferingPages(a, b);
        var wrong = DifferingPages(a, m).Concat(DifferingPages(m, b)).Except(changing).Distinct().ToList();
        Assert.True(wrong.Count == 0, $"the mapped dump differs from both buffered ones in pages {string.Join(", ", wrong.Take(10))} " +
            $"(pages changing between dumps: {string.Join(", ", changing)})");
        Assert.True(changing.Count <= 2, $"{changing.Count} pages changed between two dumps of an idle fixture");
        Assert.Equal("PASS", fixture.Verify(10, TimeSpan.FromSeconds(30)));
    }

    private string Dump(FixtureProcess fixture, string name, bool mapped)
    {
        string dir = Path.Combine(_dir, name);
        Directory.CreateDirectory(dir);
        PageDumper.MapPagesFile = mapped;
        try
        {
            DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = dir, LeaveRunning = true });
        }
        finally
        {
            PageDumper.MapPagesFile = PageDumper.MapPagesFileByDefault;
        }
        return dir;
    }

    private static List<int> DifferingPages(byte[] x, byte[] y) =>
        Enumerable.Range(0, x.Length / 4096).Where(p => !x.AsSpan(p * 4096, 4096).SequenceEqual(y.AsSpan(p * 4096, 4096))).ToList();
}
