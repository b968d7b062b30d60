// The lazy-pages daemon's engine (post-copy restore, ENGINE.md §5): it serves the private anonymous memory of
// tasks restored with --lazy-pages from their images, through the userfaultfd each restore hands over
// (LazyPagesConnection.cs). One thread, one poll loop over the listening socket, the restores' connections,
// and every task's userfaultfd and pidfd:
//   - PAGEFAULT: the run around the page (up to 64 KiB, within what is still to be filled) is copied in with
//     UFFDIO_COPY, which wakes the thread; a page the images do not have (or the task discarded) gets
//     UFFDIO_ZEROPAGE; a page already there (EEXIST) only a UFFDIO_WAKE;
//   - FORK: the child's new userfaultfd is served like its parent, with what the parent still had missing;
//   - REMOVE (MADV_DONTNEED), UNMAP: the range is never filled from the images again; REMAP moves it;
//   - between events, a background pass copies everything that is left in 1 MiB steps, so that a task has
//     all its pages after about the time an eager restore takes.
// Correctness rests on two kernel rules: UFFDIO_COPY only fills missing pages (a page the task has written
// is never overwritten), and while an event is queued, copies fail with EAGAIN (the event is read, and the
// bookkeeping changed, before anything more is copied). A task is done when nothing is left to fill (its
// userfaultfd is then closed, which unregisters its VMAs) or when it is gone (pidfd readable, or ESRCH).
//
// Page sources: each run of a task's set names where its data is: a pages file of the images (mapped), or,
// for the PE_LAZY entries of a dump made for post-copy migration, the dump's source itself (an
// IRemotePageSource: `lazy-pages --page-server --address A --port P`), asked with PS_IOV_GET for a fault window
// or for a background step of many runs in one round trip. A run of a pre-dump chain's PE_PARENT pages comes from
// the local parent images all the same. When every task is done the source is told (PS_IOV_CLOSE) so that its dump
// ends; when the source breaks, every task still missing pages from it is killed (never left to read zeros), with
// the processes forked meanwhile that share that memory (LazyPages.LostMemory.cs).
using System.Buffers.Binary;
using System.Diagnostics;
using Crest.Diagnostics;
using Crest.Images;
using Crest.Images.Pages;
using Crest.Images.Protos;
using Crest.Kernel;
using Crest.Kernel.Files;
using Crest.Kernel.Memory;
using Crest.Kernel.Sockets;

namespace Crest.Engine.Restore;

public sealed partial class LazyPages : IDisposable
{
    private const ulong PageSize = 4096;

    /// <summary>Pages copied around a faulting page (aligned window).</summary>
    internal static ulong FaultWindow { get; set; } = 64 * 1024;

    /// <summary>Bytes copied per step of the background pass.</summary>
    internal static ulong BackgroundStep { get; set; } = 1 << 20;

    /// <summary>No background pass: pages arrive on faults only (engine tests make a task meet its missing pages).</summary>
    public static bool BackgroundPaused { get; set; }

    /// <summary><see cref="LazyRun.Source"/> of pages the remote source holds; their Offset is their address in the dumped task.</summary>
    private const int RemoteSource = PageChain.LazySource;

    /// <summary>Largest batch of remote runs asked for in one round trip.</summary>
    private const int MaxRemoteRuns = 256;

    private readonly string _dir;
    private readonly IRemotePageSource? _remote;
    private MemoryMapping? _remoteBuffer;
    private bool _remoteBroken, _killedForRemote;

    private readonly Dictionary<int, List<LazyRun>> _imagePages = [];
    /// <summary>VMAs of each task where THP may back faults: collapsed into huge pages once filled (small pages otherwise).</summary>
    private readonly Dictionary<int, List<(ulong Start, ulong End)>> _hugeVmas = [];
    private readonly List<(FileDescriptor File, MemoryMapping Pages)> _sources = [];
    private readonly FileDescriptor _listener;
    private readonly string _socketPath;
    private readonly List<FileDescriptor> _connections = [];
    private readonly List<LazyTask> _tasks = [];
    private int _next, _children;
    private bool _served;

    /// <summary>Totals over the daemon's life (the CLI logs them).</summary>
    public long PagesCopied { get; private set; }
    public long Faults { get; private set; }
    public int TasksServed { get; private set; }
    public int Forks { get; private set; }
    public long PagesFetched { get; private set; }

    /// <summary>The remote source broke while tasks still needed pages from it (they were killed).</summary>
    public bool RemoteFailed => _killedForRemote;

    /// <summary>Reads the images of <paramref name="imagesDir"/>, opens and maps every pages file they need (so that
    /// they may be unlinked once the daemon is ready) and listens on <paramref name="socketPath"/>.</summary>
    public LazyPages(string imagesDir, string socketPath, IRemotePageSource? remote = null)
        : this(imagesDir, Listen(socketPath), socketPath, ownsListenerOnFailure: true, remote)
    {
    }

    /// <summary>
    /// As the other constructor, with a socket already listening (<see cref="Listen"/>): a restore may connect while
    /// the images load, and waits in the backlog until <see cref="Run"/> accepts it. The listener is this object's once
    /// the constructor returns; when it throws, the caller still holds it (and whatever waits in its backlog).
    /// </summary>
    public LazyPages(string imagesDir, FileDescriptor listener, string socketPath) : this(imagesDir, listener, socketPath, ownsListenerOnFailure: false)
    {
    }

    private LazyPages(string imagesDir, FileDescriptor listener, string socketPath, bool ownsListenerOnFailure, IRemotePageSource? remote = null)
    {
        _dir = Path.GetFullPath(imagesDir);
        _socketPath = socketPath;
        _listener = listener;
        _remote = remote;
        try
        {
            LoadImages();
            ProbeRemote();
        }
        catch (Exception e) when (e is KernelException or IOException or ArgumentException or ImageFormatException)
        {
            DisposeSources();
            if (ownsListenerOnFailure) CloseListener(listener, socketPath);
            throw new RestoreException($"lazy-pages: {e.Message}", e);
        }
    }

    /// <summary>A unix socket listening at <paramref name="socketPath"/> (a stale socket file there replaced).</summary>
    public static FileDescriptor Listen(string socketPath)
    {
        FileDescriptor? listener = null;
        try
        {
            if (File.Exists(socketPath) || new FileInfo(socketPath).LinkTarget is not null) File.Delete(socketPath);
            listener = KernelSocket.Create(SocketFamily.Unix, SocketKind.SeqPacket);
            KernelSocket.Bind(listener, SockAddr.Unix(socketPath));
            KernelSocket.Listen(listener, 16);
            return listener;
        }
        catch (Exception e) when (e is KernelException or IOException or ArgumentException)
        {
            listener?.Dispose();
            throw new RestoreException($"lazy-pages: cannot listen on {socketPath}: {e.Message}", e);
        }
    }

    /// <summary>Closes a listener of <see cref="Listen"/> and removes its socket file.</summary>
    public static void CloseListener(FileDescriptor listener, string socketPath)
    {
        listener.Dispose();
        try
        {
            File.Delete(socketPath);
        }
        catch (IOException)
        {
            // someone else's now
        }
    }

    public string SocketPath => _socketPath;

    /// <summary>The pages of every live task in the images, resolved through the parent chain, each pages file mapped once.</summary>
    private void LoadImages()
    {
        string pstree = Path.Combine(_dir, "pstree.img");
        if (!File.Exists(pstree)) throw new IOException($"images directory {_dir} has no pstree.img");
        List<PstreeEntry> entries;
        using (var reader = ImageReader.Open(pstree, ImageKinds.Pstree)) entries = reader.ReadEntries(PstreeEntry.Parser).ToList();
        var byPath = new Dictionary<string, int>();
        foreach (var entry in entries)
        {
            int pid = (int)entry.Pid;
            var chain = PageChain.TryResolve(_dir, (ulong)pid, allowLazy: true);
            if (chain is null) continue; // a zombie
            long lazy = chain.LazyBytes;
            if (lazy > 0 && _remote is null)
                throw new IOException($"task {pid} has {lazy / (long)PageSize} pages that only the dump's source holds (PE_LAZY): start lazy-pages with --page-server --address and --port of that dump");
            var runs = new List<LazyRun>(chain.Runs.Count);
            foreach (var r in chain.Runs)
            {
                if (r.Source == PageChain.LazySource)
                {
                    runs.Add(new LazyRun(r.Vaddr, r.End, RemoteSource, r.Offset));
                    continue;
                }
                var source = chain.Sources[r.Source];
                if (!byPath.TryGetValue(source.Path, out int index))
                {
                    index = _sources.Count;
                    var file = FileDescriptor.Open(source.Path, OpenFlags.ReadOnly | OpenFlags.CloseOnExec);
                    long length = file.Stat().Size;
                    _sources.Add((file, MemoryMapping.MapFile(file, 0, (ulong)length, MemoryProtection.Read, MapFlags.Private)));
                    byPath[source.Path] = index;
                }
                runs.Add(new LazyRun(r.Vaddr, r.End, index, r.Offset));
            }
            _imagePages[pid] = runs;
            _hugeVmas[pid] = HugeVmas(pid);
            Log.Info($"lazy-pages: task {pid}: {chain.Bytes / (long)PageSize} pages in the images{(lazy > 0 ? $", {lazy / (long)PageSize} of them at the {_remote!.Name}" : "")}");
        }
    }

    /// <summary>
    /// One page fetched from the remote source before the daemon says it is ready: a source that refuses this daemon
    /// (over TLS 1.3 a server refuses the client's certificate only after the client's handshake is done), or is not
    /// the dump of these images, fails the daemon's start instead of the restored task's first fault.
    /// </summary>
    private void ProbeRemote()
    {
        if (_remote is null) return;
        foreach (var (pid, runs) in _imagePages)
        {
            var run = runs.Find(r => r.Source == RemoteSource);
            if (run.Length == 0) continue;
            using var page = MemoryMapping.Anonymous(PageSize);
            _remote.Fetch([((ulong)pid, (ulong)run.Offset, 1)], page.Slice(0, (int)PageSize));
            Log.Info($"lazy-pages: the {_remote.Name} serves the pages of these images (page 0x{run.Offset:x} of task {pid} fetched)");
            return;
        }
    }

    /// <summary>Private anonymous VMAs of mm-PID.img where THP may back a fault here (Memory/TransparentHugePages.cs).</summary>
    private List<(ulong Start, ulong End)> HugeVmas(int pid)
    {
        string path = Path.Combine(_dir, ImageKinds.FileName(ImageKinds.Mm, (ulong)pid));
        if (!File.Exists(path)) return [];
        MmEntry mm;
        using (var reader = ImageReader.Open(path, ImageKinds.Mm)) mm = reader.ReadEntries(MmEntry.Parser).First();
        return mm.Vmas.Where(v => (v.Status & RestoreMemory.VMA_ANON_PRIVATE) != 0 && (v.Flags & 1) == 0
                && Crest.Engine.Memory.TransparentHugePages.MayBack(v.HasMadv ? v.Madv : 0))
            .Select(v => (v.Start, v.End)).ToList();
    }

    /// <summary>Serves until every restore that connected has ended and every task it handed over has all its pages
    /// or is gone. <paramref name="stop"/> ends the loop early.</summary>
    public void Run(CancellationToken stop = default)
    {
        var fds = new List<int>();
        var revents = new short[256];
        var messages = new UserfaultfdMessage[64];
        while (!stop.IsCancellationRequested)
        {
            if (_served && _connections.Count == 0 && _tasks.Count == 0)
            {
                FinishRemote();
                return;
            }
            fds.Clear();
            fds.Add(_listener.Fd);
            foreach (var c in _connections) fds.Add(c.Fd);
            foreach (var t in _tasks)
            {
                fds.Add(t.Uffd.Handle.Fd);
                fds.Add(t.PidFd?.Handle.Fd ?? -1);
            }
            int remoteIndex = -1;
            if (_remote is not null && !_remoteBroken)
            {
                remoteIndex = fds.Count;
                fds.Add(_remote.PollFd);
            }
            if (revents.Length < fds.Count) revents = new short[fds.Count * 2];
            // No background pass while a restore is connected: the restore itself must never wait behind a step that
            // waits for the dump's source (the pages it writes, rseq areas, are in the images and come on its faults).
            bool background = !BackgroundPaused && _connections.Count == 0;
            bool busy = _tasks.Exists(t => t.Pending.Count > 0 || (!t.Remaining.IsEmpty && background));
            Poll.Wait(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(fds), Poll.In, revents, busy ? 0 : 200);

            if (remoteIndex >= 0 && revents[remoteIndex] != 0)
                RemoteBroke(new IOException($"the {_remote!.Name} closed the connection"));
            // Positions in fds as polled: reading a connection may drop it, accepting adds one.
            int baseIndex = 1 + _connections.Count;
            // Snapshot: tasks added while reading (forks, new connections) are polled next time round.
            var tasks = _tasks.ToList();
            for (int i = _connections.Count - 1; i >= 0; i--)
                if (revents[1 + i] != 0) ReadConnection(i);
            if ((revents[0] & Poll.In) != 0) Accept();
            for (int i = 0; i < tasks.Count && baseIndex + 2 * i + 1 < fds.Count; i++)
            {
                var t = tasks[i];
                if (revents[baseIndex + 2 * i + 1] != 0) t.Gone = true;
                else ReadEvents(t, messages);
            }
            foreach (var t in tasks) if (!t.Gone) ServeFaults(t);
            if (_tasks.Count > 0 && background && _connections.Count == 0) Background(); // a restore accepted just now counts
            for (int i = _tasks.Count - 1; i >= 0; i--)
            {
                var t = _tasks[i];
                if (!t.Gone && (!t.Remaining.IsEmpty || t.Pending.Count > 0)) continue;
                Finish(t);
                _tasks.RemoveAt(i);
            }
        }
    }

    private void Accept()
    {
        try
        {
            _connections.Add(KernelSocket.Accept(_listener));
            _served = true;
        }
        catch (KernelException e)
        {
            Log.Warning($"lazy-pages: accept: {e.Message}");
        }
    }

    private void ReadConnection(int index)
    {
        var connection = _connections[index];
        var packet = new byte[LazyPagesConnection.MaxPacket];
        ReceivedMessage received;
        try
        {
            received = ScmRights.Receive(connection, packet, 2);
        }
        catch (KernelException e)
        {
            Log.Warning($"lazy-pages: restore connection: {e.Message}");
            received = new ReceivedMessage(0, [], false);
        }
        if (received.DataLength == 0)
        {
            foreach (var d in received.Descriptors) d.Dispose();
            connection.Dispose();
            _connections.RemoveAt(index);
            Log.Info($"lazy-pages: a restore ended ({_connections.Count} still connected, {_tasks.Count} tasks being served)");
            return;
        }
        var data = packet.AsSpan(0, received.DataLength);
        int pid = data.Length >= LazyPagesConnection.HeaderSize ? (int)BinaryPrimitives.ReadUInt32LittleEndian(data[4..]) : 0;
        int n = data.Length >= LazyPagesConnection.HeaderSize ? (int)BinaryPrimitives.ReadUInt32LittleEndian(data[8..]) : -1;
        if (BinaryPrimitives.ReadUInt32LittleEndian(data) != LazyPagesConnection.Magic || n < 0 ||
            data.Length != LazyPagesConnection.HeaderSize + n * LazyPagesConnection.RangeSize || received.Descriptors.Length != 2)
        {
            Log.Error($"lazy-pages: a malformed request ({data.Length} bytes, {received.Descriptors.Length} fds) is ignored");
            foreach (var d in received.Descriptors) d.Dispose();
            return;
        }
        var ranges = new List<(ulong, ulong)>(n);
        for (int i = 0; i < n; i++)
        {
            var r = data.Slice(LazyPagesConnection.HeaderSize + i * LazyPagesConnection.RangeSize);
            ranges.Add((BinaryPrimitives.ReadUInt64LittleEndian(r), BinaryPrimitives.ReadUInt64LittleEndian(r[8..])));
        }
        var uffd = Userfaultfd.Wrap(received.Descriptors[0], pid);
        var pidfd = PidFd.Adopt(received.Descriptors[1], pid);
        if (!_imagePages.TryGetValue(pid, out var pages))
        {
            Log.Error($"lazy-pages: task {pid} is not in the images of {_dir}; its missing pages read as zeros");
            pages = [];
        }
        // A task with more ranges than fit in one packet comes in several: the same task, more ranges.
        var existing = _tasks.Find(t => t.Pid == pid && t.PidFd is not null);
        var remaining = new LazyRanges(pages);
        remaining.Keep(ranges);
        if (existing is not null)
        {
            uffd.Dispose();
            pidfd.Dispose();
            existing.AddRanges(remaining);
            return;
        }
        var task = new LazyTask(pid, $"{pid}", uffd, pidfd, remaining);
        RememberRestored(pid);
        if (_remoteBroken && task.NeedsRemote())
        {
            _killedForRemote = true;
            Log.Error($"lazy-pages: {pid}: its pages at the dump's source cannot be had any more; the task is killed");
            Kill([task]);
            task.Gone = true;
        }
        _tasks.Add(task);
        TasksServed++;
        Log.Info($"lazy-pages: {pid}: serving {remaining.Bytes / PageSize} pages in {n} VMAs");
    }

    private void ReadEvents(LazyTask t, UserfaultfdMessage[] messages)
    {
        while (true)
        {
            int count;
            try
            {
                count = t.Uffd.ReadMessages(messages);
            }
            catch (KernelException e)
            {
                Log.Error($"lazy-pages: {t.Name}: reading its userfaultfd: {e.Message}; the task is killed");
                Kill([t]);
                t.Gone = true;
                return;
            }
            if (count == 0) return;
            for (int i = 0; i < count; i++) Handle(t, messages[i]);
        }
    }

    private void Handle(LazyTask t, UserfaultfdMessage m)
    {
        switch (m.Event)
        {
            case UserfaultfdEvent.PageFault:
                t.Pending.Enqueue(m.FaultAddress & ~(PageSize - 1));
                Faults++;
                t.Faults++;
                break;
            case UserfaultfdEvent.Fork:
            {
                var fd = FileDescriptor.Own(m.ForkFd);
                var child = new LazyTask(0, $"child {++_children} of {t.Name}", Userfaultfd.Wrap(fd, t.Pid), null, t.Remaining.Clone()) { ImagePid = t.ImagePid };
                _tasks.Add(child);
                Forks++;
                Log.Info($"lazy-pages: {t.Name} forked: {child.Name} gets {child.Remaining.Bytes / PageSize} missing pages");
                break;
            }
            case UserfaultfdEvent.Remap:
            {
                var (from, to, length) = m.Remap;
                t.Remaining.Move(from, to, length);
                Log.Debug($"lazy-pages: {t.Name}: mremap 0x{from:x} -> 0x{to:x} +{length}");
                break;
            }
            case UserfaultfdEvent.Remove or UserfaultfdEvent.Unmap:
            {
                var (start, end) = m.Range;
                t.Remaining.Remove(start, end);
                Log.Debug($"lazy-pages: {t.Name}: {(m.Event == UserfaultfdEvent.Remove ? "discarded" : "unmapped")} 0x{start:x}-0x{end:x}");
                break;
            }
            default:
                Log.Warning($"lazy-pages: {t.Name}: unexpected userfaultfd event 0x{(byte)m.Event:x}");
                break;
        }
    }

    private void ServeFaults(LazyTask t)
    {
        while (t.Pending.Count > 0 && !t.Gone)
        {
            ulong page = t.Pending.Peek();
            if (!ServeFault(t, page)) return; // EAGAIN: events first
            t.Pending.Dequeue();
        }
    }

    /// <summary>False when the kernel wants its queued events read first.</summary>
    private bool ServeFault(LazyTask t, ulong page)
    {
        if (!t.Remaining.TryFind(page, out var run))
        {
            // Not in the images (a hole), discarded, or filled meanwhile.
            var errno = t.Uffd.TryZeroPage(page, PageSize);
            if (errno.Value == 0) return true;
            if (errno.Value == Errno.EEXIST) { t.Uffd.TryWake(page, PageSize); return true; }
            return Failed(t, errno, page, "UFFDIO_ZEROPAGE");
        }
        ulong window = page & ~(FaultWindow - 1);
        ulong start = Math.Max(run.Start, window), end = Math.Min(run.End, window + FaultWindow);
        if (!Copy(t, run.Slice(start, end), out bool faultPagePresent)) return false;
        if (faultPagePresent) t.Uffd.TryWake(page, PageSize);
        return true;
    }

    /// <summary>One step of the background pass, round robin over the tasks.</summary>
    private void Background()
    {
        for (int k = 0; k < _tasks.Count; k++)
        {
            var t = _tasks[(_next + k) % _tasks.Count];
            if (t.Gone || t.Remaining.IsEmpty || t.Pending.Count > 0) continue;
            _next = (_next + k + 1) % Math.Max(1, _tasks.Count);
            CopyStep(t);
            return;
        }
    }

    /// <summary>
    /// The next BackgroundStep bytes of the task's set: a scattered chain leaves thousands of one-page runs, so
    /// the runs of one pages file that lie close together there are copied under one populate of their span of
    /// the file (one madvise pair per step, not per page).
    /// </summary>
    private void CopyStep(LazyTask t)
    {
        var first = t.Remaining.First;
        if (first.Source == RemoteSource)
        {
            var batch = new List<LazyRun>();
            ulong total = 0;
            for (int i = 0; i < t.Remaining.Count && batch.Count < MaxRemoteRuns && total < BackgroundStep; i++)
            {
                var r = t.Remaining[i];
                if (r.Source != RemoteSource) break;
                if (total + r.Length > BackgroundStep) r = r.Slice(r.Start, r.Start + (BackgroundStep - total));
                batch.Add(r);
                total += r.Length;
            }
            CopyRemote(t, batch, out _);
            return;
        }
        if (first.Length >= BackgroundStep)
        {
            Copy(t, first.Slice(first.Start, first.Start + BackgroundStep), out _);
            return;
        }
        var step = new List<LazyRun>();
        ulong bytes = 0;
        long low = first.Offset, high = first.Offset + (long)first.Length;
        for (int i = 0; i < t.Remaining.Count && bytes < BackgroundStep; i++)
        {
            var r = t.Remaining[i];
            if (r.Source != first.Source) break;
            long from = Math.Min(low, r.Offset), to = Math.Max(high, r.Offset + (long)r.Length);
            if ((ulong)(to - from) > 4 * BackgroundStep) break; // far apart in the file: another step
            if (bytes + r.Length > BackgroundStep) r = r.Slice(r.Start, r.Start + (BackgroundStep - bytes));
            step.Add(r);
            bytes += r.Length;
            (low, high) = (from, to);
        }
        var (_, pages) = _sources[first.Source];
        pages.Advise((ulong)low, (ulong)(high - low), MemoryAdvice.PopulateRead);
        try
        {
            foreach (var r in step)
                if (!Copy(t, r, out _, advise: false) || t.Gone) return;
        }
        finally
        {
            pages.Advise((ulong)low, (ulong)(high - low), MemoryAdvice.DontNeed);
        }
    }

    /// <summary>
    /// UFFDIO_COPY of <paramref name="run"/> (which is in the task's remaining set); what got in, or was there
    /// already, leaves the set. False on EAGAIN (events queued). <paramref name="sawExisting"/>: a page was present.
    /// </summary>
    private bool Copy(LazyTask t, LazyRun run, out bool sawExisting, bool advise = true)
    {
        sawExisting = false;
        if (run.Source == RemoteSource) return CopyRemote(t, [run], out sawExisting);
        var (_, pages) = _sources[run.Source];
        if (advise) pages.Advise((ulong)run.Offset, run.Length, MemoryAdvice.PopulateRead);
        try
        {
            return CopyIn(t, run, pages.Slice((ulong)run.Offset, (int)run.Length), out sawExisting);
        }
        finally
        {
            if (advise) pages.Advise((ulong)run.Offset, run.Length, MemoryAdvice.DontNeed);
        }
    }

    /// <summary>UFFDIO_COPY of <paramref name="data"/> (the run's pages) into the run; as <see cref="Copy"/>.</summary>
    private bool CopyIn(LazyTask t, LazyRun run, ReadOnlySpan<byte> data, out bool sawExisting)
    {
        sawExisting = false;
        ulong at = run.Start;
        while (at < run.End)
        {
            var (copied, errno) = t.Uffd.TryCopy(at, data[(int)(at - run.Start)..]);
            if (copied > 0)
            {
                t.Remaining.Remove(at, at + (ulong)copied);
                t.Copied += copied;
                PagesCopied += copied / (long)PageSize;
                at += (ulong)copied;
            }
            if (errno.Value == 0) continue;
            if (errno.Value is Errno.EEXIST or Errno.ENOENT)
            {
                // Present already (the task faulted it in through a zero page, or a copy woke it), or the range
                // is no longer registered: either way not to be filled.
                t.Remaining.Remove(at, at + PageSize);
                at += PageSize;
                sawExisting = true;
                continue;
            }
            return Failed(t, errno, at, "UFFDIO_COPY");
        }
        return true;
    }

    /// <summary>
    /// The runs' pages fetched from the remote source in one round trip, then copied in as <see cref="Copy"/> does.
    /// A broken source kills every task that still needs pages from it; this task is then done (true).
    /// </summary>
    private bool CopyRemote(LazyTask t, List<LazyRun> runs, out bool sawExisting)
    {
        sawExisting = false;
        if (_remote is null || _remoteBroken)
        {
            Log.Error($"lazy-pages: {t.Name}: needs pages from the dump's source, which {(_remote is null ? "is not known" : "is gone")}; the task is killed");
            _killedForRemote = true;
            Kill([t]);
            t.Gone = true;
            return true;
        }
        ulong bytes = 0;
        var requests = new List<(ulong, ulong, uint)>(runs.Count);
        foreach (var r in runs)
        {
            requests.Add(((ulong)t.ImagePid, (ulong)r.Offset, (uint)(r.Length / PageSize)));
            bytes += r.Length;
        }
        if (_remoteBuffer is null || _remoteBuffer.Length < bytes)
        {
            _remoteBuffer?.Dispose();
            _remoteBuffer = MemoryMapping.Anonymous(Math.Max(bytes, BackgroundStep));
        }
        try
        {
            _remote.Fetch(requests, _remoteBuffer.Slice(0, (int)bytes));
        }
        catch (IOException e)
        {
            RemoteBroke(e);
            return true;
        }
        PagesFetched += (long)(bytes / PageSize);
        ulong at = 0;
        foreach (var r in runs)
        {
            var data = _remoteBuffer.Slice(at, (int)r.Length);
            at += r.Length;
            if (!CopyIn(t, r, data, out bool existing)) return false;
            sawExisting |= existing;
            if (t.Gone) return true;
        }
        return true;
    }

    /// <summary>The source is gone: no task that still misses pages of it may run on.</summary>
    private void RemoteBroke(IOException e)
    {
        _remoteBroken = true;
        Log.Error($"lazy-pages: the dump's source broke: {e.Message}; every task still missing pages from it is killed");
        var doomed = new List<LazyTask>();
        foreach (var t in _tasks)
        {
            if (t.Gone || !t.NeedsRemote()) continue;
            Log.Error($"lazy-pages: {t.Name}: {t.Remaining.Bytes / PageSize} pages still missing; the task is killed");
            _killedForRemote = true;
            doomed.Add(t);
        }
        Kill(doomed);
        foreach (var t in doomed) t.Gone = true;
    }

    /// <summary>Every task is done: the dump's source may end (its dump succeeds only then).</summary>
    private void FinishRemote()
    {
        if (_remote is null || _remoteBroken) return;
        try
        {
            _remote.Finish();
            Log.Info($"lazy-pages: the {_remote.Name} was told that every page is in ({PagesFetched} pages fetched)");
        }
        catch (IOException e)
        {
            _remoteBroken = true;
            Log.Error($"lazy-pages: the end of the session with the {_remote.Name}: {e.Message}");
        }
    }

    /// <summary>EAGAIN: false (read events, retry). The mm gone: the task is done. Anything else is logged and the task given up.</summary>
    private bool Failed(LazyTask t, Errno errno, ulong address, string what)
    {
        if (errno.Value == Errno.EAGAIN) return false;
        if (errno.Value != Errno.ESRCH)
        {
            // Given up, its missing pages would read as zeros: a task that cannot get its memory must not run on.
            Log.Error($"lazy-pages: {t.Name}: ioctl({what}) at 0x{address:x}: {errno}; the task is killed");
            Kill([t]);
        }
        t.Gone = true;
        return true;
    }

    private void Finish(LazyTask t)
    {
        // One line per task at every level: how long post-copy took is what a migration wants to know.
        Log.Message($"lazy-pages: {t.Name}: {(t.Gone ? "gone" : "has all its pages")} after {t.Clock.Elapsed.TotalMilliseconds:0.0} ms: " +
            $"{t.Copied / (long)PageSize} pages copied, {t.Faults} faults{(t.Remaining.IsEmpty ? "" : $", {t.Remaining.Bytes / PageSize} pages never needed")}");
        // Closing the userfaultfd unregisters the task's VMAs; then the ones THP may back get their huge pages.
        t.Uffd.Dispose();
        if (!t.Gone && t.PidFd is not null && _hugeVmas.TryGetValue(t.Pid, out var huge)) Collapse(t, huge);
        t.Dispose();
    }

    /// <summary>
    /// UFFDIO_COPY installs small pages: a VMA where THP may back faults (MADV_HUGEPAGE) would keep them. Once it is
    /// filled, MADV_COLLAPSE (through process_madvise, Linux 6.1) puts huge pages back where the range allows.
    /// </summary>
    private static void Collapse(LazyTask t, List<(ulong Start, ulong End)> huge)
    {
        const int MADV_COLLAPSE = 25;
        foreach (var (start, end) in huge)
        {
            var clock = Stopwatch.StartNew();
            var errno = t.PidFd!.Advise(start, end - start, MADV_COLLAPSE);
            if (errno.Value == 0) Log.Info($"lazy-pages: {t.Name}: VMA 0x{start:x}-0x{end:x} collapsed into huge pages in {clock.Elapsed.TotalMilliseconds:0.#} ms");
            else Log.Warning($"lazy-pages: {t.Name}: MADV_COLLAPSE of 0x{start:x}-0x{end:x}: {errno}; it keeps small pages");
        }
    }

    private void DisposeSources()
    {
        foreach (var (file, pages) in _sources)
        {
            pages.Dispose();
            file.Dispose();
        }
        _sources.Clear();
    }

    public void Dispose()
    {
        foreach (var t in _tasks) t.Dispose();
        _tasks.Clear();
        foreach (var c in _connections) c.Dispose();
        _connections.Clear();
        CloseListener(_listener, _socketPath);
        DisposeSources();
        _remoteBuffer?.Dispose();
        _remote?.Dispose();
    }

    private sealed class LazyTask(int pid, string name, Userfaultfd uffd, PidFd? pidFd, LazyRanges remaining) : IDisposable
    {
        public int Pid { get; } = pid;
        public string Name { get; } = name;
        public Userfaultfd Uffd { get; } = uffd;
        public PidFd? PidFd { get; } = pidFd;
        public LazyRanges Remaining { get; private set; } = remaining;

        /// <summary>The task whose images hold the pages (a forked child's are its parent's).</summary>
        public int ImagePid { get; init; } = pid;

        public bool NeedsRemote()
        {
            for (int i = 0; i < Remaining.Count; i++)
                if (Remaining[i].Source == RemoteSource) return true;
            return false;
        }
        public Queue<ulong> Pending { get; } = new();
        public Stopwatch Clock { get; } = Stopwatch.StartNew();
        public bool Gone { get; set; }
        public long Copied { get; set; }
        public long Faults { get; set; }

        public void AddRanges(LazyRanges more)
        {
            var all = new List<LazyRun>();
            for (var r = Remaining; !r.IsEmpty;)
            {
                all.Add(r.First);
                r.Remove(r.First.Start, r.First.End);
            }
            while (!more.IsEmpty)
            {
                all.Add(more.First);
                more.Remove(more.First.Start, more.First.End);
            }
            Remaining = new LazyRanges(all);
        }

        public void Dispose()
        {
            Uffd.Dispose();
            PidFd?.Dispose();
        }
    }
}
