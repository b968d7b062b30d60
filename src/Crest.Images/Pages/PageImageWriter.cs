// Writes a task's memory in CRIU's two-file form (ENGINE.md §6):
//
//   pagemap-ID.img                         pages-N.img (raw, no magic)
//   +-----------------------------+        +---------------------------------+
//   | magics COMMON, PAGEMAP      |        | pages of entry 1 (PE_PRESENT)   |
//   | head {pages_id = N}         |        | pages of entry 3 (PE_PRESENT)   |
//   | entry {vaddr, nr, flags}  1 |------->| ...                             |
//   | entry {..., PE_PARENT}    2 |        +---------------------------------+
//   | entry {..., PE_PRESENT}   3 |   (entries without PE_PRESENT have no data here)
//   +-----------------------------+
//
// Page data goes out in large sequential writes through a big buffer; entries are small protobufs. Or,
// when pages-N.img is a file, the caller reserves the data of every entry first and places it in the
// file itself (a dumper that maps the file and reads a task's memory straight into the mapping).
using Crest.Images.Protos;
using Microsoft.Win32.SafeHandles;

namespace Crest.Images.Pages;

/// <summary>Appends pagemap entries and their page contents to a pagemap/pages image pair.</summary>
public sealed class PageImageWriter : IPageSink
{
    public const int PageSize = 4096;
    private const int PagesBufferSize = 1 << 20;

    private readonly ImageWriter _pagemap;
    private readonly Stream _pages;
    private readonly bool _leaveOpen;
    private readonly bool _syncOnClose;
    private ulong _previousEnd;
    private long _dataOwed;
    private long _reserved;
    private bool _disposed;

    /// <summary>Writes the pagemap head naming <paramref name="pagesId"/> at once.</summary>
    public PageImageWriter(Stream pagemap, Stream pages, uint pagesId, bool leaveOpen = false)
        : this(new ImageWriter(pagemap, ImageKinds.Pagemap, leaveOpen), pages, pagesId, leaveOpen, syncOnClose: false)
    {
    }

    private PageImageWriter(ImageWriter pagemap, Stream pages, uint pagesId, bool leaveOpen, bool syncOnClose)
    {
        ArgumentNullException.ThrowIfNull(pages);
        _pagemap = pagemap;
        _pages = pages;
        _leaveOpen = leaveOpen;
        _syncOnClose = syncOnClose;
        PagesId = pagesId;
        _pagemap.WriteEntry(new PagemapHead { PagesId = pagesId });
    }

    /// <summary>
    /// Creates pagemap-<paramref name="pagemapId"/>.img and pages-<paramref name="pagesId"/>.img in
    /// <paramref name="directory"/>; with <paramref name="syncOnClose"/> both are fsynced on Dispose.
    /// </summary>
    public static PageImageWriter Create(string directory, ulong pagemapId, uint pagesId, bool syncOnClose = true)
    {
        string pagemapPath = Path.Combine(directory, ImageKinds.FileName(ImageKinds.Pagemap, pagemapId));
        string pagesPath = Path.Combine(directory, ImageKinds.FileName(ImageKinds.Pages, pagesId));
        ImageWriter pagemap = ImageWriter.Create(pagemapPath, ImageKinds.Pagemap, syncOnClose);
        FileStream? pages = null;
        try
        {
            pages = new FileStream(pagesPath, FileMode.Create, FileAccess.ReadWrite, FileShare.None, PagesBufferSize);
            return new PageImageWriter(pagemap, pages, pagesId, leaveOpen: false, syncOnClose);
        }
        catch
        {
            pages?.Dispose();
            pagemap.Dispose();
            throw;
        }
    }

    public uint PagesId { get; }

    /// <summary>Entries written after the head.</summary>
    public int EntryCount => _pagemap.EntryCount - 1;

    /// <summary>Bytes of page data written to pages-N.img.</summary>
    public long PagesWritten { get; private set; }

    /// <summary>pages-N.img as a file handle, or null when it is another kind of stream.</summary>
    public SafeFileHandle? PagesFile => _pages is FileStream file ? file.SafeFileHandle : null;

    /// <summary>Bytes of page data reserved with <see cref="ReservePresent"/>: pages-N.img's length after <see cref="SizeReserved"/>.</summary>
    public long PagesReserved => _reserved;

    /// <summary>
    /// Adds a present entry whose <paramref name="nrPages"/> pages of data the caller places itself into
    /// <see cref="PagesFile"/> at the returned offset. A writer either reserves or writes data, not both.
    /// </summary>
    public long ReservePresent(ulong vaddr, uint nrPages)
    {
        if (PagesFile is null)
            throw new InvalidOperationException("pages can be reserved only in a pages file");
        if (PagesWritten != 0)
            throw new InvalidOperationException("page data was already written through this writer");
        WriteEntry(vaddr, nrPages, PagemapFlags.Present);
        long at = _reserved;
        _reserved += (long)nrPages * PageSize;
        return at;
    }

    /// <summary>Sets pages-N.img's length to the reserved bytes (before the caller maps and fills it).</summary>
    public void SizeReserved()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ((FileStream)_pages).SetLength(_reserved);
    }

    /// <summary>
    /// Adds an entry whose pages are in this pages file: <paramref name="pages"/> holds whole pages
    /// (PE_PRESENT, plus <paramref name="extraFlags"/> such as PE_LAZY).
    /// </summary>
    public void AddPresent(ulong vaddr, ReadOnlySpan<byte> pages, PagemapFlags extraFlags = PagemapFlags.None)
    {
        if (pages.Length == 0 || pages.Length % PageSize != 0)
            throw new ArgumentException($"page data must be a non-zero multiple of {PageSize} bytes, got {pages.Length}", nameof(pages));
        if ((extraFlags & PagemapFlags.Parent) != 0)
            throw new ArgumentException("pages in the parent have no data here", nameof(extraFlags));
        if (_reserved != 0)
            throw new InvalidOperationException("this writer reserves its page data; the caller places it");
        WriteEntry(vaddr, (uint)(pages.Length / PageSize), PagemapFlags.Present | extraFlags);
        _pages.Write(pages);
        PagesWritten += pages.Length;
    }

    /// <summary>
    /// Adds a present entry whose <paramref name="nrPages"/> pages of data follow through
    /// <see cref="WritePageData"/>, in as many pieces as suit the caller (memory read from a task in
    /// chunks). The data must be complete before the next entry or Dispose.
    /// </summary>
    public void BeginPresent(ulong vaddr, uint nrPages, PagemapFlags extraFlags = PagemapFlags.None)
    {
        if ((extraFlags & PagemapFlags.Parent) != 0)
            throw new ArgumentException("pages in the parent have no data here", nameof(extraFlags));
        WriteEntry(vaddr, nrPages, PagemapFlags.Present | extraFlags);
        _dataOwed = (long)nrPages * PageSize;
    }

    /// <summary>Writes the next piece of the data of the entry begun with <see cref="BeginPresent"/>.</summary>
    public void WritePageData(ReadOnlySpan<byte> data)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_reserved != 0)
            throw new InvalidOperationException("this writer reserves its page data; the caller places it");
        if (data.Length > _dataOwed)
            throw new InvalidOperationException($"{data.Length} bytes of page data but only {_dataOwed} are left in the entry");
        _pages.Write(data);
        _dataOwed -= data.Length;
        PagesWritten += data.Length;
    }

    /// <summary>Adds an entry without data here: PE_PARENT (pages in the parent images) or PE_LAZY alone.</summary>
    public void AddWithoutData(ulong vaddr, uint nrPages, PagemapFlags flags)
    {
        if ((flags & PagemapFlags.Present) != 0 || flags == PagemapFlags.None)
            throw new ArgumentException($"flags {flags} do not describe pages kept elsewhere", nameof(flags));
        WriteEntry(vaddr, nrPages, flags);
    }

    private void WriteEntry(ulong vaddr, uint nrPages, PagemapFlags flags)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_dataOwed != 0)
            throw new InvalidOperationException($"the previous entry still lacks {_dataOwed} bytes of page data");
        if (vaddr % PageSize != 0)
            throw new ArgumentException($"vaddr 0x{vaddr:x} is not page aligned", nameof(vaddr));
        if (nrPages == 0 || vaddr + (ulong)nrPages * PageSize < vaddr)
            throw new ArgumentException($"{nrPages} pages at 0x{vaddr:x} is not a valid range", nameof(nrPages));
        // Restore walks entries in order and expects ascending, non-overlapping ranges.
        if (vaddr < _previousEnd)
            throw new ArgumentException($"entry at 0x{vaddr:x} overlaps or precedes the previous one ending at 0x{_previousEnd:x}", nameof(vaddr));
        _previousEnd = vaddr + (ulong)nrPages * PageSize;
        _pagemap.WriteEntry(new PagemapEntry { Vaddr = vaddr, NrPages = nrPages, Flags = (uint)flags });
    }

    /// <summary>
    /// Checks that the last entry got all its page data. Call it before Dispose when the dump succeeded:
    /// a short entry would shift every later reader's view of pages-N.img. (Dispose itself does not
    /// throw, so that it cannot hide the error that interrupted a dump.)
    /// </summary>
    public void Complete()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_dataOwed != 0)
            throw new InvalidOperationException($"the last pagemap entry lacks {_dataOwed} bytes of page data");
    }

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        try
        {
            if (_pages is FileStream file)
                file.Flush(flushToDisk: _syncOnClose);
            else
                _pages.Flush();
        }
        finally
        {
            if (!_leaveOpen)
                _pages.Dispose();
            _pagemap.Dispose();
        }
    }
}
