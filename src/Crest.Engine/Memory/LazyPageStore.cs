// dump --lazy-pages (post-copy migration): the pages of private anonymous memory do not go into pages-N.img;
// their pagemap entries are PE_LAZY without data, and the dump serves them to the destination's lazy-pages
// daemon over the page-server protocol (Crest.Transport/PageServer/LazyPageServer.cs) once the tree is gone.
// The restore at the destination needs the tree's pids, so the tree cannot stay alive to be read. Two ways to
// keep its pages past its death, both while it is frozen:
//  - spliced (the default when the tree is killed after the dump; `--pre-dump-mode read` chooses the copy): the task itself vmsplices its page runs into
//    pipes that Crest holds (PageDumper.Splice.cs). A pipe then holds references to the task's pages, not copies:
//    the freeze lasts a few injected syscalls per MiB, and the pages outlive the task for as long as the pipe.
//    Pipes are read without being consumed (tee into a scratch pipe, the part before the request spliced to
//    /dev/null): a page may be asked for twice (a task that forked before it got its memory).
//    Measured (1 GiB, AOT, loopback, load 2.5-3.6, three runs each): frozen 213-220 ms spliced against 646-860 ms
//    copied (page work 125 ms and 55 ms of CPU against 598 ms and 736 ms); serving costs a little more from pipes
//    (a tee per request: the daemon had every page after 0.84-0.97 s against 0.63-0.78 s). Downtime is what
//    post-copy is for, so splicing wins.
//  - copied: process_vm_readv into the dump's buffers, then into anonymous memory of this process, in chunks of
//    ChunkBytes (runs the task cannot splice: no PROT_READ; a tree left running, whose pages would change under
//    the pipes' references).
using Crest.Images.Pages;
using Crest.Kernel;
using Crest.Kernel.Files;
using Crest.Kernel.Memory;

namespace Crest.Engine.Memory;

public sealed class LazyPageStore : ILazyPageStore, IDisposable
{
    private const int PageSize = 4096;

    /// <summary>Size of each piece of anonymous memory the copied pages go into.</summary>
    internal const int ChunkBytes = 64 << 20;

    /// <summary>Let tasks vmsplice their pages into pipes (the default); false copies them (CRIU's `--pre-dump-mode
    /// read`, which names the same choice for a pre-dump).</summary>
    public bool Splice { get; init; } = true;

    private readonly List<MemoryMapping> _chunks = [];
    private readonly List<FileDescriptor> _pipes = [];
    private readonly Dictionary<ulong, List<KeptRun>> _runs = [];
    private int _used = ChunkBytes;
    private long _pages, _splicedPages;
    private (FileDescriptor Read, FileDescriptor Write)? _scratch;
    private FileDescriptor? _null;

    /// <summary>A kept run: in chunk <see cref="Chunk"/> at <see cref="Offset"/>, or (Chunk &lt; 0) in pipe <see cref="Pipe"/> at <see cref="Offset"/>.</summary>
    private readonly record struct KeptRun(ulong Vaddr, int Length, int Chunk, int Pipe, int Offset)
    {
        public ulong End => Vaddr + (ulong)Length;
    }

    public long Pages => Interlocked.Read(ref _pages);

    /// <summary>Pages held by pipes (spliced by the tasks, not copied).</summary>
    public long SplicedPages => Interlocked.Read(ref _splicedPages);

    /// <summary>Bytes of anonymous memory held for copied pages.</summary>
    public long Bytes => (long)_chunks.Count * ChunkBytes;

    /// <summary>Pipes held.</summary>
    public int PipeCount => _pipes.Count;

    /// <summary>Keeps <paramref name="data"/> (whole pages) as the pages of <paramref name="pagemapId"/> at <paramref name="vaddr"/>.</summary>
    internal void Add(ulong pagemapId, ulong vaddr, ReadOnlySpan<byte> data)
    {
        if (data.Length % PageSize != 0 || vaddr % PageSize != 0)
            throw new ArgumentException($"{data.Length} bytes at 0x{vaddr:x} are not whole pages");
        lock (_runs)
        {
            var runs = RunsOf(pagemapId);
            while (!data.IsEmpty)
            {
                if (_used == ChunkBytes)
                {
                    _chunks.Add(NewChunk());
                    _used = 0;
                }
                int take = Math.Min(data.Length, ChunkBytes - _used);
                data[..take].CopyTo(_chunks[^1].Slice((ulong)_used, take));
                Insert(runs, new KeptRun(vaddr, take, _chunks.Count - 1, -1, _used));
                _used += take;
                vaddr += (ulong)take;
                data = data[take..];
                Interlocked.Add(ref _pages, take / PageSize);
            }
        }
    }

    /// <summary>Keeps a pipe (its read end, now the store's) holding the <paramref name="pieces"/> of <paramref name="pagemapId"/> in order.</summary>
    internal void AddPipe(ulong pagemapId, FileDescriptor pipe, IReadOnlyList<(ulong Vaddr, int Length)> pieces)
    {
        lock (_runs)
        {
            var runs = RunsOf(pagemapId);
            int index = _pipes.Count, offset = 0;
            _pipes.Add(pipe);
            foreach (var (vaddr, length) in pieces)
            {
                Insert(runs, new KeptRun(vaddr, length, -1, index, offset));
                offset += length;
                Interlocked.Add(ref _pages, length / PageSize);
                Interlocked.Add(ref _splicedPages, length / PageSize);
            }
        }
    }

    private List<KeptRun> RunsOf(ulong pagemapId)
    {
        if (!_runs.TryGetValue(pagemapId, out var runs)) _runs[pagemapId] = runs = [];
        return runs;
    }

    /// <summary>Runs come in address order per task (spliced ones first, copied ones after: sorted in place).</summary>
    private static void Insert(List<KeptRun> runs, KeptRun run)
    {
        int i = runs.Count;
        while (i > 0 && runs[i - 1].Vaddr > run.Vaddr) i--;
        if (i > 0 && runs[i - 1].End > run.Vaddr || i < runs.Count && runs[i].Vaddr < run.End)
            throw new ArgumentException($"pages at 0x{run.Vaddr:x}+{run.Length} overlap pages kept already");
        runs.Insert(i, run);
    }

    /// <summary>
    /// Populated in one call (no fault per page in the copy, which runs inside the freeze). Not MADV_HUGEPAGE: finding
    /// 2 MiB pages (compaction) made a 1 GiB copy take seconds on this machine.
    /// </summary>
    private static MemoryMapping NewChunk()
    {
        var chunk = MemoryMapping.Anonymous(ChunkBytes);
        try
        {
            chunk.Advise(MemoryAdvice.PopulateWrite);
        }
        catch (KernelException)
        {
            // faulted in by the copy instead
        }
        return chunk;
    }

    public int Read(ulong pagemapId, ulong vaddr, uint nrPages, Span<byte> into)
    {
        if (!_runs.TryGetValue(pagemapId, out var runs)) return 0;
        int lo = 0, hi = runs.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) / 2;
            if (runs[mid].End <= vaddr) lo = mid + 1;
            else hi = mid;
        }
        if (lo == runs.Count || runs[lo].Vaddr > vaddr || vaddr % PageSize != 0) return 0;
        var r = runs[lo];
        int skip = (int)(vaddr - r.Vaddr);
        int length = (int)Math.Min(Math.Min((ulong)(r.Length - skip), (ulong)nrPages * PageSize), (ulong)(into.Length / PageSize * PageSize));
        if (length == 0) return 0;
        if (r.Chunk >= 0)
        {
            _chunks[r.Chunk].Slice((ulong)(r.Offset + skip), length).CopyTo(into);
            return length;
        }
        ReadPipe(_pipes[r.Pipe], r.Offset + skip, into[..length]);
        return length;
    }

    /// <summary>Bytes [offset, offset + into.Length) of a kept pipe, which keeps them: tee, the prefix spliced away, the rest read.</summary>
    private void ReadPipe(FileDescriptor pipe, int offset, Span<byte> into)
    {
        try
        {
            if (_scratch is null)
            {
                var p = FileDescriptor.CreatePipe(OpenFlags.NonBlock);
                _scratch = p;
                p.Read.Fcntl(Crest.Kernel.Interop.Libc.F_SETPIPE_SZ, pipe.Fcntl(Crest.Kernel.Interop.Libc.F_GETPIPE_SZ));
                _null = FileDescriptor.Open("/dev/null", OpenFlags.WriteOnly | OpenFlags.CloseOnExec);
            }
            var (scratchRead, scratchWrite) = _scratch.Value;
            int want = offset + into.Length;
            int teed = pipe.Tee(scratchWrite, want);
            if (teed != want) throw new IOException($"tee of {want} bytes of a kept pipe gave {teed}");
            for (int left = offset; left > 0;)
            {
                int n = scratchRead.Splice(_null!, left);
                if (n <= 0) throw new IOException($"splice of {left} bytes of a kept pipe to /dev/null gave {n}");
                left -= n;
            }
            int got = scratchRead.ReadFull(into);
            if (got != into.Length) throw new IOException($"a kept pipe gave {got} of {into.Length} bytes");
        }
        catch (KernelException e)
        {
            throw new IOException($"reading a kept pipe: {e.Message}", e);
        }
    }

    public void Dispose()
    {
        foreach (var c in _chunks) c.Dispose();
        _chunks.Clear();
        foreach (var p in _pipes) p.Dispose();
        _pipes.Clear();
        _runs.Clear();
        if (_scratch is { } s)
        {
            s.Read.Dispose();
            s.Write.Dispose();
            _scratch = null;
        }
        _null?.Dispose();
    }
}
