// The memory of a restored task (ENGINE.md §4.3). In the new task, by injected syscalls:
//   - a gadget page of our own replaces the stub's (the stub file is the task's exe until PR_SET_MM_MAP,
//     which refuses to replace an exe that is still mapped), everything outside the restore region and the
//     vDSO is unmapped, and [vvar]/[vvar_vclock]/[vdso] are moved with mremap to their dumped addresses;
//   - each VMA is mapped with MAP_FIXED: anonymous, or the file reopened by path and checked against its
//     image (size), at the dumped offset; writable while its pages are written;
//   - madvise flags (MADV_HUGEPAGE before the contents, so THP backs them);
// then from Crest, on two threads, straight from an mmap of pages-N.img: private anonymous VMAs are
// filled with UFFDIO_COPY through a userfaultfd made in the task and taken over with pidfd_getfd (the
// kernel allocates each page and copies into it: no fault, no zeroing, which halves the cost of a page
// on this machine); the others (private file mappings, VMAs where a fault may bring a transparent huge
// page) with process_vm_writev(2) in large vectors; finally mprotect to the dumped protections.
// With --lazy-pages the VMAs UFFDIO_COPY would fill, and those where THP may apply (the daemon collapses them into
// huge pages once filled), are registered but left empty: their userfaultfd (with the
// non-cooperative events) goes to the lazy-pages daemon (LazyPagesConnection.cs) before anything else of the
// restore runs, and the daemon fills them while the task runs (LazyPages.cs). Nothing after that point may
// touch them with ptrace PEEK/POKE (which fails on a missing page of a registered VMA instead of waiting).
// Status bits of VmaEntry are CRIU's (criu/include/image.h VMA_AREA_*).
using System.Diagnostics;
using Crest.Diagnostics;
using Crest.Engine.Memory;
using Crest.Images.Pages;
using Crest.Images.Protos;
using Crest.Kernel;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Files;
using Crest.Kernel.Memory;

namespace Crest.Engine.Restore;

internal sealed class RestoreMemory
{
    public const uint VMA_AREA_REGULAR = 1, VMA_AREA_STACK = 2, VMA_AREA_VSYSCALL = 4, VMA_AREA_VDSO = 8,
        VMA_AREA_HEAP = 0x20, VMA_FILE_PRIVATE = 0x40, VMA_FILE_SHARED = 0x80, VMA_ANON_SHARED = 0x100,
        VMA_ANON_PRIVATE = 0x200, VMA_AREA_VVAR = 0x1000, VMA_AREA_MEMFD = 0x4000;

    private const long PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4;
    private const long MAP_SHARED = 1, MAP_PRIVATE = 2, MAP_FIXED = 0x10, MAP_ANONYMOUS = 0x20, MAP_GROWSDOWN = 0x100,
        MAP_NORESERVE = 0x4000, MAP_FIXED_NOREPLACE = 0x100000;
    private const long MREMAP_MAYMOVE = 1, MREMAP_FIXED = 2;
    private const int MADV_HUGEPAGE = 14, MADV_NOHUGEPAGE = 15;
    private const long O_CLOEXEC = 0x80000;

    // madvise advice that is a lasting property of a VMA (the rest act once and are not dumped as flags).
    private static readonly int[] StickyAdvice = [1 /* RANDOM */, 2 /* SEQUENTIAL */, 10 /* DONTFORK */, 12 /* MERGEABLE */,
        14 /* HUGEPAGE */, 15 /* NOHUGEPAGE */, 16 /* DONTDUMP */, 18 /* WIPEONFORK */];

    private readonly StubInjector _task;
    private readonly RestoreImages _images;
    private readonly List<VmaEntry> _vmas;
    private readonly HashSet<int> _finalProtect = [];
    private readonly HashSet<int> _touch = [];
    private readonly LazyPagesConnection? _lazy;

    public RestoreMemory(StubInjector task, RestoreImages images, LazyPagesConnection? lazy = null)
    {
        _task = task;
        _images = images;
        _lazy = lazy;
        _vmas = images.Mm.Vmas.OrderBy(v => v.Start).ToList();
        CheckVmas();
    }

    public long PagesWritten { get; private set; }

    /// <summary>Pages left to the lazy-pages daemon.</summary>
    public long PagesLazy { get; private set; }

    /// <summary>Fault pages in from inside the task before writing them (tests compare; off by default).</summary>
    internal static bool PopulateInTask { get; set; }

    /// <summary>pread each batch into a reused buffer instead of mapping the page cache (tests compare).</summary>
    internal static bool ReadIntoBuffer { get; set; }

    /// <summary>Fill anonymous pages with UFFDIO_COPY (tests compare with the faulting writers).</summary>
    internal static bool UseUserfaultfd { get; set; } = true;

    /// <summary>Work unit of the UFFDIO_COPY writers (small enough that both end together).</summary>
    internal static long CopyChunkBytes { get; set; } = 16L << 20;

    /// <summary>Threads that write pages (tests compare one with several).</summary>
    internal static int Workers { get; set; } = Environment.ProcessorCount;

    public TimeSpan ContentsTime { get; private set; }

    /// <summary>A base for the restore region where the image has no VMA (low addresses first, below any PIE).</summary>
    public static ulong ChooseRegion(MmEntry mm) => ChooseRegion([mm]);

    /// <summary>A base for the restore region that is free in every one of <paramref name="mms"/> (one for a tree).</summary>
    public static ulong ChooseRegion(IEnumerable<MmEntry> mms)
    {
        var vmas = mms.SelectMany(m => m.Vmas).ToList();
        for (ulong candidate = 0x1000_0000; candidate < 0x7000_0000_0000; candidate += 0x1000_0000)
        {
            ulong end = candidate + StubInjector.RegionSize;
            if (!vmas.Exists(v => v.Start < end && v.End > candidate)) return candidate;
        }
        throw new RestoreException("no free address range for the restore stub: the image's VMAs cover the address space");
    }

    private static bool IsSpecial(VmaEntry v) => (v.Status & (VMA_AREA_VDSO | VMA_AREA_VVAR)) != 0;

    private void CheckVmas()
    {
        ulong previousEnd = 0;
        foreach (var v in _vmas)
        {
            if (v.Start % 4096 != 0 || v.End % 4096 != 0 || v.End <= v.Start || v.Start < previousEnd)
                throw new RestoreException($"mm-{_images.Pid}.img: bad or overlapping VMA 0x{v.Start:x}-0x{v.End:x}");
            previousEnd = v.End;
        }
    }

    /// <summary>Own gadget page, stub unmapped, everything but the region and the vDSO unmapped.</summary>
    public void PrepareRegion()
    {
        ulong gadgetPage = _task.RegionBase + StubInjector.ScratchOffset + StubInjector.ScratchSize;
        _task.Check("mmap", "gadget page", SyscallNumbers.mmap, (long)gadgetPage, 4096, PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        RemoteMemory.Write(_task.Pid, gadgetPage, [0x0f, 0x05, 0xcc]);
        _task.Check("mprotect", "gadget page", SyscallNumbers.mprotect, (long)gadgetPage, 4096, PROT_READ | PROT_EXEC);
        _task.Gadget = gadgetPage;

        ulong regionEnd = _task.RegionBase + StubInjector.RegionSize;
        foreach (var (start, end, name) in ReadMaps(_task.Pid))
        {
            if (name is "[vdso]" or "[vvar]" or "[vvar_vclock]") continue;
            if (name == "[vsyscall]") continue;
            if (start >= _task.RegionBase + StubInjector.ScratchOffset && end <= regionEnd) continue;
            _task.Check("munmap", $"stub mapping 0x{start:x}-0x{end:x} {name}", SyscallNumbers.munmap, (long)start, (long)(end - start));
        }
    }

    /// <summary>vDSO moved, every other VMA mapped at its place.</summary>
    public void RestoreLayout()
    {
        MoveVdso();
        var openFiles = new Dictionary<ulong, long>();
        var pagesPerVma = VmasWithPages();
        try
        {
            for (int i = 0; i < _vmas.Count; i++)
            {
                var v = _vmas[i];
                if (IsSpecial(v) || (v.Status & VMA_AREA_VSYSCALL) != 0) continue;
                if ((v.Status & VMA_AREA_REGULAR) == 0 && v.Status != 0)
                    throw new RestoreException($"VMA 0x{v.Start:x}-0x{v.End:x} has status 0x{v.Status:x}, which this restore cannot rebuild");
                MapVma(i, v, pagesPerVma.Contains(i), openFiles);
            }
        }
        finally
        {
            foreach (long fd in openFiles.Values) _task.Syscall(SyscallNumbers.close, fd);
        }
    }

    private void MapVma(int index, VmaEntry v, bool hasPages, Dictionary<ulong, long> openFiles)
    {
        long prot = v.Prot;
        bool shared = (v.Flags & MAP_SHARED) != 0;
        bool anonymous = (v.Flags & MAP_ANONYMOUS) != 0 || (v.Status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED)) == 0;
        if (anonymous && !shared)
        {
            // Fresh anonymous VMAs side by side would merge into one, where the dumped task had two (they had
            // different anon_vmas). Mapped with alternating temporary protections they stay apart; each gets
            // its own anon_vma when its pages are written (or one page is touched), and the final mprotect
            // cannot merge VMAs with different anon_vmas.
            prot = PROT_READ | PROT_WRITE | (index % 2 == 1 ? PROT_EXEC : 0);
            _finalProtect.Add(index);
            if (!hasPages && MergesWithNeighbour(index)) _touch.Add(index);
        }
        else if (hasPages && !(shared && !anonymous))
        {
            if ((prot & PROT_WRITE) == 0) _finalProtect.Add(index);
            prot |= PROT_READ | PROT_WRITE;
        }
        long flags = (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED | (v.Flags & (MAP_GROWSDOWN | MAP_NORESERVE));
        long fd = -1;
        long offset = 0;
        if (anonymous)
        {
            flags |= MAP_ANONYMOUS;
        }
        else
        {
            fd = OpenMappedFile(v, openFiles);
            offset = (long)v.Pgoff;
        }
        string what = $"VMA 0x{v.Start:x}-0x{v.End:x}";
        long at = _task.Check("mmap", what, SyscallNumbers.mmap, (long)v.Start, (long)(v.End - v.Start), prot, flags, fd, offset);
        if ((ulong)at != v.Start) throw new RestoreException($"mmap of {what} landed at 0x{at:x}");
        ulong advice = v.HasMadv ? v.Madv : 0;
        foreach (int a in StickyAdvice)
            if ((advice & (1UL << a)) != 0)
                _task.Check("madvise", $"{what} advice {a}", SyscallNumbers.madvise, (long)v.Start, (long)(v.End - v.Start), a);
    }

    /// <summary>Whether an anonymous private VMA touches a neighbour the kernel could merge it with.</summary>
    private bool MergesWithNeighbour(int index)
    {
        var v = _vmas[index];
        bool Same(int j) => j >= 0 && j < _vmas.Count && (_vmas[j].Flags & MAP_SHARED) == 0 && !IsSpecial(_vmas[j]) &&
            (_vmas[j].End == v.Start || _vmas[j].Start == v.End) && _vmas[j].Prot == v.Prot &&
            ((_vmas[j].Flags & MAP_ANONYMOUS) != 0 || (_vmas[j].Status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED)) == 0);
        return Same(index - 1) || Same(index + 1);
    }

    private long OpenMappedFile(VmaEntry v, Dictionary<ulong, long> openFiles)
    {
        if (openFiles.TryGetValue(v.Shmid, out long known)) return known;
        var file = _images.RegularFile((uint)v.Shmid, $"mapping at 0x{v.Start:x}");
        string path = file.Name;
        try
        {
            using var probe = FileDescriptor.Open(path, OpenFlags.ReadOnly | OpenFlags.CloseOnExec);
            RestoreFileIdentity.Check(file, probe, $"file {path} mapped at 0x{v.Start:x}");
        }
        catch (KernelException e)
        {
            throw new RestoreException($"file {path} mapped at 0x{v.Start:x} cannot be opened: {e.Errno}", e);
        }
        long accessMode = (v.Flags & MAP_SHARED) != 0 && (v.Prot & PROT_WRITE) != 0 ? 2 /* O_RDWR */ : 0;
        if (v.HasFdflags) accessMode = v.Fdflags & 3;
        long fd = _task.Check("openat", $"file {path}", SyscallNumbers.openat, -100 /* AT_FDCWD */, (long)_task.PutString(path),
            accessMode | 0x80000 /* O_CLOEXEC */, 0);
        _task.ResetScratch();
        openFiles[v.Shmid] = fd;
        return fd;
    }

    private HashSet<int> VmasWithPages()
    {
        var result = new HashSet<int>();
        int i = 0;
        foreach (var p in _images.Pages)
        {
            ulong end = p.Vaddr + (ulong)p.Length;
            while (i < _vmas.Count && _vmas[i].End <= p.Vaddr) i++;
            for (int j = i; j < _vmas.Count && _vmas[j].Start < end; j++)
            {
                // Pages of a shared file mapping live in the file; writing them would change the file.
                if ((_vmas[j].Flags & MAP_SHARED) != 0 && (_vmas[j].Status & VMA_FILE_SHARED) != 0)
                    throw new RestoreException($"pagemap-{_images.Pid}.img has pages for the shared file mapping at 0x{_vmas[j].Start:x}");
                result.Add(j);
            }
            if (i >= _vmas.Count || _vmas[i].Start > p.Vaddr)
                throw new RestoreException($"pagemap-{_images.Pid}.img has pages at 0x{p.Vaddr:x} outside every VMA");
        }
        return result;
    }

    private void MoveVdso()
    {
        var dumped = _vmas.Where(IsSpecial).ToList();
        var current = ReadMaps(_task.Pid).Where(m => m.Name is "[vdso]" or "[vvar]" or "[vvar_vclock]").OrderBy(m => m.Start).ToList();
        if (dumped.Count == 0)
        {
            // The image had no vDSO (or does not mark it): drop ours.
            foreach (var m in current) _task.Check("munmap", m.Name, SyscallNumbers.munmap, (long)m.Start, (long)(m.End - m.Start));
            return;
        }
        if (current.Count == 0) throw new RestoreException("the restore stub has no vDSO to move");
        ulong dumpedStart = dumped[0].Start, dumpedEnd = dumped[^1].End;
        ulong currentStart = current[0].Start, currentEnd = current[^1].End;
        if (dumpedEnd - dumpedStart != currentEnd - currentStart)
            throw new RestoreException($"the vDSO block of this kernel ({currentEnd - currentStart} bytes) differs from the dumped one " +
                $"({dumpedEnd - dumpedStart} bytes); restoring across kernels needs a vDSO proxy, which Crest does not have yet");
        if (dumpedStart == currentStart) return;
        if (dumpedStart < currentEnd && dumpedEnd > currentStart)
        {
            // Overlapping move: through a free spot of the restore region first.
            ulong temporary = _task.RegionBase + StubInjector.ScratchOffset + StubInjector.ScratchSize + 0x10000;
            MoveBlock(current, currentStart, temporary);
            current = current.Select(m => (m.Start - currentStart + temporary, m.End - currentStart + temporary, m.Name)).ToList();
            currentStart = temporary;
        }
        MoveBlock(current, currentStart, dumpedStart);
    }

    private void MoveBlock(List<(ulong Start, ulong End, string Name)> block, ulong from, ulong to)
    {
        foreach (var m in block)
        {
            ulong size = m.End - m.Start, target = m.Start - from + to;
            long rc = _task.Check("mremap", $"{m.Name} 0x{m.Start:x} to 0x{target:x}", SyscallNumbers.mremap, (long)m.Start, (long)size, (long)size,
                MREMAP_MAYMOVE | MREMAP_FIXED, (long)target);
            if ((ulong)rc != target) throw new RestoreException($"mremap of {m.Name} landed at 0x{rc:x}, not 0x{target:x}");
        }
    }

    /// <summary>Writes every present page from pages-N.img into the task; returns the number of pages.</summary>
    public long RestoreContents()
    {
        if (_images.PagesBytes == 0) return 0;
        var clock = Stopwatch.StartNew();
        var cpu = Environment.CpuUsage.TotalTime;
        if (PopulateInTask)
        {
            // The alternative measured against parallel writers: the task faults its pages in itself
            // (MADV_POPULATE_WRITE, Linux 5.14), then the writers copy into present pages.
            foreach (var p in _images.Pages)
                _task.Check("madvise(MADV_POPULATE_WRITE)", $"0x{p.Vaddr:x}+{p.Length}", SyscallNumbers.madvise, (long)p.Vaddr, p.Length, 23);
        }
        // One mapping per pages file: the task's own, and those of parent images when the dump was incremental.
        var files = new List<FileDescriptor>();
        var mappings = new List<MemoryMapping>();
        try
        {
            foreach (var source in _images.PageSources)
            {
                var f = FileDescriptor.Open(source.Path, OpenFlags.ReadOnly | OpenFlags.CloseOnExec);
                files.Add(f);
                var m = MemoryMapping.MapFile(f, 0, (ulong)source.Bytes, MemoryProtection.Read, MapFlags.Private);
                mappings.Add(m);
                m.Advise(MemoryAdvice.Sequential);
                m.Advise(MemoryAdvice.WillNeed);
            }
            return RestoreContents(clock, cpu, files, mappings);
        }
        finally
        {
            foreach (var m in mappings) m.Dispose();
            foreach (var f in files) f.Dispose();
        }
    }

    private long RestoreContents(Stopwatch clock, TimeSpan cpu, List<FileDescriptor> files, List<MemoryMapping> mappings)
    {

        // VMAs whose missing pages are filled with UFFDIO_COPY (no zeroing, no fault per page); the rest
        // (file-backed private mappings, and anonymous ones where a fault may bring a transparent huge page)
        // are written with process_vm_writev.
        var filled = UserfaultfdVmas();
        using var uffd = filled.Count > 0 ? OpenUserfaultfd(_lazy is null ? 0 : Userfaultfd.NonCooperativeFeatures) : null;
        if (uffd is null) filled.Clear();
        if (uffd is null && _images.Pages.Any(p => p.Source == PageChain.LazySource))
            throw new RestoreException($"task {_task.Pid} has lazy pages (PE_LAZY) but no userfaultfd to hand to the lazy-pages daemon");
        foreach (int i in filled) uffd!.RegisterMissing(_vmas[i].Start, _vmas[i].End - _vmas[i].Start);
        bool lazy = _lazy is not null && filled.Count > 0;
        // From here a touch of those VMAs waits for the daemon: it gets them at once.
        if (lazy) _lazy!.Send(_task.Pid, filled.Order().Select(i => (_vmas[i].Start, _vmas[i].End)).ToList(), uffd!);
        long lazyBytes = 0;

        // Runs of (remote address, local offset, length, by UFFDIO_COPY), cut into pieces of at most
        // ChunkBytes so that work can be shared and each vector stays within one span.
        long chunkBytes = uffd is null ? 64L << 20 : CopyChunkBytes;
        var pieces = new List<(ulong Remote, long Local, long Length, bool Copy, int Source)>();
        int vi = 0;
        foreach (var p in _images.Pages)
        {
            // Entries never straddle VMAs in our images, but the pages of one entry are checked VMA by VMA anyway.
            long at = 0;
            while (at < p.Length)
            {
                ulong address = p.Vaddr + (ulong)at;
                while (vi < _vmas.Count && _vmas[vi].End <= address) vi++;
                if (vi == _vmas.Count || _vmas[vi].Start > address)
                    throw new RestoreException($"pagemap-{_images.Pid}.img has pages at 0x{address:x} outside every VMA");
                long inVma = Math.Min(p.Length - at, (long)(_vmas[vi].End - address));
                bool copy = filled.Contains(vi);
                if (p.Source == PageChain.LazySource && !(copy && lazy))
                    throw new RestoreException($"pagemap-{_images.Pid}.img: lazy pages at 0x{address:x} outside the VMAs handed to the lazy-pages daemon");
                if (copy && lazy)
                {
                    lazyBytes += inVma;
                    at += inVma;
                    continue;
                }
                for (long done = 0; done < inVma; done += chunkBytes)
                    pieces.Add((address + (ulong)done, p.Offset + at + done, Math.Min(chunkBytes, inVma - done), copy, p.Source));
                at += inVma;
            }
        }
        // Batches: consecutive pieces of one kind, contiguous in the file, at most chunkBytes each.
        var batches = new List<(int First, int Count, long Local, long Length)>();
        for (int i = 0; i < pieces.Count;)
        {
            int first = i;
            long length = 0;
            while (i < pieces.Count && (i == first || (length + pieces[i].Length <= chunkBytes && pieces[i].Copy == pieces[first].Copy &&
                pieces[i].Source == pieces[first].Source && pieces[i].Local == pieces[first].Local + length)) && i - first < 1024)
            {
                length += pieces[i].Length;
                i++;
            }
            batches.Add((first, i - first, pieces[first].Local, length));
        }
        int pid = _task.Pid;
        int workers = Math.Max(1, Math.Min(Workers, batches.Count));
        int next = -1;
        Exception? failure = null;
        void Work()
        {
            MemoryMapping? buffer = null;
            try
            {
                while (true)
                {
                    int b = Interlocked.Increment(ref next);
                    if (b >= batches.Count || Volatile.Read(ref failure) is not null) return;
                    Interruption.CheckRestore();
                    var (first, count, local, length) = batches[b];
                    var pages = mappings[pieces[first].Source];
                    var file = files[pieces[first].Source];
                    if (pieces[first].Copy)
                    {
                        // Source pages mapped in one call: UFFDIO_COPY would otherwise leave the task's mm lock and
                        // fault in each source page separately.
                        pages.Advise((ulong)local, (ulong)length, MemoryAdvice.PopulateRead);
                        for (int k = first; k < first + count; k++)
                            uffd!.Copy(pieces[k].Remote, pages.Slice((ulong)pieces[k].Local, (int)pieces[k].Length));
                        // Unmapped here, on every writer, rather than by one munmap of the whole image at the end.
                        pages.Advise((ulong)local, (ulong)length, MemoryAdvice.DontNeed);
                        continue;
                    }
                    var ranges = new RemoteRange[count];
                    for (int k = 0; k < count; k++) ranges[k] = new RemoteRange(pieces[first + k].Remote, (ulong)pieces[first + k].Length);
                    if (ReadIntoBuffer)
                    {
                        buffer ??= MemoryMapping.Anonymous((ulong)chunkBytes);
                        var span = buffer.Slice(0, (int)length);
                        if (file.PRead(span, local) != length)
                            throw new RestoreException($"{Path.GetFileName(_images.PageSources[pieces[first].Source].Path)}: short read at offset {local}");
                        RemoteMemory.WriteVectored(pid, ranges, span);
                        continue;
                    }
                    // Map the page-cache pages of this batch in one call, not one fault at a time.
                    pages.Advise((ulong)local, (ulong)length, MemoryAdvice.PopulateRead);
                    RemoteMemory.WriteVectored(pid, ranges, pages.Slice((ulong)local, (int)length));
                    pages.Advise((ulong)local, (ulong)length, MemoryAdvice.DontNeed);
                }
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref failure, e, null);
            }
            finally
            {
                buffer?.Dispose();
            }
        }
        var threads = new Thread[workers - 1];
        for (int t = 0; t < threads.Length; t++)
        {
            threads[t] = new Thread(Work) { Name = $"crest restore pages {t + 1}", IsBackground = true };
            threads[t].Start();
        }
        Work();
        foreach (var t in threads) t.Join();
        if (failure is not null)
            throw new RestoreException($"writing the pages of task {pid} failed: {failure.Message}", failure);
        // While registered, a touch of a still missing page would wait for Crest to serve it: unregister now.
        if (!lazy) foreach (int i in filled) uffd!.Unregister(_vmas[i].Start, _vmas[i].End - _vmas[i].Start);
        ContentsTime = clock.Elapsed;
        PagesWritten = (_images.PagesBytes - lazyBytes) / 4096;
        PagesLazy = lazyBytes / 4096;
        if (lazy) Log.Info($"{pid}: restore: {PagesLazy} pages in {filled.Count} VMAs left to the lazy-pages daemon");
        Log.Info($"{pid}: restore: {PagesWritten} pages written in {ContentsTime.TotalMilliseconds:0.0} ms by {workers} threads, " +
            $"{filled.Count} VMAs by UFFDIO_COPY ({_images.PagesBytes / Math.Max(ContentsTime.TotalSeconds, 1e-9) / 1e9:0.00} GB/s, " +
            $"CPU {(Environment.CpuUsage.TotalTime - cpu).TotalMilliseconds:0} ms)");
        return PagesWritten;
    }

    /// <summary>
    /// Indexes of the VMAs with pages to be filled by UFFDIO_COPY: private anonymous ones (the only kind
    /// with missing-page registration besides shmem), except where a fault could bring a transparent huge
    /// page (UFFDIO_COPY installs small pages only; those VMAs keep the faulting writers).
    /// </summary>
    private HashSet<int> UserfaultfdVmas()
    {
        var result = new HashSet<int>();
        // Pages only the dump's source holds (PE_LAZY): their VMAs go to the lazy-pages daemon whatever THP may do there
        // (UFFDIO_COPY installs small pages; nothing else could fill them).
        if (_lazy is not null) result.UnionWith(VmasWithLazyPages());
        if (!UseUserfaultfd || PopulateInTask) return result;
        foreach (int i in VmasWithPages())
        {
            var v = _vmas[i];
            bool anonymous = (v.Flags & MAP_ANONYMOUS) != 0 || (v.Status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED)) == 0;
            if (!anonymous || (v.Flags & MAP_SHARED) != 0 || IsSpecial(v)) continue;
            bool hugeAllowed = TransparentHugePages.MayBack(v.HasMadv ? v.Madv : 0);
            // With --lazy-pages they go to the daemon all the same: it collapses them into huge pages once filled.
            if (!hugeAllowed || _lazy is not null) result.Add(i);
        }
        return result;
    }

    private HashSet<int> VmasWithLazyPages()
    {
        var result = new HashSet<int>();
        int i = 0;
        foreach (var p in _images.Pages)
        {
            if (p.Source != PageChain.LazySource) continue;
            while (i < _vmas.Count && _vmas[i].End <= p.Vaddr) i++;
            for (int j = i; j < _vmas.Count && _vmas[j].Start < p.End; j++)
            {
                var v = _vmas[j];
                bool anonymous = (v.Flags & MAP_ANONYMOUS) != 0 || (v.Status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED)) == 0;
                if (!anonymous || (v.Flags & MAP_SHARED) != 0 || IsSpecial(v))
                    throw new RestoreException($"pagemap-{_images.Pid}.img has lazy pages in VMA 0x{v.Start:x}-0x{v.End:x}, which is not private anonymous memory");
                result.Add(j);
            }
        }
        return result;
    }

    /// <summary>
    /// A userfaultfd of the task's mm, taken over by Crest (the task's own fd closed again); null, with a
    /// log line, when the task cannot have one (pages are then written by the faulting writers).
    /// </summary>
    private Userfaultfd? OpenUserfaultfd(ulong features)
    {
        long taskFd = _task.Syscall(SyscallNumbers.userfaultfd, O_CLOEXEC);
        if (taskFd < 0)
        {
            Log.Info($"{_task.Pid}: restore: no userfaultfd ({Errno.FromRawReturn(taskFd)}); pages go through process_vm_writev");
            return null;
        }
        FileDescriptor? fd = null;
        try
        {
            using var pidfd = PidFd.Open(_task.Pid);
            fd = pidfd.GetFd((int)taskFd);
        }
        catch (KernelException e)
        {
            throw new RestoreException($"cannot take the userfaultfd of restored task {_task.Pid}: {e.Message}", e);
        }
        finally
        {
            _task.Check("close", "its userfaultfd", SyscallNumbers.close, taskFd);
        }
        try
        {
            return Userfaultfd.Adopt(fd, _task.Pid, features);
        }
        catch (KernelException e)
        {
            throw new RestoreException($"userfaultfd of restored task {_task.Pid}: {e.Message}", e);
        }
    }

    /// <summary>Protections back to the dumped ones where pages needed write access.</summary>
    public void FinishLayout()
    {
        foreach (int i in _touch)
            RemoteMemory.Write(_task.Pid, _vmas[i].Start, new byte[8]);
        foreach (int i in _finalProtect.Order())
        {
            var v = _vmas[i];
            _task.Check("mprotect", $"VMA 0x{v.Start:x}-0x{v.End:x}", SyscallNumbers.mprotect, (long)v.Start, (long)(v.End - v.Start), v.Prot);
        }
    }

    internal static List<(ulong Start, ulong End, string Name)> ReadMaps(int pid)
    {
        var result = new List<(ulong, ulong, string)>();
        foreach (var line in File.ReadAllLines($"/proc/{pid}/maps"))
        {
            int dash = line.IndexOf('-'), space = line.IndexOf(' ');
            ulong start = Convert.ToUInt64(line[..dash], 16), end = Convert.ToUInt64(line[(dash + 1)..space], 16);
            // Fields: range perms offset dev inode [name]; the name starts after the fifth field.
            var fields = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            string name = fields.Length >= 6 ? fields[5].Trim() : "";
            result.Add((start, end, name));
        }
        return result;
    }
}
