// Which pages a task wrote since its last pre-dump, without soft-dirty (ENGINE.md §5): a userfaultfd in
// write-protect async mode (UFFD_FEATURE_WP_ASYNC | WP_UNPOPULATED, Linux 6.7) lives in the task itself,
// its private VMAs registered with UFFDIO_REGISTER_MODE_WP and their pages write-protected through
// PAGEMAP_SCAN with PM_SCAN_WP_MATCHING. A write to a protected page is resolved by the kernel at once
// and leaves the page's uffd-wp bit clear, so the next (pre-)dump finds the written pages with PAGEMAP_SCAN
// (category PAGE_IS_WRITTEN, PM_SCAN_CHECK_WPASYNC: a VMA that is not registered, such as one mapped since,
// answers EPERM and is dumped whole). Pages moved by mremap lose the bit (mm/mremap.c) and count as written.
//
// The tracker must outlive Crest between invocations, so the task keeps the only lasting reference:
//
//   pre-dump d1      userfaultfd() injected, moved with F_DUPFD_CLOEXEC to fd SLOT(1), handshake,
//                    register + protect;        d1/crest-track-mem: "PID FD1 1"
//   pre-dump d2      fd FD1 named by d1 is the tracker: scan written pages, dump them, PE_PARENT for the
//   --prev d1        rest; protect again, move to SLOT(2), close FD1;  d2/crest-track-mem: "PID FD2 2"
//   dump d3          FD2 named by d2 is the tracker: the same scan; the fd is left out of fdinfo and
//   --prev d2        closed in the task once the images are complete (the restored task never has it).
//
// The fd moves at every round, so the images of an older round (dump --prev-images-dir d1 after d2) no
// longer name the tracker and that dump writes every page: the tracker only knows changes since the latest
// round. SLOT(n) = base + n % 64, base just below the task's RLIMIT_NOFILE (at most 1024). Every step that
// changes the tracker runs after the images are written, while the task is still frozen: a failure before
// it leaves the tracker as the last good round left it.
using System.Globalization;
using System.Text;
using Crest.Diagnostics;
using Crest.Engine.Dump;
using Crest.Images.Pages;
using Crest.Kernel;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Files;
using Crest.Kernel.Injection;
using Crest.Kernel.Memory;
using Crest.Kernel.Proc;

namespace Crest.Engine.Memory;

/// <summary>A task's pages up the parent chain, resolved ahead (null: the parent images hold none of this task).</summary>
internal sealed record ParentPages(PageChain? Chain);

/// <summary>The write-protect tracker of one task, as found at the start of a (pre-)dump.</summary>
internal sealed class DirtyTracker : IDisposable
{
    /// <summary>Crest's file in a pre-dump's images: one line "PID FD GENERATION" per task.</summary>
    public const string StateFileName = "crest-track-mem";

    private const int Slots = 64;
    private const long F_DUPFD_CLOEXEC = 1030, O_CLOEXEC = 0x80000, O_NONBLOCK = 0x800;
    private const string UserfaultfdLink = "anon_inode:[userfaultfd]";

    private Userfaultfd? _uffd;
    private readonly HashSet<int> _stale;

    private DirtyTracker(int pid, Userfaultfd? uffd, int taskFd, uint generation, HashSet<int> stale)
    {
        Pid = pid;
        _uffd = uffd;
        TaskFd = taskFd;
        Generation = generation;
        _stale = stale;
    }

    public int Pid { get; }

    /// <summary>The tracker's fd in the task; -1 when there is none yet.</summary>
    public int TaskFd { get; private set; }

    /// <summary>Rounds of pre-dump the tracker has been through.</summary>
    public uint Generation { get; private set; }

    /// <summary>The task's pages in the parent images, when read before the freeze (PreDump.ResolveParentsEarly; Chain null: none there).</summary>
    public ParentPages? EarlyParentChain { get; set; }

    /// <summary>Whether written pages can be told from unchanged ones (a tracker the parent images name).</summary>
    public bool Knows => _uffd is not null;

    /// <summary>Every fd of the task that holds a Crest tracker (to be left out of its fd table's image).</summary>
    public IReadOnlySet<int> TaskFds => (TaskFd >= 0 ? _stale.Append(TaskFd) : _stale).ToHashSet();

    /// <summary>
    /// The tracker of <paramref name="pid"/> that the images in <paramref name="parentDir"/> name, if the task
    /// still holds it; trackers of other rounds are noted as stale (closed at the end of this round).
    /// </summary>
    public static DirtyTracker Find(int pid, string? parentDir)
    {
        var found = FindTrackerFds(pid);
        var named = parentDir is null ? null : ReadState(parentDir, pid);
        if (named is { } n && found.Contains(n.Fd))
        {
            FileDescriptor fd;
            try
            {
                using var pidfd = PidFd.Open(pid);
                fd = pidfd.GetFd(n.Fd);
            }
            catch (KernelException e)
            {
                throw new DumpException($"Cannot take the dirty-page tracker (fd {n.Fd}) of task {pid}: {e.Message}", e);
            }
            found.Remove(n.Fd);
            Log.Info($"{pid}: track-mem: tracker of round {n.Generation} at fd {n.Fd}");
            return new DirtyTracker(pid, Userfaultfd.Wrap(fd, pid), n.Fd, n.Generation, found);
        }
        if (parentDir is not null)
        {
            Log.Warning(named is null
                ? $"{pid}: track-mem: {parentDir} names no tracker for this task; every page is dumped"
                : $"{pid}: track-mem: the tracker {parentDir} names (fd {named.Value.Fd}) is gone or belongs to a later round; every page is dumped");
        }
        return new DirtyTracker(pid, null, -1, 0, found);
    }

    /// <summary>
    /// Splits the <paramref name="present"/> runs of a VMA into pages to dump and pages the parent images
    /// hold unchanged (<paramref name="parent"/>: the task's pages up the chain, ascending).
    /// </summary>
    public void Split(PagemapScan scan, ulong start, ulong end, List<(ulong Start, ulong End)> present, IReadOnlyList<PageRun>? parent,
        List<(ulong Start, ulong End, bool InParent)> output)
    {
        var written = new List<(ulong Start, ulong End)>();
        if (!Knows || parent is null || present.Count == 0 || !scan.ScanWritten(start, end, protect: false, written))
        {
            foreach (var (s, e) in present) Append(output, s, e, false);
            return;
        }
        // Sweep the present runs against the written runs and the parent's runs (all ascending).
        int wi = 0, pi = FirstEndingAfter(parent, start);
        foreach (var (s, e) in present)
        {
            ulong at = s;
            while (at < e)
            {
                while (wi < written.Count && written[wi].End <= at) wi++;
                while (pi < parent.Count && parent[pi].End <= at) pi++;
                bool isWritten = wi < written.Count && written[wi].Start <= at;
                bool inParent = pi < parent.Count && parent[pi].Vaddr <= at;
                ulong next = e;
                if (wi < written.Count) next = Math.Min(next, isWritten ? written[wi].End : written[wi].Start);
                if (pi < parent.Count) next = Math.Min(next, inParent ? parent[pi].End : parent[pi].Vaddr);
                // Neither written since the last round nor in the parent images: the page was not there at the last
                // round and nobody wrote it since. It is a uffd-wp marker that protecting a hole left (the pagemap
                // counts it as swapped) or a page only read since (the zero page, a clean file page), and an empty
                // page of the restored mapping reads the same. Dumping it would write a whole sparse mapping out.
                if (isWritten || inParent) Append(output, at, next, !isWritten && inParent);
                at = next;
            }
        }
    }

    private static int FirstEndingAfter(IReadOnlyList<PageRun> runs, ulong address)
    {
        int lo = 0, hi = runs.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) / 2;
            if (runs[mid].End <= address) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    }

    private static void Append(List<(ulong Start, ulong End, bool InParent)> output, ulong start, ulong end, bool inParent)
    {
        if (output.Count > 0 && output[^1].End == start && output[^1].InParent == inParent) output[^1] = (output[^1].Start, end, inParent);
        else output.Add((start, end, inParent));
    }

    /// <summary>
    /// End of a pre-dump round (the task frozen, the images written): the tracker is made if there is none,
    /// moved to the next round's fd, every VMA with dumped pages registered and all its pages write-protected.
    /// </summary>
    public void Arm(FrozenTask task, IReadOnlyList<DumpedVma> vmas)
    {
        int pid = task.Pid;
        uint generation = Generation + 1;
        int slot = ChooseSlot(pid, generation);
        int previous = TaskFd;
        PinnedInjection.Run(task.Tracee, () =>
        {
            using var remote = SyscallInjector.Open(task.Tracee);
            CloseStale(remote);
            bool created = TaskFd < 0;
            long source = TaskFd;
            if (created)
            {
                source = remote.Syscall(SyscallNumbers.userfaultfd, O_CLOEXEC | O_NONBLOCK);
                if (source < 0) throw new DumpException($"userfaultfd() in task {pid} failed: {Errno.FromRawReturn(source)}.");
            }
            long moved = remote.Syscall(SyscallNumbers.fcntl, source, F_DUPFD_CLOEXEC, slot);
            if (moved < 0) moved = remote.Syscall(SyscallNumbers.fcntl, source, F_DUPFD_CLOEXEC, 3);
            if (moved < 0)
            {
                if (created) remote.Syscall(SyscallNumbers.close, source);
                throw new DumpException($"fcntl(F_DUPFD_CLOEXEC) of the tracker in task {pid} failed: {Errno.FromRawReturn(moved)}.");
            }
            remote.Syscall(SyscallNumbers.close, source);
            try
            {
                if (created)
                {
                    using var pidfd = PidFd.Open(pid);
                    _uffd = Userfaultfd.Adopt(pidfd.GetFd((int)moved), pid, Userfaultfd.WriteTrackingFeatures);
                }
                Protect(pid, vmas);
            }
            catch (Exception e) when (e is KernelException or DumpException)
            {
                // A tracker half set up is no tracker: the task loses it, the next round dumps every page.
                remote.Syscall(SyscallNumbers.close, moved);
                TaskFd = -1;
                if (e is DumpException) throw;
                throw new DumpException($"Cannot set up dirty-page tracking in task {pid}: {e.Message}", e);
            }
            TaskFd = (int)moved;
        });
        _previousFd = previous;
        ArmedThisRound = true;
        Generation = generation;
        Log.Info($"{pid}: track-mem: round {generation}, tracker at fd {TaskFd}");
    }

    /// <summary>Whether <see cref="Arm"/> set up or moved on the tracker in this round.</summary>
    public bool ArmedThisRound { get; private set; }

    private int _previousFd = -1;

    /// <summary>
    /// A pre-dump that failed after <see cref="Arm"/> (its pages are written once the task runs again): the tracker goes
    /// back to where the last good round left it. One made in this round is closed in the task (its registrations go
    /// with the last reference, Crest's, at Dispose). One moved on from an earlier round goes back to that round's fd,
    /// and the pages this round dumped, which Arm protected again, are unprotected: written, as the tracker knew them
    /// before this round. Pages the task wrote since count as written anyway. Stale trackers closed by Arm stay closed.
    /// </summary>
    public void Undo(FrozenTask task, IEnumerable<(ulong Start, ulong End)> dumped)
    {
        if (!ArmedThisRound) return;
        int pid = task.Pid;
        if (_previousFd >= 0)
        {
            int failed = 0;
            foreach (var (start, end) in dumped)
            {
                try
                {
                    _uffd!.Unprotect(start, end - start);
                }
                catch (KernelException)
                {
                    failed++; // unmapped or no longer registered since: nothing of it to give back
                }
            }
            if (failed > 0) Log.Info($"{pid}: track-mem: {failed} runs were no longer tracked and stay as they are");
        }
        PinnedInjection.Run(task.Tracee, () =>
        {
            using var remote = SyscallInjector.Open(task.Tracee);
            if (_previousFd >= 0)
            {
                long back = remote.Syscall(SyscallNumbers.fcntl, TaskFd, F_DUPFD_CLOEXEC, _previousFd);
                if (back != _previousFd)
                {
                    if (back >= 0) remote.Syscall(SyscallNumbers.close, back);
                    Log.Warning($"{pid}: track-mem: fd {_previousFd} of the last round is taken ({(back < 0 ? Errno.FromRawReturn(back).Name : $"fd {back}")}); the tracker is closed and the next round dumps every page");
                    _previousFd = -1;
                }
            }
            long rc = remote.Syscall(SyscallNumbers.close, TaskFd);
            if (rc != 0) throw new DumpException($"close({TaskFd}) of the dirty-page tracker in task {pid} failed: {Errno.FromRawReturn(rc)}.");
        });
        Log.Info($"{pid}: track-mem: tracker of round {Generation} at fd {TaskFd} undone; {(_previousFd >= 0 ? $"back at fd {_previousFd}" : "closed")}");
        TaskFd = _previousFd;
        Generation--;
        ArmedThisRound = false;
    }

    private void Protect(int pid, IReadOnlyList<DumpedVma> vmas)
    {
        using var scan = new PagemapScan(pid);
        var ignored = new List<(ulong Start, ulong End)>();
        int tracked = 0;
        foreach (var v in vmas)
        {
            if (v.Pages == PageSelection.None) continue;
            var errno = _uffd!.TryRegisterWriteProtect(v.Vma.Start, v.Vma.Size);
            if (errno.Value != 0)
            {
                Log.Info($"{pid}: track-mem: VMA 0x{v.Vma.Start:x}-0x{v.Vma.End:x} cannot be tracked ({errno}); it is dumped whole each round");
                continue;
            }
            ignored.Clear();
            if (!scan.ScanWritten(v.Vma.Start, v.Vma.End, protect: true, ignored))
                throw new DumpException($"VMA 0x{v.Vma.Start:x}-0x{v.Vma.End:x} of task {pid} is not write-protect tracked right after its registration.");
            tracked++;
        }
        Log.Info($"{pid}: track-mem: {tracked} VMAs write-protected");
    }

    /// <summary>End of a final dump: every tracker fd is closed in the task (closing unregisters its ranges).</summary>
    public void Remove(FrozenTask task)
    {
        var fds = TaskFds;
        if (fds.Count == 0) return;
        PinnedInjection.Run(task.Tracee, () =>
        {
            using var remote = SyscallInjector.Open(task.Tracee);
            foreach (int fd in fds)
            {
                long rc = remote.Syscall(SyscallNumbers.close, fd);
                if (rc < 0) throw new DumpException($"close({fd}) of the dirty-page tracker in task {task.Pid} failed: {Errno.FromRawReturn(rc)}.");
            }
        });
        Log.Info($"{task.Pid}: track-mem: tracker fds {string.Join(",", fds)} closed");
        TaskFd = -1;
        _stale.Clear();
    }

    private void CloseStale(SyscallInjector remote)
    {
        foreach (int fd in _stale)
        {
            long rc = remote.Syscall(SyscallNumbers.close, fd);
            Log.Info($"{Pid}: track-mem: stale tracker fd {fd} closed ({rc})");
        }
        _stale.Clear();
    }

    /// <summary>Writes crest-track-mem into a pre-dump's images directory.</summary>
    public static void WriteState(string imagesDir, IEnumerable<DirtyTracker> trackers)
    {
        var text = new StringBuilder();
        foreach (var t in trackers)
            if (t.TaskFd >= 0) text.Append(CultureInfo.InvariantCulture, $"{t.Pid} {t.TaskFd} {t.Generation}\n");
        string path = Path.Combine(imagesDir, StateFileName);
        File.WriteAllText(path, text.ToString());
        using var fd = FileDescriptor.Open(path, OpenFlags.ReadOnly | OpenFlags.CloseOnExec);
        fd.Sync();
    }

    private static (int Fd, uint Generation)? ReadState(string dir, int pid)
    {
        string path = Path.Combine(dir, StateFileName);
        if (!File.Exists(path)) return null;
        foreach (string line in File.ReadAllLines(path))
        {
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length == 3 && int.TryParse(f[0], CultureInfo.InvariantCulture, out int p) && p == pid &&
                int.TryParse(f[1], CultureInfo.InvariantCulture, out int fd) && uint.TryParse(f[2], CultureInfo.InvariantCulture, out uint g))
                return (fd, g);
        }
        return null;
    }

    /// <summary>fds of the task that hold a userfaultfd set up for async write-protect (Crest's trackers).</summary>
    private static HashSet<int> FindTrackerFds(int pid)
    {
        var result = new HashSet<int>();
        foreach (string entry in Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd"))
        {
            string? target = new FileInfo(entry).LinkTarget;
            if (target != UserfaultfdLink) continue;
            int fd = int.Parse(Path.GetFileName(entry), CultureInfo.InvariantCulture);
            // fdinfo: "API:\t<api>:<features>:<ioctls>" (fs/userfaultfd.c), all hex.
            string info = Encoding.ASCII.GetString(ProcFile.ReadAll(pid, $"fdinfo/{fd}"));
            foreach (string line in info.Split('\n'))
            {
                if (!line.StartsWith("API:", StringComparison.Ordinal)) continue;
                var parts = line[4..].Trim().Split(':');
                if (parts.Length == 3 && ulong.TryParse(parts[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong features) &&
                    (features & Userfaultfd.WriteTrackingFeatures) == Userfaultfd.WriteTrackingFeatures)
                    result.Add(fd);
            }
        }
        return result;
    }

    /// <summary>The fd a round's tracker goes to: one of 64 slots just below the task's open-file limit.</summary>
    private static int ChooseSlot(int pid, uint generation)
    {
        long soft = 1024;
        foreach (string line in File.ReadAllLines($"/proc/{pid}/limits"))
        {
            if (!line.StartsWith("Max open files", StringComparison.Ordinal)) continue;
            var f = line["Max open files".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length > 0 && long.TryParse(f[0], CultureInfo.InvariantCulture, out long v)) soft = v;
        }
        long limit = Math.Min(soft, 1024);
        long first = limit - Slots - 1;
        if (first < 3) return 3 + (int)(generation % 8);
        return (int)(first + generation % Slots);
    }

    public void Dispose() => _uffd?.Dispose();
}
