// The pages a lazy-pages daemon still has to put into one address space: ascending, non-overlapping runs of
// virtual addresses, each naming where its data lies in a pages image. A page leaves the set once it is
// copied in, or once the task discards it (MADV_DONTNEED, munmap): from then on the images must never fill
// it again. mremap moves a part of the set with the memory.
namespace Crest.Engine.Restore;

/// <summary>[Start, End) of a task, whose data is at <see cref="Offset"/> of pages source <see cref="Source"/>.</summary>
internal readonly record struct LazyRun(ulong Start, ulong End, int Source, long Offset)
{
    public ulong Length => End - Start;

    public LazyRun Slice(ulong start, ulong end) => new(start, end, Source, Offset + (long)(start - Start));
}

internal sealed class LazyRanges
{
    // Runs before _head are gone: the background pass takes the set from its start, and removing the first of
    // tens of thousands of runs (a scattered pre-dump chain) from a List each time made post-copy quadratic.
    private readonly List<LazyRun> _runs;
    private int _head;

    public LazyRanges(IEnumerable<LazyRun> runs) => _runs = runs.Where(r => r.End > r.Start).OrderBy(r => r.Start).ToList();

    public bool IsEmpty => _head == _runs.Count;

    public int Count => _runs.Count - _head;

    public ulong Bytes
    {
        get
        {
            ulong sum = 0;
            for (int i = _head; i < _runs.Count; i++) sum += _runs[i].Length;
            return sum;
        }
    }

    public LazyRun First => _runs[_head];

    /// <summary>The run <paramref name="index"/> places after <see cref="First"/> (0 is First).</summary>
    public LazyRun this[int index] => _runs[_head + index];

    public LazyRanges Clone() => new(Live());

    private IEnumerable<LazyRun> Live()
    {
        for (int i = _head; i < _runs.Count; i++) yield return _runs[i];
    }

    /// <summary>The run that holds <paramref name="address"/>, if any.</summary>
    public bool TryFind(ulong address, out LazyRun run)
    {
        int i = FirstEndingAfter(address);
        if (i < _runs.Count && _runs[i].Start <= address)
        {
            run = _runs[i];
            return true;
        }
        run = default;
        return false;
    }

    /// <summary>The runs (clipped) of the set inside [start, end).</summary>
    public List<LazyRun> Within(ulong start, ulong end)
    {
        var result = new List<LazyRun>();
        if (end <= start) return result; // an empty range would make an empty run, which breaks the search
        for (int i = FirstEndingAfter(start); i < _runs.Count && _runs[i].Start < end; i++)
            result.Add(_runs[i].Slice(Math.Max(start, _runs[i].Start), Math.Min(end, _runs[i].End)));
        return result;
    }

    /// <summary>[start, end) is no longer to be filled.</summary>
    public void Remove(ulong start, ulong end)
    {
        if (end <= start) return;
        int i = FirstEndingAfter(start);
        while (i < _runs.Count && _runs[i].Start < end)
        {
            var r = _runs[i];
            bool left = r.Start < start, right = r.End > end;
            if (left && right)
            {
                _runs[i] = r.Slice(r.Start, start);
                _runs.Insert(i + 1, r.Slice(end, r.End));
                return;
            }
            if (right)
            {
                _runs[i] = r.Slice(end, r.End);
                return;
            }
            if (left)
            {
                _runs[i] = r.Slice(r.Start, start);
                i++;
                continue;
            }
            // Covered whole: the first live run only moves the head.
            if (i == _head) _head++;
            else _runs.RemoveAt(i);
            if (i == _head - 1) i = _head;
        }
    }

    /// <summary>mremap: what was to be filled in [from, from + length) is now to be filled at [to, to + length);
    /// whatever was to be filled at the destination is gone (the kernel unmapped it).</summary>
    public void Move(ulong from, ulong to, ulong length)
    {
        var moved = Within(from, from + length);
        Remove(from, from + length);
        Remove(to, to + length);
        Compact();
        foreach (var r in moved) _runs.Add(new LazyRun(r.Start - from + to, r.End - from + to, r.Source, r.Offset));
        _runs.Sort((a, b) => a.Start.CompareTo(b.Start));
    }

    /// <summary>Only the parts inside the given ranges stay.</summary>
    public void Keep(IReadOnlyList<(ulong Start, ulong End)> ranges)
    {
        var kept = new List<LazyRun>();
        foreach (var (start, end) in ranges.OrderBy(r => r.Start)) kept.AddRange(Within(start, end));
        _runs.Clear();
        _head = 0;
        _runs.AddRange(kept);
        _runs.Sort((a, b) => a.Start.CompareTo(b.Start));
    }

    private void Compact()
    {
        _runs.RemoveRange(0, _head);
        _head = 0;
    }

    private int FirstEndingAfter(ulong address)
    {
        int lo = _head, hi = _runs.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) / 2;
            if (_runs[mid].End <= address) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    }
}
