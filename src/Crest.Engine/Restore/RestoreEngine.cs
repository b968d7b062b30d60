// Restore of a tree of processes with their PIDs, and their threads with their TIDs (ENGINE.md §4). The flow, all on one
// tracer thread:
//   1. read and check every image (nothing is created before they are known to be whole);
//   2. wait for the PIDs to be free (a zombie re-parented to PID 1 holds one for a second or two, §8);
//   3. start the stub from a memfd, seize it, and create the tree from it (RestoreProcessTree): the root
//      with clone3(set_tid, CLONE_PARENT), our child; the others cloned from their parents while those are
//      still copies of the stub; sessions, groups, zombies. The stub is killed;
//   4. in each process, parents first: memory layout and contents (RestoreMemory), files (RestoreFiles:
//      pipes created once, descriptions shared between processes passed on), per-process and per-thread
//      state (RestoreCore), the other threads cloned from the main thread (RestoreThreads);
//   5. release every process, children first: unmap the restore region as the task's last syscall, set
//      the final registers, detach.
// Any failure kills every task created (fail closed, §1.5).
using System.Diagnostics;
using Crest.Diagnostics;
using Crest.Images.Pages;
using Crest.Images;
using Crest.Images.Protos;
using Crest.Kernel;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Files;
using Crest.Kernel.Memory;
using Crest.Kernel.Processes;
using Crest.Kernel.Ptrace;

namespace Crest.Engine.Restore;

public static class RestoreEngine
{
    private const int SIGKILL = 9, SIGSTOP = 19;

    /// <summary>Pin the tracer and the task to one CPU while injecting (tests compare with and without).</summary>
    internal static bool PinWhileInjecting { get; set; } = true;

    /// <summary>How long a PID held by a zombie or dying task is waited for.</summary>
    public static TimeSpan PidWait { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Restore the tree in <see cref="RestoreOptions.ImagesDir"/>. Returns 0 with Detached once it runs;
    /// otherwise waits for the root task and returns its exit status (128 + signal if killed by a signal).
    /// </summary>
    public static int Run(RestoreOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var total = Stopwatch.StartNew();
        string dir = Path.GetFullPath(options.ImagesDir);
        var tree = RestoreImages.LoadTree(dir);
        int pid = tree.RootPid;
        Log.Info($"restore: tree of task {pid} from {dir}: {tree.Processes.Count} processes, {tree.Zombies.Count} zombies, " +
            $"{tree.Processes.Values.Sum(p => p.PagesBytes) >> 12} pages");

        // PE_LAZY pages without data are only at the dump's source: a lazy-pages daemon connected to it must serve them.
        if (options.LazyPagesSocket is null && tree.Processes.Values.FirstOrDefault(p => p.Pages.Any(r => r.Source == PageChain.LazySource)) is { } lazyTask)
            throw new RestoreException($"task {lazyTask.Pid} has lazy pages that only the dump's source holds (PE_LAZY); restore with --lazy-pages, " +
                "with `crest lazy-pages --page-server --address SOURCE --port P` serving these images");

        var inherited = new RestoreInheritedFds(options.InheritFds);
        inherited.CheckTree(tree);
        using var ttys = new RestoreTtys(dir, options.ShellJob, inherited);
        ttys.CheckTree(tree);
        RestoreUnixSockets.CheckTree(tree);
        foreach (var entry in tree.Entries) WaitForFreePid((int)entry.Pid);
        ChildProcess.ResetSigchldDisposition();
        // Connected before any task exists: no daemon, no restore (and nothing to roll back).
        using var lazy = options.LazyPagesSocket is { } socket ? LazyPagesConnection.Connect(socket) : null;

        ChildProcess? restored = null;
        RestoreStatistics stats;
        var created = new List<int>();
        using (var tracer = new Tracer("crest restore"))
        {
            try
            {
                stats = tracer.Run(() => RestoreOnTracer(tracer, tree, inherited, ttys, created, lazy));
                restored = ChildProcess.Adopt(pid);
            }
            catch (Exception e)
            {
                // Fail closed: every task created is killed and reaped, whatever it had become.
                KillAllQuietly(created, tracer);
                if (e is RestoreException) throw;
                if (e is ImageFormatException f) throw new RestoreException($"corrupt image: {f.Message}", f);
                throw new RestoreException($"restore of task {pid} failed: {e.Message}", e);
            }
        }
        // The tracer thread is gone, so the tasks are detached and run (they were detached deliberately before). The
        // lazy-pages daemon is told that this restore is over (it starts its background pass then).
        lazy?.Dispose();
        stats = stats with { RestoreTime = total.Elapsed };
        try
        {
            WriteStatistics(dir, stats);
            if (options.PidFile is { } pidFile) WritePidFile(pidFile, pid);
        }
        catch (Exception e)
        {
            KillAllQuietly(created, null);
            throw new RestoreException($"restore of task {pid}: {e.Message}", e);
        }
        Log.Info($"restore: tree of task {pid} runs ({stats.PagesRestored} pages in {stats.MemoryTime.TotalMilliseconds:0.0} ms, total {total.Elapsed.TotalMilliseconds:0.0} ms)");
        LastStatistics = stats;
        if (options.Detached) return 0;

        var status = restored.WaitForExit(Timeout.InfiniteTimeSpan);
        Log.Info($"restore: task {pid} ended: {status}");
        return status.Signaled ? 128 + status.TermSignal : status.ExitCode;
    }

    /// <summary>Figures of the last successful restore in this process (tests and benchmarks read them).</summary>
    public static RestoreStatistics? LastStatistics { get; private set; }

    private static RestoreStatistics RestoreOnTracer(Tracer tracer, RestoreTree tree, RestoreInheritedFds inherited, RestoreTtys ttys, List<int> created,
        LazyPagesConnection? lazy)
    {
        ulong regionBase = RestoreMemory.ChooseRegion(tree.Processes.Values.Select(p => p.Mm));
        // Tracer and tasks share one CPU while syscalls are injected (ENGINE.md §8); each task gets Crest's
        // affinity back before it is released, the tracer thread when the restore ends.
        byte[] affinity = CpuAffinity.Get(0);
        byte[] pinned = PinWhileInjecting ? CpuAffinity.Only(CpuAffinity.CurrentCpu()) : affinity;
        CpuAffinity.Set(0, pinned);
        try
        {
            return RestorePinned(tracer, tree, inherited, ttys, regionBase, affinity, pinned, created, lazy);
        }
        finally
        {
            CpuAffinity.Set(0, affinity);
        }
    }

    /// <summary>One process's restore, up to the release: its memory, files and state (RestoreCore).</summary>
    private sealed record ProcessRestore(StubInjector Task, RestoreMemory Memory, RestoreCore Core, RestoreThreads Threads, long PagesRestored);

    private static RestoreStatistics RestorePinned(Tracer tracer, RestoreTree tree, RestoreInheritedFds inherited, RestoreTtys ttys, ulong regionBase,
        byte[] affinity, byte[] pinned, List<int> created, LazyPagesConnection? lazy)
    {
        int rootPid = tree.RootPid;
        var forking = Stopwatch.StartNew();
        var processes = new RestoreProcessTree(tree, regionBase);
        try
        {
            using (var stub = StartStub(tracer, regionBase, out var stubTracee))
            {
                try
                {
                    CpuAffinity.Set(stub.Pid, pinned);
                    processes.Create(stubTracee);
                }
                finally
                {
                    KillStub(stub, stubTracee);
                }
            }
        }
        finally
        {
            created.AddRange(processes.Created);
        }
        forking.Stop();
        Interruption.CheckRestore();
        Log.Info($"{rootPid}: restore: {processes.Created.Count} tasks cloned with their pids in {forking.Elapsed.TotalMilliseconds:0.00} ms");

        var memoryTime = TimeSpan.Zero;
        var contentsTime = TimeSpan.Zero;
        long pagesRestored = 0;
        var restores = new List<ProcessRestore>();
        using var pipes = new RestorePipes(tree.Directory);
        using var sockets = new RestoreUnixSockets(tree);
        var sharedFiles = new Dictionary<uint, (int Pid, int Fd)>();
        // Threads are traced by this thread: on a failure their exits are collected here, or their group
        // leaders could not be reaped (RestoreThreads.KillAfterFailure).
        var allThreads = new List<RestoreThreads>();
        int foregroundBefore = 0;
        try
        {
            ttys.CreatePairs();
            foreach (var entry in tree.Entries)
            {
                int pid = (int)entry.Pid;
                if (!tree.Processes.TryGetValue(pid, out var images)) continue;
                Interruption.CheckRestore();
                var injector = processes.Tasks[pid];
                var memoryClock = Stopwatch.StartNew();
                var memory = new RestoreMemory(injector, images, lazy);
                memory.PrepareRegion();
                // Nothing of what the stub's parent had open belongs to the task.
                // (A table shared with the parent is the parent's, restored already.)
                bool ownTable = !tree.SharesFdTableWithParent(pid);
                if (ownTable) injector.Check("close_range", "inherited fds", SyscallNumbers.close_range, 0, uint.MaxValue, 0);
                memory.RestoreLayout();
                // The page writers are started from this thread and inherit its affinity: all CPUs for them.
                CpuAffinity.Set(0, affinity);
                long pages = memory.RestoreContents();
                CpuAffinity.Set(0, pinned);
                memory.FinishLayout();
                GuardRegions.Install(injector, images.Mm.Vmas);
                memoryClock.Stop();
                memoryTime += memoryClock.Elapsed;
                contentsTime += memory.ContentsTime;
                pagesRestored += pages;
                Interruption.CheckRestore();

                var core = new RestoreCore(injector, images);
                core.RestoreMm(memory);
                RestoreFiles.Restore(injector, images, pipes, sockets, inherited, sharedFiles, ttys, fds: ownTable);
                ttys.SetControllingTerminal(injector, entry);
                core.RestoreProcessState();
                core.RestoreThreadState();
                core.RestoreIntervalTimers();
                Timers.PosixTimers.Restore(injector, images.Core);
                core.RestorePendingSignals();
                var threads = new RestoreThreads(injector, images);
                allThreads.Add(threads);
                // Threads are cloned before the main thread gets its seccomp filters (a clone inherits them).
                threads.Restore();
                RestoreSeccomp.Install(injector, images.Core.ThreadCore, images.SeccompChain);
                core.RestoreCreds();
                restores.Add(new ProcessRestore(injector, memory, core, threads, pages));
            }

            ttys.Finish();
            foregroundBefore = ttys.ForegroundShellJob(tree);
            // The last safe point: once the first task is released the tree runs, and a stop signal ends Crest as usual.
            Interruption.CheckRestore();
            Interruption.Disarm();

            // Release: children first, so that a parent that runs finds its children running. A process's threads
            // get their final state first and run once its main thread has unmapped the restore region.
            for (int i = restores.Count - 1; i >= 0; i--)
            {
                var r = restores[i];
                r.Threads.PrepareRelease(affinity);
                CpuAffinity.Set(r.Task.Pid, affinity);
                r.Core.Release(r.Memory);
                r.Threads.Detach();
            }
        }
        catch
        {
            ttys.GiveBackForeground(foregroundBefore);
            foreach (var threads in allThreads) threads.KillAfterFailure();
            throw;
        }
        return new RestoreStatistics(forking.Elapsed, memoryTime, TimeSpan.Zero, pagesRestored) { PagesWriteTime = contentsTime };
    }

    private static ChildProcess StartStub(Tracer tracer, ulong regionBase, out Tracee tracee)
    {
        byte[] image = RestoreStub.Build(regionBase);
        using var memfd = MemFd.Create("crest-restore-stub");
        memfd.WriteAll(image);
        var stub = ChildProcess.Spawn($"/proc/self/fd/{memfd.Fd}", ["crest-stub"]);
        try
        {
            // ExitKill: should Crest die half way, the kernel kills the stub and the half-built tasks (the
            // option is inherited by the auto-attached children) instead of letting them run.
            tracee = tracer.Seize(stub.Pid, PtraceOptions.TraceSysGood | PtraceOptions.TraceFork | PtraceOptions.TraceClone | PtraceOptions.ExitKill);
            // The stub stops itself: either it did before the seize (reported at once as a group-stop event
            // stop) or we see its SIGSTOP being delivered first and let it through into the group stop.
            while (true)
            {
                var stop = tracee.WaitForStop(TimeSpan.FromSeconds(10));
                if (stop.Status.IsEventStop) break;
                if (stop.Status.IsSignalDeliveryStop && stop.Signal == SIGSTOP) { tracee.Continue(SIGSTOP); continue; }
                throw new RestoreException($"restore stub {stub.Pid} stopped unexpectedly: {stop.Status}");
            }
            return stub;
        }
        catch
        {
            stub.Dispose();
            throw;
        }
    }

    private static void KillStub(ChildProcess stub, Tracee tracee)
    {
        stub.Signal(SIGKILL);
        try
        {
            while (true) tracee.WaitForStop(TimeSpan.FromSeconds(10));
        }
        catch (TraceeExitedException)
        {
        }
        stub.Dispose();
    }

    private static void KillAllQuietly(List<int> created, Tracer? tracer)
    {
        try
        {
            if (tracer is not null) tracer.Run(() => RestoreProcessTree.KillAll(created));
            else RestoreProcessTree.KillAll(created);
        }
        catch (Exception e)
        {
            Log.Error($"restore: could not kill the tasks {string.Join(", ", created)} after the failure: {e.Message}");
        }
    }

    internal static void WaitForFreePid(int pid)
    {
        var clock = Stopwatch.StartNew();
        bool said = false;
        while (true)
        {
            string? stat = TryRead($"/proc/{pid}/stat");
            if (stat is null) return;
            int close = stat.LastIndexOf(')');
            char state = close > 0 && close + 2 < stat.Length ? stat[close + 2] : '?';
            if (state is not ('Z' or 'X'))
                throw new RestoreException($"pid {pid} is taken by a live task ({DescribeHolder(pid)})");
            if (clock.Elapsed > PidWait)
                throw new RestoreException($"pid {pid} is still held by a {(state == 'Z' ? "zombie" : "dying task")} ({DescribeHolder(pid)}) after {PidWait.TotalSeconds:0} s");
            if (!said)
            {
                Log.Info($"restore: pid {pid} is held by a {(state == 'Z' ? "zombie" : "dying task")}; waiting up to {PidWait.TotalSeconds:0} s for it to be reaped");
                said = true;
            }
            Thread.Sleep(10);
        }
    }

    internal static string DescribeHolder(int pid)
    {
        string comm = TryRead($"/proc/{pid}/comm")?.TrimEnd('\n') ?? "?";
        return $"comm '{comm}'";
    }

    private static string? TryRead(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or IOException)
        {
            return null;
        }
    }

    private static void WritePidFile(string path, int pid)
    {
        using var file = FileDescriptor.Open(path, OpenFlags.WriteOnly | OpenFlags.Create | OpenFlags.Exclusive | OpenFlags.CloseOnExec, 0x1a4);
        file.WriteAll(System.Text.Encoding.ASCII.GetBytes(pid.ToString(System.Globalization.CultureInfo.InvariantCulture)));
    }

    private static void WriteStatistics(string dir, RestoreStatistics stats)
    {
        var entry = new StatsEntry
        {
            Restore = new RestoreStatsEntry
            {
                PagesCompared = 0,
                PagesSkippedCow = 0,
                ForkingTime = (uint)Math.Min(uint.MaxValue, stats.ForkingTime.Ticks / 10),
                RestoreTime = (uint)Math.Min(uint.MaxValue, stats.RestoreTime.Ticks / 10),
                PagesRestored = (ulong)stats.PagesRestored,
            },
        };
        using var writer = ImageWriter.Create(Path.Combine(dir, "stats-restore"), ImageKinds.StatsRestore);
        writer.WriteEntry(entry);
        writer.Complete();
    }
}
