// Freezing a tree (FreezeTree): each process as below, then its children (/proc/PID/task/TID/children,
// CONFIG_PROC_CHILDREN), which cannot change any more once their parent is held; zombies among them are
// recorded, not seized. Release of a tree: every task the same way, children first; to kill, SIGKILL goes
// to all of them before any is waited for.
//
// Freezing one task: PTRACE_SEIZE then PTRACE_INTERRUPT (Linux 3.4), waiting for the PTRACE_EVENT_STOP trap
// (ENGINE.md §2). A task already in group stop (job control) reports that stop instead and is remembered as
// stopped, so that it is left stopped. A signal that arrives first shows up as a signal-delivery stop: it is
// passed on (PTRACE_CONT with that signal) and the interrupt, still pending, stops the task right after.
//
// Release (the reverse): PTRACE_DETACH from the event stop the injector leaves the task in. The kernel keeps
// a task whose group stop is in effect stopped across the detach; to leave a running task stopped, SIGSTOP
// is queued through a pidfd first, because a signal given to PTRACE_DETACH from a trap stop is dropped.
using System.Diagnostics;
using Crest.Diagnostics;
using Crest.Kernel;
using Crest.Kernel.Files;
using Crest.Kernel.Ptrace;

namespace Crest.Engine.Dump;

/// <summary>A task held in a ptrace stop for the dump.</summary>
internal sealed class FrozenTask
{
    public FrozenTask(Tracee tracee, bool wasStopped)
    {
        Tracee = tracee;
        WasStopped = wasStopped;
    }

    public Tracee Tracee { get; }

    public int Pid => Tracee.Tid;

    /// <summary>The task was in group stop (SIGSTOP & co.) before it was seized.</summary>
    public bool WasStopped { get; }

    /// <summary>Set once the task is detached or dead: nothing more to undo.</summary>
    public bool Released { get; set; }
}

/// <summary>How the task is left once the dump is over.</summary>
internal enum ReleaseMode
{
    /// <summary>As it was: running, or stopped if it was stopped.</summary>
    AsItWas,

    /// <summary>Stopped with SIGSTOP.</summary>
    Stopped,

    /// <summary>Killed with SIGKILL; returns once it is gone (or a zombie of another parent).</summary>
    Killed,
}

internal static class Freezer
{
    private const int SIGKILL = 9, SIGSTOP = 19, SIGTSTP = 20, SIGTTIN = 21, SIGTTOU = 22;

    /// <summary>How long a task seen in group stop gets to report that stop after PTRACE_SEIZE.</summary>
    private static readonly TimeSpan GroupStopReport = TimeSpan.FromMilliseconds(200);

    public static FrozenTask Freeze(Tracer tracer, int pid, TimeSpan timeout)
    {
        // A task in group stop is reported stopped right at PTRACE_SEIZE; an interrupt on top of that would
        // leave a second trap pending that would later break into the first injected syscall.
        bool inGroupStop = ReadState(pid) == 'T';
        Tracee tracee;
        try
        {
            tracee = tracer.Seize(pid);
        }
        catch (KernelException e)
        {
            throw new DumpException($"Cannot seize task {pid}: {e.Message}.", e);
        }
        var clock = Stopwatch.StartNew();
        try
        {
            bool interrupted = !inGroupStop;
            if (interrupted) tracee.Interrupt();
            while (true)
            {
                TimeSpan left = timeout - clock.Elapsed;
                if (left < TimeSpan.Zero) left = TimeSpan.Zero;
                TraceeStop stop;
                if (interrupted)
                {
                    stop = tracee.WaitForStop(left);
                }
                else
                {
                    // Stopped when looked at; if SIGCONT came before the seize, no stop is reported: interrupt.
                    try
                    {
                        stop = tracee.WaitForStop(left < GroupStopReport ? left : GroupStopReport);
                    }
                    catch (TimeoutException)
                    {
                        tracee.Interrupt();
                        interrupted = true;
                        continue;
                    }
                }
                if (stop.Status.IsEventStop)
                {
                    bool stopped = stop.Signal is SIGSTOP or SIGTSTP or SIGTTIN or SIGTTOU;
                    Log.Info($"{pid}: freezer: frozen ({(stopped ? "was stopped" : "was running")})");
                    return new FrozenTask(tracee, stopped);
                }
                // A signal on its way in: let the task have it; the interrupt stops it afterwards.
                int signal = stop.Status.IsSignalDeliveryStop ? stop.Signal : 0;
                Log.Debug($"{pid}: freezer: passing on {stop.Status} before the interrupt stop");
                tracee.Continue(signal);
                if (!interrupted)
                {
                    tracee.Interrupt();
                    interrupted = true;
                }
            }
        }
        catch (TraceeExitedException e)
        {
            throw new DumpException($"Task {pid} ended while it was being frozen ({e.Status}).", e);
        }
        catch (TimeoutException e)
        {
            TryDetachAfterFailedFreeze(tracee);
            throw new DumpException($"Task {pid} did not stop within {timeout.TotalSeconds:0.###} s.", e);
        }
        catch (KernelException e)
        {
            TryDetachAfterFailedFreeze(tracee);
            throw new DumpException($"Cannot freeze task {pid}: {e.Message}.", e);
        }
    }

    /// <summary>
    /// Freeze <paramref name="rootPid"/> and every descendant: a process is frozen before its children are
    /// read (/proc/PID/task/TID/children of each thread), so the list it gives cannot grow any more; children
    /// that have exited are recorded as zombies. Any failure releases what was frozen, as it was.
    /// </summary>
    public static FrozenTree FreezeTree(Tracer tracer, int rootPid, TimeSpan timeout)
    {
        var tree = new FrozenTree();
        try
        {
            tree.Tasks.Add(Freeze(tracer, rootPid, timeout));
            for (int i = 0; i < tree.Tasks.Count; i++)
            {
                int parent = tree.Tasks[i].Pid;
                // Its threads too before its children are read: any of them may fork.
                tree.Threads[parent] = ThreadDumper.FreezeOthers(tracer, tree.Tasks[i], timeout);
                foreach (int child in ReadChildren(parent))
                {
                    tree.Parents[child] = parent;
                    if (ReadZombie(child, parent) is { } zombie)
                    {
                        tree.Zombies.Add(zombie);
                        continue;
                    }
                    try
                    {
                        tree.Tasks.Add(Freeze(tracer, child, timeout));
                    }
                    catch (DumpException) when (ReadZombie(child, parent) is { } late)
                    {
                        // It exited between the listing and the seize: a zombie now, its parent is frozen.
                        tree.Zombies.Add(late);
                    }
                }
            }
        }
        catch
        {
            ReleaseTree(tree, ReleaseMode.AsItWas, quiet: true);
            throw;
        }
        Log.Info($"{rootPid}: freezer: tree frozen, {tree.Tasks.Count} processes, {tree.Zombies.Count} zombies");
        return tree;
    }

    /// <summary>
    /// Release every process of the tree as <paramref name="mode"/> says (Killed: SIGKILL to all first, then wait,
    /// so that no parent is gone while its children are still being killed one by one). With
    /// <paramref name="quiet"/>, failures are logged and the others are still released.
    /// </summary>
    public static void ReleaseTree(FrozenTree tree, ReleaseMode mode, bool quiet = false)
    {
        DumpException? first = null;
        if (mode == ReleaseMode.Killed)
        {
            var killed = new List<PidFd>();
            foreach (var task in tree.Tasks)
            {
                if (task.Released) continue;
                PidFd? pidfd = null;
                try
                {
                    pidfd = PidFd.Open(task.Pid);
                    pidfd.SendSignal(SIGKILL);
                    killed.Add(pidfd);
                    pidfd = null;
                }
                catch (KernelException e)
                {
                    first ??= new DumpException($"Cannot kill task {task.Pid}: {e.Message}.", e);
                }
                finally
                {
                    pidfd?.Dispose();
                }
            }
            ReleaseMemory(killed);
        }
        // Children first: a parent released before them could run (and wait for them) while they are held.
        for (int i = tree.Tasks.Count - 1; i >= 0; i--)
        {
            try
            {
                var threads = tree.ThreadsOf(tree.Tasks[i]);
                if (mode == ReleaseMode.Killed)
                {
                    // The kernel reports a group leader's death only once its other threads are collected.
                    ThreadDumper.WaitUntilKilled(threads);
                    WaitUntilKilled(tree.Tasks[i]);
                }
                else
                {
                    ThreadDumper.Release(tree.Tasks[i], threads, mode);
                }
            }
            catch (DumpException e)
            {
                if (quiet) Log.Error($"{tree.Tasks[i].Pid}: freezer: {e.Message}");
                first ??= e;
            }
        }
        if (first is not null && !quiet) throw first;
    }

    /// <summary>
    /// Frees the memory of killed tasks from here (process_mrelease, Linux 5.15) while each also frees it in its own
    /// exit: two CPUs share the work that stands between SIGKILL and the zombie (about 70 ms a GiB of small pages).
    /// A task past that point already answers EINVAL or ESRCH; nothing depends on the call.
    /// </summary>
    private static void ReleaseMemory(List<PidFd> killed)
    {
        foreach (var pidfd in killed)
        {
            using (pidfd)
            {
                var clock = Stopwatch.StartNew();
                var error = pidfd.ReleaseMemory();
                Log.Debug($"{pidfd.Pid}: freezer: process_mrelease {(error.Value == 0 ? "done" : error.Name)} in {clock.Elapsed.TotalMilliseconds:0.###} ms");
            }
        }
    }

    /// <summary>The children of every thread of <paramref name="pid"/>, in the order /proc lists them.</summary>
    private static List<int> ReadChildren(int pid)
    {
        var children = new List<int>();
        try
        {
            foreach (string thread in Directory.EnumerateDirectories($"/proc/{pid}/task"))
            {
                foreach (string field in File.ReadAllText($"{thread}/children").Split(' ', StringSplitOptions.RemoveEmptyEntries))
                {
                    int child = int.Parse(field, System.Globalization.CultureInfo.InvariantCulture);
                    if (!children.Contains(child)) children.Add(child);
                }
            }
        }
        catch (IOException e)
        {
            throw new DumpException($"Cannot list the children of task {pid}: {e.Message}", e);
        }
        return children;
    }

    /// <summary>The zombie <paramref name="pid"/> as /proc/PID/stat shows it, or null when it is not a zombie.</summary>
    private static ZombieTask? ReadZombie(int pid, int parent)
    {
        Crest.Kernel.Proc.ProcStat stat;
        try
        {
            stat = Crest.Kernel.Proc.ProcStat.Parse(Crest.Kernel.Proc.ProcFile.ReadAll(pid, "stat"));
        }
        catch (Exception e) when (e is IOException or KernelException)
        {
            throw new DumpException($"Child {pid} of task {parent} vanished while the tree was frozen: {e.Message}", e);
        }
        if (stat.State != 'Z') return null;
        if (stat.Ppid != parent)
            throw new DumpException($"Zombie {pid} has parent {stat.Ppid}, expected {parent}.");
        return new ZombieTask(pid, parent, stat.Pgrp, stat.Session, stat.ExitCode, stat.Comm);
    }

    /// <summary>Detach as <paramref name="mode"/> says. Throws DumpException if the task cannot be released.</summary>
    public static void Release(FrozenTask task, ReleaseMode mode)
    {
        if (task.Released) return;
        int pid = task.Pid;
        try
        {
            switch (mode)
            {
                case ReleaseMode.AsItWas:
                    task.Tracee.Detach();
                    break;
                case ReleaseMode.Stopped:
                    if (!task.WasStopped)
                    {
                        using var pidfd = PidFd.Open(pid);
                        pidfd.SendSignal(SIGSTOP);
                    }
                    task.Tracee.Detach();
                    break;
                case ReleaseMode.Killed:
                    Kill(task);
                    break;
            }
            task.Released = true;
            Log.Info($"{pid}: freezer: released ({mode})");
        }
        catch (KernelException e)
        {
            throw new DumpException($"Cannot release task {pid} ({mode}): {e.Message}.", e);
        }
    }

    private static void Kill(FrozenTask task)
    {
        using (var pidfd = PidFd.Open(task.Pid))
            pidfd.SendSignal(SIGKILL);
        WaitUntilKilled(task);
    }

    /// <summary>Wait until <paramref name="task"/>, sent SIGKILL, is gone or a zombie.</summary>
    private static void WaitUntilKilled(FrozenTask task)
    {
        if (task.Released) return;
        int pid = task.Pid;
        // The tracer hears of the death first; if Crest is also the parent, that wait reaps the task (and
        // remembers its status for ChildProcess); otherwise the task then becomes a zombie of its parent.
        var clock = Stopwatch.StartNew();
        try
        {
            while (true) task.Tracee.WaitForStop(TimeSpan.FromSeconds(10));
        }
        catch (TraceeExitedException)
        {
        }
        catch (KernelException e) when (e.Errno.Value == Errno.ECHILD)
        {
        }
        task.Released = true;
        while (clock.Elapsed < TimeSpan.FromSeconds(30))
        {
            string stat;
            try
            {
                stat = File.ReadAllText($"/proc/{pid}/stat");
            }
            catch (IOException)
            {
                return; // gone
            }
            int paren = stat.LastIndexOf(')');
            if (paren > 0 && paren + 2 < stat.Length && stat[paren + 2] is 'Z' or 'X') return;
            Thread.Sleep(1);
        }
        throw new DumpException($"Task {pid} was sent SIGKILL but is still alive after 30 s.");
    }


    /// <summary>The state letter of /proc/PID/stat (R, S, D, T, t, Z...).</summary>
    private static char ReadState(int pid)
    {
        string stat;
        try
        {
            stat = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (IOException e)
        {
            throw new DumpException($"Task {pid} does not exist ({e.Message}).", e);
        }
        int paren = stat.LastIndexOf(')');
        return paren > 0 && paren + 2 < stat.Length ? stat[paren + 2] : '?';
    }

    private static void TryDetachAfterFailedFreeze(Tracee tracee)
    {
        // The interrupt may still be pending; a detach needs a stop. Try to catch one briefly, else the
        // tracer's end detaches the task anyway (exit_ptrace).
        try
        {
            if (tracee.LastStop is null) tracee.WaitForStop(TimeSpan.FromMilliseconds(200));
            tracee.Detach();
        }
        catch (Exception e) when (e is KernelException or TimeoutException or TraceeExitedException)
        {
            Log.Warning($"{tracee.Tid}: freezer: detach after a failed freeze: {e.Message}");
        }
    }
}
