// Reads a pagemap-ID.img / pages-N.img pair (layout drawn in PageImageWriter.cs) entry by entry: the
// pagemap is streamed, and page data is read from pages-N.img either in entry order (sequentially) or by
// offset, never loading the pages file whole. Pagemaps written before flags existed carry `in_parent`
// instead; as CRIU does, an entry without flags is PE_PARENT when in_parent is set, else PE_PRESENT.
using Crest.Images.Protos;

namespace Crest.Images.Pages;

/// <summary>Streams the entries of a pagemap image and computes where each entry's data is in pages-N.img.</summary>
public sealed class PagemapReader : IDisposable
{
    private readonly ImageReader _reader;
    private long _pagesOffset;
    private ulong _previousEnd;

    public PagemapReader(Stream pagemap, string name, bool leaveOpen = false)
    {
        _reader = new ImageReader(pagemap, name, ImageKinds.Pagemap, leaveOpen);
        long headOffset = _reader.Offset;
        PagemapHead head = _reader.ReadEntry(PagemapHead.Parser)
            ?? throw new ImageFormatException(name, 0, headOffset, "pagemap has no head entry");
        PagesId = head.PagesId;
    }

    public static PagemapReader Open(string path)
    {
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, System.IO.FileOptions.SequentialScan);
        try
        {
            return new PagemapReader(stream, Path.GetFileName(path));
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>The N of pages-N.img that holds this pagemap's present pages.</summary>
    public uint PagesId { get; }

    public string Name => _reader.Name;

    /// <summary>Total bytes of present pages in the entries read so far.</summary>
    public long PresentBytes => _pagesOffset;

    /// <summary>Reads the next entry; false at the end of the pagemap.</summary>
    public bool TryRead(out PagemapRecord record)
    {
        long entryOffset = _reader.Offset;
        int index = _reader.EntryIndex;
        PagemapEntry? entry = _reader.ReadEntry(PagemapEntry.Parser);
        if (entry is null)
        {
            record = default;
            return false;
        }

        PagemapFlags flags = entry.HasFlags
            ? (PagemapFlags)entry.Flags
            : entry.InParent ? PagemapFlags.Parent : PagemapFlags.Present;
        ulong length = (ulong)entry.NrPages * PageImageWriter.PageSize;
        if (entry.Vaddr % PageImageWriter.PageSize != 0 || entry.Vaddr + length < entry.Vaddr)
            throw new ImageFormatException(Name, index, entryOffset, $"bad range: {entry.NrPages} pages at 0x{entry.Vaddr:x}");
        if (entry.Vaddr < _previousEnd)
            throw new ImageFormatException(Name, index, entryOffset, $"entry at 0x{entry.Vaddr:x} overlaps the previous one ending at 0x{_previousEnd:x}");
        _previousEnd = entry.Vaddr + length;

        long pagesOffset = -1;
        if ((flags & PagemapFlags.Present) != 0)
        {
            pagesOffset = _pagesOffset;
            _pagesOffset += (long)length;
        }
        record = new PagemapRecord(index, entry.Vaddr, entry.NrPages, flags, pagesOffset);
        return true;
    }

    public void Dispose() => _reader.Dispose();
}

/// <summary>Reads page data from a raw pages-N.img, sequentially or by offset.</summary>
public sealed class PagesReader : IDisposable
{
    private readonly Stream _stream;
    private readonly bool _leaveOpen;
    private long _position;

    public PagesReader(Stream pages, string name, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(pages);
        _stream = pages;
        Name = name;
        _leaveOpen = leaveOpen;
    }

    public static PagesReader Open(string path)
    {
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, System.IO.FileOptions.SequentialScan);
        return new PagesReader(stream, Path.GetFileName(path));
    }

    public string Name { get; }

    /// <summary>Offset of the next sequential read.</summary>
    public long Position => _position;

    /// <summary>Reads the data of <paramref name="record"/> (which must be present) into
    /// <paramref name="destination"/>, whose length must be the record's length.</summary>
    public void ReadPages(in PagemapRecord record, Span<byte> destination)
    {
        if (!record.IsPresent)
            throw new ArgumentException($"entry {record.Index} at 0x{record.Vaddr:x} has no data in {Name}", nameof(record));
        if (destination.Length != record.Length)
            throw new ArgumentException($"destination holds {destination.Length} bytes, entry {record.Index} has {record.Length}", nameof(destination));
        Read(record.PagesOffset, destination, record.Index);
    }

    /// <summary>Reads <paramref name="destination"/>.Length bytes at <paramref name="offset"/>; a seek is made
    /// only when the offset is not where the previous read ended.</summary>
    public void Read(long offset, Span<byte> destination, int entryIndex = ImageFormatException.HeaderEntry)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        if (offset != _position)
        {
            if (!_stream.CanSeek)
                throw new InvalidOperationException($"{Name}: cannot seek from 0x{_position:x} to 0x{offset:x} on this stream");
            _stream.Seek(offset, SeekOrigin.Begin);
            _position = offset;
        }
        int total = 0;
        while (total < destination.Length)
        {
            int got = _stream.Read(destination[total..]);
            if (got == 0)
                throw new ImageFormatException(Name, entryIndex, offset,
                    $"truncated: {destination.Length} bytes of pages wanted but only {total} remain");
            total += got;
        }
        _position += total;
    }

    /// <summary>Reads the next <paramref name="destination"/>.Length bytes in order.</summary>
    public void ReadNext(Span<byte> destination, int entryIndex = ImageFormatException.HeaderEntry) =>
        Read(_position, destination, entryIndex);

    public void Dispose()
    {
        if (!_leaveOpen)
            _stream.Dispose();
    }
}
