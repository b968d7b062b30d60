// dump --lazy-pages (post-copy migration): the pages of private anonymous memory do not go into pages-N.img;
// their pagemap entries are PE_LAZY without data, and the dump serves them to the destination's lazy-pages
// daemon over the page-server protocol (Crest.Transport/PageServer/LazyPageServer.cs) once the tree is gone.
// The restore at the destination needs the tree's pids, so the tree cannot stay alive to be read: the pages
// are copied here (process_vm_readv into the dump's buffers, then into anonymous memory of this process) while
// the tree is frozen, and the tree is killed as after any dump. The freeze lasts one memory copy more than a
// dump into a file would not: no write of the pages anywhere.
//
// Memory: chunks of ChunkBytes of anonymous memory, filled in order; each kept run of a task is cut at chunk
// boundaries (a request that crosses one gets a short answer, which the protocol allows).
using Crest.Images.Pages;
using Crest.Kernel.Memory;

namespace Crest.Engine.Memory;

public sealed class LazyPageStore : ILazyPageStore, IDisposable
{
    private const int PageSize = 4096;

    /// <summary>Size of each piece of anonymous memory the pages are copied into.</summary>
    internal const int ChunkBytes = 64 << 20;

    private readonly List<MemoryMapping> _chunks = [];
    private readonly Dictionary<ulong, List<KeptRun>> _runs = [];
    private int _used = ChunkBytes;
    private long _pages;

    private readonly record struct KeptRun(ulong Vaddr, int Length, int Chunk, int Offset)
    {
        public ulong End => Vaddr + (ulong)Length;
    }

    public long Pages => Interlocked.Read(ref _pages);

    /// <summary>Bytes of anonymous memory held.</summary>
    public long Bytes => (long)_chunks.Count * ChunkBytes;

    /// <summary>Keeps <paramref name="data"/> (whole pages) as the pages of <paramref name="pagemapId"/> at <paramref name="vaddr"/>.</summary>
    internal void Add(ulong pagemapId, ulong vaddr, ReadOnlySpan<byte> data)
    {
        if (data.Length % PageSize != 0 || vaddr % PageSize != 0)
            throw new ArgumentException($"{data.Length} bytes at 0x{vaddr:x} are not whole pages");
        lock (_runs)
        {
            if (!_runs.TryGetValue(pagemapId, out var runs)) _runs[pagemapId] = runs = [];
            while (!data.IsEmpty)
            {
                if (_used == ChunkBytes)
                {
                    _chunks.Add(MemoryMapping.Anonymous(ChunkBytes));
                    _used = 0;
                }
                int take = Math.Min(data.Length, ChunkBytes - _used);
                data[..take].CopyTo(_chunks[^1].Slice((ulong)_used, take));
                if (runs.Count > 0 && runs[^1].End > vaddr)
                    throw new ArgumentException($"pages at 0x{vaddr:x} of {pagemapId} do not follow the kept ones (ending at 0x{runs[^1].End:x})");
                // Contiguous with the last run in memory and in the chunk: one run.
                if (runs.Count > 0 && runs[^1].End == vaddr && runs[^1].Chunk == _chunks.Count - 1 && runs[^1].Offset + runs[^1].Length == _used)
                    runs[^1] = runs[^1] with { Length = runs[^1].Length + take };
                else
                    runs.Add(new KeptRun(vaddr, take, _chunks.Count - 1, _used));
                _used += take;
                vaddr += (ulong)take;
                data = data[take..];
                Interlocked.Add(ref _pages, take / PageSize);
            }
        }
    }

    public ReadOnlySpan<byte> Read(ulong pagemapId, ulong vaddr, uint nrPages)
    {
        if (!_runs.TryGetValue(pagemapId, out var runs)) return [];
        int lo = 0, hi = runs.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) / 2;
            if (runs[mid].End <= vaddr) lo = mid + 1;
            else hi = mid;
        }
        if (lo == runs.Count || runs[lo].Vaddr > vaddr || vaddr % PageSize != 0) return [];
        var r = runs[lo];
        int skip = (int)(vaddr - r.Vaddr);
        int length = (int)Math.Min((ulong)(r.Length - skip), (ulong)nrPages * PageSize);
        return _chunks[r.Chunk].Slice((ulong)(r.Offset + skip), length);
    }

    public void Dispose()
    {
        foreach (var c in _chunks) c.Dispose();
        _chunks.Clear();
        _runs.Clear();
    }
}
