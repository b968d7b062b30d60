// Killing what runs on memory that can no longer be had (LazyPages.cs): a task handed over by a restore is known
// by its pidfd, but a process forked while its memory was missing reaches the daemon as a userfaultfd only (the
// FORK event names no pid), and one forked by such a child has no known parent either. Those are found among the
// processes of the restored tree: the descendants of the restored tasks (ppid links, /proc/PID/stat) and, for
// the orphans whose parent already died, the processes of the restored tasks' sessions. One of them shares the
// lost memory when a VMA of it is still registered for missing-page faults (smaps VmFlags "um": the daemon's
// registration, which a fork copies and an exec or a filled-in task drops) over an address a doomed task still
// misses. Each found is stopped (SIGSTOP, so that it cannot fork away while the scan repeats) until a scan finds
// no new one; then all are killed at once (a SIGKILL reaches a stopped process).
using System.Diagnostics;
using Crest.Diagnostics;
using Crest.Kernel;
using Crest.Kernel.Files;
using Crest.Kernel.Proc;

namespace Crest.Engine.Restore;

public sealed partial class LazyPages
{
    private const int SIGKILL = 9, SIGSTOP = 19;

    /// <summary>How long a process found sharing lost memory is given to stop before the next scan.</summary>
    private static readonly TimeSpan StopWait = TimeSpan.FromSeconds(2);

    /// <summary>Every task a restore handed over, and the sessions they were in then.</summary>
    private readonly HashSet<int> _restoredPids = [];
    private readonly HashSet<int> _restoredSessions = [];

    private void RememberRestored(int pid)
    {
        _restoredPids.Add(pid);
        if (ReadStat(pid) is { } stat) _restoredSessions.Add(stat.Session);
    }

    /// <summary>
    /// Kills <paramref name="doomed"/> (their missing pages cannot be had): the tasks a restore handed over through
    /// their pidfds, and for those known only by a userfaultfd, every process of the restored tree that shares
    /// their missing memory.
    /// </summary>
    private void Kill(IReadOnlyList<LazyTask> doomed)
    {
        var stopped = new Dictionary<int, PidFd>();
        try
        {
            foreach (var t in doomed)
                if (t.PidFd is not null) Signal(t.PidFd, SIGSTOP, t.Name);
            var lost = new List<(ulong Start, ulong End)>();
            foreach (var t in doomed)
            {
                if (t.PidFd is not null) continue;
                for (int i = 0; i < t.Remaining.Count; i++) lost.Add((t.Remaining[i].Start, t.Remaining[i].End));
            }
            if (lost.Count > 0) StopSharers(lost, stopped, doomed.Where(t => t.PidFd is null).Select(t => t.Name));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or KernelException)
        {
            // The daemon must go on serving the others: what was found is killed all the same.
            Log.Error($"lazy-pages: the scan for processes sharing lost memory stopped: {e.Message}");
        }
        finally
        {
            // Whatever the scan ran into, nothing it stopped is left stopped.
            foreach (var t in doomed)
                if (t.PidFd is not null) Signal(t.PidFd, SIGKILL, t.Name);
            foreach (var (pid, pidfd) in stopped)
            {
                if (Signal(pidfd, SIGKILL, $"{pid}")) Log.Error($"lazy-pages: killed {pid}, forked while it missed pages");
                pidfd.Dispose();
            }
        }
    }

    /// <summary>Scans until no new process of the restored tree shares <paramref name="lost"/>; each found is stopped
    /// and added to <paramref name="stopped"/>.</summary>
    private void StopSharers(List<(ulong Start, ulong End)> lost, Dictionary<int, PidFd> stopped, IEnumerable<string> names)
    {
        lost.Sort();
        for (int scan = 1; ; scan++)
        {
            int before = stopped.Count;
            foreach (int pid in RestoredTree())
            {
                if (_restoredPids.Contains(pid) || stopped.ContainsKey(pid) || pid == Environment.ProcessId) continue;
                PidFd pidfd;
                try
                {
                    pidfd = PidFd.Open(pid);
                }
                catch (KernelException)
                {
                    continue; // gone meanwhile
                }
                // Checked after the pidfd is open: a pid reused meanwhile is checked as the process it now is.
                if (!SharesLostMemory(pid, lost) || !Signal(pidfd, SIGSTOP, $"{pid}"))
                {
                    pidfd.Dispose();
                    continue;
                }
                stopped.Add(pid, pidfd);
            }
            Log.Info($"lazy-pages: scan {scan} for processes sharing the memory of {string.Join(", ", names)}: {stopped.Count - before} new");
            if (stopped.Count == before) return;
            WaitStopped(stopped.Keys);
        }
    }

    /// <summary>The descendants of the restored tasks and the processes of their sessions (pids of /proc, one stat read each).</summary>
    private List<int> RestoredTree()
    {
        var parents = new Dictionary<int, int>();
        var tree = new HashSet<int>();
        foreach (string entry in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(entry), out int pid)) continue;
            if (ReadStat(pid) is not { } stat || stat.State is 'Z' or 'X') continue;
            parents[pid] = stat.Ppid;
            if (_restoredSessions.Contains(stat.Session)) tree.Add(pid);
        }
        foreach (int pid in parents.Keys)
        {
            // Up the ppid links until a restored task (a descendant) or the top (not one).
            int at = pid;
            for (int depth = 0; depth < 4096 && at > 1 && !tree.Contains(at) && !_restoredPids.Contains(at); depth++)
                at = parents.TryGetValue(at, out int parent) ? parent : 0;
            if (at > 1 && (tree.Contains(at) || _restoredPids.Contains(at))) tree.Add(pid);
        }
        return tree.ToList();
    }

    /// <summary>A VMA of <paramref name="pid"/> registered for missing-page faults over an address of <paramref name="lost"/> (sorted).</summary>
    private static bool SharesLostMemory(int pid, List<(ulong Start, ulong End)> lost)
    {
        IReadOnlyList<SmapsVma> vmas;
        try
        {
            vmas = ProcSmaps.Parse(ProcFile.ReadAll(pid, "smaps"));
        }
        catch (Exception e) when (e is KernelException or ProcParseException)
        {
            return false; // gone (or a kernel thread)
        }
        foreach (var vma in vmas)
        {
            if ((vma.VmFlags & VmFlags.UffdMissing) == 0) continue;
            foreach (var (start, end) in lost)
            {
                if (start >= vma.Vma.End) break;
                if (end > vma.Vma.Start) return true;
            }
        }
        return false;
    }

    /// <summary>Until each of <paramref name="pids"/> is stopped or gone, at most <see cref="StopWait"/>: a process still
    /// running may fork once more, which the next scan finds.</summary>
    private static void WaitStopped(IEnumerable<int> pids)
    {
        var clock = Stopwatch.StartNew();
        foreach (int pid in pids)
        {
            while (ReadStat(pid) is { State: not ('T' or 't' or 'Z' or 'X') } && clock.Elapsed < StopWait) Thread.Sleep(1);
        }
    }

    private static ProcStat? ReadStat(int pid)
    {
        try
        {
            return ProcStat.Parse(ProcFile.ReadAll(pid, "stat"));
        }
        catch (Exception e) when (e is KernelException or ProcParseException)
        {
            return null;
        }
    }

    /// <summary>False when the process is gone already (ESRCH); other failures are logged.</summary>
    private static bool Signal(PidFd pidfd, int signal, string name)
    {
        try
        {
            pidfd.SendSignal(signal);
            return true;
        }
        catch (KernelException e)
        {
            if (e.Errno.Value != Errno.ESRCH) Log.Error($"lazy-pages: {name}: {(signal == SIGKILL ? "SIGKILL" : "SIGSTOP")}: {e.Message}");
            return false;
        }
    }
}
