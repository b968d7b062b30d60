// The receiving end of CRIU's page-server protocol (PageServerProtocol.cs): serves one dump's connection and
// writes, for each task, pagemap-PID.img + pages-N.img into the images directory in CRIU's format. Pages ids
// start at 0x10001, as CRIU's page server's do, so that a page server and a dump sharing one directory never
// write the same pages-N.img.
//
// Nothing complete-looking is left by a broken session: images are written under hidden ".part" names and
// renamed only when the dump side sends PS_IOV_CLOSE, after they are synced (fsync each file, rename, fsync the
// directory: a stored session survives a crash of this machine); the answer to PS_IOV_CLOSE is sent after that,
// so the dump side learns that its pages are stored. A connection that ends before it (the dump failed or was
// killed, the network broke) is an error and removes the partial files. A failure to write, sync or rename an
// image names that file.
//
// Parent images: when the images directory has a "parent" link (made by a previous dump into the same
// directory, or by page-server --prev-images-dir), PS_IOV_OPEN2 answers that the parent holds the task, and
// every PE_PARENT entry is checked against the pages the parent chain holds.
using Crest.Images;
using Crest.Images.Pages;
using static Crest.Transport.PageServer.PageServerProtocol;

namespace Crest.Transport.PageServer;

/// <summary>What one session stored.</summary>
public sealed record PageServerSummary(int Pagemaps, long Entries, long PagesReceived, long PagesInParent);

public sealed class PageServerReceiver
{
    /// <summary>CRIU's page server raises its page ids by 0x10000.</summary>
    public const uint FirstPagesId = 0x10001;

    private const int DataBufferSize = 1 << 20;

    private readonly string _directory;
    private readonly Action<string> _log;
    private readonly byte[] _buffer = GC.AllocateUninitializedArray<byte>(DataBufferSize, pinned: true);
    private readonly List<OpenPagemap> _done = [];
    private OpenPagemap? _current;
    private uint _nextPagesId = FirstPagesId;
    private long _entries, _pages, _parentPages;

    public PageServerReceiver(string imagesDirectory, Action<string>? log = null)
    {
        _directory = Path.GetFullPath(imagesDirectory);
        if (!Directory.Exists(_directory))
            throw new PageServerException($"The images directory {_directory} does not exist.");
        _log = log ?? (_ => { });
    }

    /// <summary>
    /// Serves the dump side on <paramref name="connection"/> until it closes the connection after PS_IOV_CLOSE
    /// (or sends PS_IOV_FORCE_CLOSE). Throws <see cref="PageServerException"/> for a session that ended
    /// without storing its images; those images are removed.
    /// </summary>
    public PageServerSummary Serve(Stream connection)
    {
        bool flushed = false;
        Span<byte> header = stackalloc byte[PageServerIov.Size];
        try
        {
            while (true)
            {
                if (!ReadHeader(connection, header))
                {
                    if (!flushed)
                        throw new PageServerException("the dump side closed the connection before PS_IOV_CLOSE: its pages are incomplete and were not kept");
                    break;
                }
                var iov = PageServerIov.Read(header);
                flushed = false;
                switch (iov.Command)
                {
                    case PS_IOV_OPEN:
                        Open(iov.DstId);
                        break;
                    case PS_IOV_OPEN2:
                        connection.WriteByte(Open(iov.DstId).HasParent ? (byte)1 : (byte)0);
                        connection.Flush();
                        break;
                    case PS_IOV_PARENT:
                    {
                        var (_, id) = CheckedDstId(iov.DstId);
                        Span<byte> answer = stackalloc byte[4];
                        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(answer, ParentDirectoryHolding(id) is null ? 0 : 1);
                        connection.Write(answer);
                        connection.Flush();
                        break;
                    }
                    case PS_IOV_ADD:
                        Add(connection, iov, (uint)PagemapFlags.Present);
                        break;
                    case PS_IOV_HOLE:
                        Add(connection, iov, (uint)PagemapFlags.Parent);
                        break;
                    case PS_IOV_ADD_F:
                        Add(connection, iov, iov.Flags);
                        break;
                    case PS_IOV_GET:
                    case PS_IOV_GET_ALL:
                        throw new PageServerException($"PS_IOV_GET: lazy pages are not served by this page server ({iov})");
                    case PS_IOV_CLOSE:
                    case PS_IOV_FORCE_CLOSE:
                    {
                        Store();
                        Span<byte> status = stackalloc byte[4];
                        status.Clear();
                        connection.Write(status);
                        connection.Flush();
                        flushed = true;
                        break;
                    }
                    default:
                        throw new PageServerException($"unknown page-server command 0x{iov.Command:x} ({iov})");
                }
                if (flushed && iov.Command == PS_IOV_FORCE_CLOSE) break;
            }
        }
        catch (Exception e)
        {
            Discard();
            if (e is PageServerException) throw;
            if (e is IOException or ObjectDisposedException)
                throw new PageServerException($"the connection to the dump side broke: {e.Message}", e);
            throw;
        }
        _log($"page-server: session over, {_done.Count} pagemaps, {_entries} entries, {_pages} pages received, {_parentPages} in the parent");
        return new PageServerSummary(_done.Count, _entries, _pages, _parentPages);
    }

    /// <summary>Reads one command; false at a clean end of the stream (between commands).</summary>
    private static bool ReadHeader(Stream connection, Span<byte> header)
    {
        int got = 0;
        while (got < header.Length)
        {
            int n = connection.Read(header[got..]);
            if (n == 0)
            {
                if (got == 0) return false;
                throw new PageServerException($"the connection ended inside a command ({got} of {header.Length} bytes)");
            }
            got += n;
        }
        return true;
    }

    private static (PagemapType Type, ulong Id) CheckedDstId(ulong dstId)
    {
        var (type, id) = DecodeDstId(dstId);
        return type switch
        {
            PagemapType.Task => (type, id),
            PagemapType.Shmem => throw new PageServerException($"shared-memory pagemaps (dst_id 0x{dstId:x}) are not supported yet"),
            _ => throw new PageServerException($"dst_id 0x{dstId:x} names no known pagemap type"),
        };
    }

    private OpenPagemap Open(ulong dstId)
    {
        var (_, id) = CheckedDstId(dstId);
        FinishCurrent();
        if (_done.Exists(p => p.Id == id))
            throw new PageServerException($"pagemap-{id}.img was already sent in this session");
        while (File.Exists(Path.Combine(_directory, ImageKinds.FileName(ImageKinds.Pages, _nextPagesId)))) _nextPagesId++;
        uint pagesId = _nextPagesId++;
        string? parent = ParentDirectoryHolding(id);
        IReadOnlyList<PageRun>? parentRuns = null;
        if (parent is not null)
        {
            try
            {
                parentRuns = PageChain.Resolve(parent, id).Runs;
            }
            catch (ImageFormatException e)
            {
                throw new PageServerException($"the parent images of pagemap-{id}.img in {parent} cannot be read: {e.Message}", e);
            }
        }
        _current = new OpenPagemap(_directory, id, pagesId, dstId, parentRuns);
        _log($"page-server: opened pagemap-{id}.img, pages-{pagesId}.img{(parent is null ? "" : $", parent {parent}")}");
        return _current;
    }

    /// <summary>The parent images directory when it holds a pagemap of <paramref name="id"/>, else null.</summary>
    private string? ParentDirectoryHolding(ulong id)
    {
        string link = Path.Combine(_directory, PageChain.ParentLink);
        if (!Directory.Exists(link)) return null;
        // The parent's own "parent" link is relative to where the parent really is, not to this link.
        string parent = new DirectoryInfo(link).LinkTarget is { } target ? Path.GetFullPath(target, _directory) : link;
        return File.Exists(Path.Combine(parent, ImageKinds.FileName(ImageKinds.Pagemap, id))) ? parent : null;
    }

    private void Add(Stream connection, PageServerIov iov, uint flags)
    {
        var current = _current is { } c && c.DstId == iov.DstId ? c : Open(iov.DstId); // CRIU: "IO w/o open"
        var pe = (PagemapFlags)flags;
        if ((flags & ~7u) != 0 || pe == PagemapFlags.None)
            throw new PageServerException($"pagemap flags 0x{flags:x} are not valid ({iov})");
        try
        {
            if ((pe & PagemapFlags.Present) != 0)
            {
                current.Writer.BeginPresent(iov.Vaddr, iov.NrPages, pe & ~PagemapFlags.Present);
                long left = (long)iov.NrPages * PageSize;
                while (left > 0)
                {
                    int n = connection.Read(_buffer, 0, (int)Math.Min(left, _buffer.Length));
                    if (n == 0)
                        throw new PageServerException($"the connection ended inside the data of {iov.NrPages} pages at 0x{iov.Vaddr:x} of pagemap-{current.Id}.img ({left} bytes missing)");
                    try
                    {
                        current.Writer.WritePageData(_buffer.AsSpan(0, n));
                    }
                    catch (IOException e) when (e is not PageServerException)
                    {
                        // A full or failing disk here, not the connection.
                        throw new PageServerException($"cannot write the pages of pagemap-{current.Id}.img: {e.Message}", e);
                    }
                    left -= n;
                }
                _pages += iov.NrPages;
            }
            else
            {
                if ((pe & PagemapFlags.Parent) != 0) CheckInParent(current, iov);
                current.Writer.AddWithoutData(iov.Vaddr, iov.NrPages, pe);
                if ((pe & PagemapFlags.Parent) != 0) _parentPages += iov.NrPages;
            }
        }
        catch (ArgumentException e)
        {
            throw new PageServerException($"a bad pagemap entry for pagemap-{current.Id}.img ({iov}): {e.Message}", e);
        }
        _entries++;
    }

    /// <summary>Every page of a PE_PARENT entry must be held somewhere up the parent chain.</summary>
    private static void CheckInParent(OpenPagemap current, PageServerIov iov)
    {
        var runs = current.ParentRuns
            ?? throw new PageServerException($"PE_PARENT pages at 0x{iov.Vaddr:x} for pagemap-{current.Id}.img, but this page server has no parent images of it");
        ulong at = iov.Vaddr, end = iov.Vaddr + (ulong)iov.NrPages * PageSize;
        int lo = 0, hi = runs.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) / 2;
            if (runs[mid].End <= at) lo = mid + 1;
            else hi = mid;
        }
        for (int i = lo; at < end; i++)
        {
            if (i >= runs.Count || runs[i].Vaddr > at)
                throw new PageServerException($"hole 0x{iov.Vaddr:x}-0x{end:x} of pagemap-{current.Id}.img is not in the parent images (0x{at:x} is missing)");
            at = runs[i].End;
        }
    }

    private void FinishCurrent()
    {
        if (_current is null) return;
        _current.Finish();
        _done.Add(_current);
        _current = null;
    }

    /// <summary>PS_IOV_CLOSE: every image of the session synced and given its real name, the names synced.</summary>
    private void Store()
    {
        FinishCurrent();
        foreach (var p in _done) p.Rename();
        try
        {
            Interop.Libc.SyncDirectory(_directory);
        }
        catch (IOException e)
        {
            throw new PageServerException($"page-server: the names of the stored images are not durable: {e.Message}", e);
        }
    }

    private void Discard()
    {
        _current?.Abandon();
        _current = null;
        foreach (var p in _done) p.Abandon();
    }

    /// <summary>The image pair of one task while it is being received.</summary>
    private sealed class OpenPagemap
    {
        private readonly FileStream _pagemap, _pages;
        private readonly string _pagemapPart, _pagesPart, _pagemapName, _pagesName;
        private bool _closed, _renamed;

        public OpenPagemap(string directory, ulong id, uint pagesId, ulong dstId, IReadOnlyList<PageRun>? parentRuns)
        {
            Id = id;
            DstId = dstId;
            ParentRuns = parentRuns;
            _pagemapName = Path.Combine(directory, ImageKinds.FileName(ImageKinds.Pagemap, id));
            _pagesName = Path.Combine(directory, ImageKinds.FileName(ImageKinds.Pages, pagesId));
            _pagemapPart = Path.Combine(directory, $".{Path.GetFileName(_pagemapName)}.part");
            _pagesPart = Path.Combine(directory, $".{Path.GetFileName(_pagesName)}.part");
            _pagemap = new FileStream(_pagemapPart, FileMode.Create, FileAccess.Write, FileShare.None, 64 << 10);
            _pages = new FileStream(_pagesPart, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
            Writer = new PageImageWriter(_pagemap, _pages, pagesId, leaveOpen: true);
        }

        public ulong Id { get; }
        public ulong DstId { get; }
        public IReadOnlyList<PageRun>? ParentRuns { get; }
        public bool HasParent => ParentRuns is not null;
        public PageImageWriter Writer { get; }

        /// <summary>The last entry complete; both files written and synced (still under their .part names).</summary>
        public void Finish()
        {
            try
            {
                Writer.Complete();
            }
            catch (IOException e) when (e is not PageServerException)
            {
                throw new PageServerException($"page-server: cannot write {_pagemapPart} and {_pagesPart}: {e.Message}", e);
            }
            Close(sync: true);
        }

        /// <summary>The pages first: a pagemap under its real name always has its pages.</summary>
        public void Rename()
        {
            if (_renamed) return;
            Move(_pagesPart, _pagesName);
            Move(_pagemapPart, _pagemapName);
            _renamed = true;
        }

        private static void Move(string part, string name)
        {
            try
            {
                File.Move(part, name, overwrite: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new PageServerException($"page-server: cannot rename {part} to {name}: {e.Message}", e);
            }
        }

        public void Abandon()
        {
            try { Close(sync: false); }
            catch (IOException) { }
            if (_renamed) return;
            TryDelete(_pagemapPart);
            TryDelete(_pagesPart);
        }

        private void Close(bool sync)
        {
            if (_closed) return;
            _closed = true;
            try
            {
                Writer.Dispose();
                Flush(_pagemap, _pagemapPart, sync);
                Flush(_pages, _pagesPart, sync);
            }
            finally
            {
                _pagemap.Dispose();
                _pages.Dispose();
            }
        }

        /// <summary>What is buffered written out and, with <paramref name="sync"/>, fsynced.</summary>
        private static void Flush(FileStream file, string path, bool sync)
        {
            try
            {
                file.Flush(flushToDisk: sync);
            }
            catch (IOException e)
            {
                throw new PageServerException($"page-server: cannot {(sync ? "write and sync" : "write")} {path}: {e.Message}", e);
            }
        }

        private static void TryDelete(string path)
        {
            try { File.Delete(path); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
    }
}
