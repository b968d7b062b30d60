// Memory images: PageImageWriter lays out pagemap entries and page data; PagemapReader and PagesReader
// give back every entry and its bytes, sequentially and by offset; crit reads the pagemap we wrote.
using Crest.Images.Pages;

namespace Crest.Images.Tests;

public sealed class PageImageTests
{
    private const int Page = PageImageWriter.PageSize;

    [Fact(Timeout = 60_000)]
    public async Task PagesWrittenAreReadBackInOrderAndByOffset()
    {
        await Task.Yield();
        using var scratch = new TempDirectory();
        var random = new Random(7);
        byte[] text = new byte[2 * Page];
        byte[] heap = new byte[300 * Page];
        byte[] stack = new byte[Page];
        random.NextBytes(text);
        random.NextBytes(heap);
        random.NextBytes(stack);

        using (PageImageWriter writer = PageImageWriter.Create(scratch.Path, pagemapId: 4242, pagesId: 1))
        {
            writer.AddPresent(0x400000, text);
            writer.AddWithoutData(0x600000, 16, PagemapFlags.Parent);
            writer.AddPresent(0x55d0c1a5c000, heap, PagemapFlags.Lazy);
            writer.AddPresent(0x7ffd6b1c1000, stack);
            Assert.Throws<ArgumentException>(() => writer.AddPresent(0x1000, stack)); // out of order
            Assert.Throws<ArgumentException>(() => writer.AddPresent(0x7fffff000000, new byte[100]));
            Assert.Equal(3 * Page + heap.Length, writer.PagesWritten);
        }
        Assert.Equal(3 * Page + heap.Length, new FileInfo(scratch.File("pages-1.img")).Length);

        var records = new List<PagemapRecord>();
        using (PagemapReader pagemap = PagemapReader.Open(scratch.File("pagemap-4242.img")))
        {
            Assert.Equal(1u, pagemap.PagesId);
            while (pagemap.TryRead(out PagemapRecord record))
                records.Add(record);
        }
        Assert.Equal(
            [
                new PagemapRecord(1, 0x400000, 2, PagemapFlags.Present, 0),
                new PagemapRecord(2, 0x600000, 16, PagemapFlags.Parent, -1),
                new PagemapRecord(3, 0x55d0c1a5c000, 300, PagemapFlags.Present | PagemapFlags.Lazy, 2 * Page),
                new PagemapRecord(4, 0x7ffd6b1c1000, 1, PagemapFlags.Present, 302 * Page),
            ],
            records);

        using PagesReader pages = PagesReader.Open(scratch.File("pages-1.img"));
        byte[] buffer = new byte[heap.Length];
        pages.ReadPages(records[0], buffer.AsSpan(0, text.Length));
        Assert.Equal(text, buffer[..text.Length]);
        pages.ReadPages(records[2], buffer);
        Assert.Equal(heap, buffer);
        pages.ReadPages(records[3], buffer.AsSpan(0, Page));
        Assert.Equal(stack, buffer[..Page]);
        pages.ReadPages(records[0], buffer.AsSpan(0, text.Length)); // back to the start: by offset
        Assert.Equal(text, buffer[..text.Length]);

        string json = Crit.Decode(scratch.File("pagemap-4242.img"), pretty: true);
        Assert.Contains("\"pages_id\": 1", json);
        Assert.Contains("\"vaddr\": \"0x55d0c1a5c000\"", json);
        Assert.Contains("\"flags\": \"PE_LAZY | PE_PRESENT\"", json);
        Assert.Contains("\"flags\": \"PE_PARENT\"", json);
    }

    [Fact]
    public void PageDataCanArriveInPieces()
    {
        var pagemap = new MemoryStream();
        var pagesData = new MemoryStream();
        byte[] data = new byte[8 * Page];
        new Random(3).NextBytes(data);
        using (var writer = new PageImageWriter(pagemap, pagesData, pagesId: 2, leaveOpen: true))
        {
            writer.BeginPresent(0x7f0000000000, 8);
            Assert.Throws<InvalidOperationException>(() => writer.AddWithoutData(0x7f1000000000, 1, PagemapFlags.Parent));
            for (int offset = 0; offset < data.Length; offset += 3000)
                writer.WritePageData(data.AsSpan(offset, Math.Min(3000, data.Length - offset)));
            Assert.Throws<InvalidOperationException>(() => writer.WritePageData([1]));
            writer.AddWithoutData(0x7f1000000000, 1, PagemapFlags.Parent);
            writer.Complete();
        }
        Assert.Equal(data, pagesData.ToArray());

        pagemap.Position = 0;
        using var reader = new PagemapReader(pagemap, "pagemap-1.img");
        Assert.True(reader.TryRead(out PagemapRecord first));
        Assert.Equal(new PagemapRecord(1, 0x7f0000000000, 8, PagemapFlags.Present, 0), first);
        Assert.True(reader.TryRead(out PagemapRecord second));
        Assert.Equal(PagemapFlags.Parent, second.Flags);

        using var incomplete = new PageImageWriter(new MemoryStream(), new MemoryStream(), pagesId: 2);
        incomplete.BeginPresent(0x1000, 2);
        incomplete.WritePageData(new byte[Page]);
        Assert.Throws<InvalidOperationException>(incomplete.Complete);
        incomplete.WritePageData(new byte[Page]);
        incomplete.Complete();
    }

    [Fact]
    public void ReservedPageDataIsPlacedByTheCaller()
    {
        using var scratch = new TempDirectory();
        byte[] first = new byte[3 * Page], second = new byte[Page];
        new Random(5).NextBytes(first);
        new Random(6).NextBytes(second);
        using (PageImageWriter writer = PageImageWriter.Create(scratch.Path, pagemapId: 7, pagesId: 1))
        {
            Assert.Equal(0, writer.ReservePresent(0x10000, 3));
            Assert.Equal(3 * Page, writer.ReservePresent(0x20000, 1));
            Assert.Throws<InvalidOperationException>(() => writer.AddPresent(0x30000, second));
            writer.SizeReserved();
            Assert.Equal(4 * Page, writer.PagesReserved);
            // The caller's own placement (a dumper maps the file); here plain positional writes.
            RandomAccess.Write(writer.PagesFile!, second, 3 * Page);
            RandomAccess.Write(writer.PagesFile!, first, 0);
            writer.Complete();
        }
        Assert.Equal([.. first, .. second], File.ReadAllBytes(scratch.File("pages-1.img")));
        using PagemapReader pagemap = PagemapReader.Open(scratch.File("pagemap-7.img"));
        Assert.True(pagemap.TryRead(out PagemapRecord a));
        Assert.Equal(new PagemapRecord(1, 0x10000, 3, PagemapFlags.Present, 0), a);
        Assert.True(pagemap.TryRead(out PagemapRecord b));
        Assert.Equal(new PagemapRecord(2, 0x20000, 1, PagemapFlags.Present, 3 * Page), b);
        Assert.False(pagemap.TryRead(out _));

        using var streamed = new PageImageWriter(new MemoryStream(), new MemoryStream(), pagesId: 2);
        Assert.Null(streamed.PagesFile);
        Assert.Throws<InvalidOperationException>(() => streamed.ReservePresent(0x1000, 1));
    }

    [Fact]
    public void ATruncatedPagesFileIsCorruption()
    {
        var pagemap = new MemoryStream();
        var pagesData = new MemoryStream();
        using (var writer = new PageImageWriter(pagemap, pagesData, pagesId: 3, leaveOpen: true))
            writer.AddPresent(0x10000, new byte[4 * Page]);
        pagemap.Position = 0;
        using var reader = new PagemapReader(pagemap, "pagemap-1.img");
        Assert.True(reader.TryRead(out PagemapRecord record));
        using var pages = new PagesReader(new MemoryStream(pagesData.ToArray()[..(3 * Page + 10)]), "pages-3.img");
        ImageFormatException error = Assert.Throws<ImageFormatException>(() => pages.ReadPages(record, new byte[4 * Page]));
        Assert.Equal($"pages-3.img: entry 1 at offset 0x0: truncated: {4 * Page} bytes of pages wanted but only {3 * Page + 10} remain", error.Message);
    }

    [Fact]
    public void OldPagemapsWithoutFlagsUseInParent()
    {
        var image = new MemoryStream();
        using (var writer = new ImageWriter(image, ImageKinds.Pagemap, leaveOpen: true))
        {
            writer.WriteEntry(new Protos.PagemapHead { PagesId = 9 });
            writer.WriteEntry(new Protos.PagemapEntry { Vaddr = 0x1000, NrPages = 1, InParent = true });
            writer.WriteEntry(new Protos.PagemapEntry { Vaddr = 0x2000, NrPages = 2 });
        }
        image.Position = 0;
        using var reader = new PagemapReader(image, "pagemap-1.img");
        Assert.True(reader.TryRead(out PagemapRecord parent));
        Assert.Equal(PagemapFlags.Parent, parent.Flags);
        Assert.True(reader.TryRead(out PagemapRecord present));
        Assert.Equal(new PagemapRecord(2, 0x2000, 2, PagemapFlags.Present, 0), present);
        Assert.False(reader.TryRead(out _));
    }

    [Fact]
    public void OverlappingOrUnalignedEntriesAreCorruption()
    {
        var image = new MemoryStream();
        using (var writer = new ImageWriter(image, ImageKinds.Pagemap, leaveOpen: true))
        {
            writer.WriteEntry(new Protos.PagemapHead { PagesId = 9 });
            writer.WriteEntry(new Protos.PagemapEntry { Vaddr = 0x4000, NrPages = 4, Flags = 4 });
            writer.WriteEntry(new Protos.PagemapEntry { Vaddr = 0x5000, NrPages = 1, Flags = 4 });
        }
        image.Position = 0;
        using var reader = new PagemapReader(image, "pagemap-1.img");
        Assert.True(reader.TryRead(out _));
        ImageFormatException error = Assert.Throws<ImageFormatException>(() => reader.TryRead(out _));
        Assert.Equal(2, error.EntryIndex);
        Assert.Contains("overlaps", error.Message);
    }
}
