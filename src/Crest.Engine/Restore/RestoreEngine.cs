// Restore of a process with its PID and its threads with their TIDs (ENGINE.md §4). The flow, all on one tracer thread:
//   1. read and check every image (nothing is created before they are known to be whole);
//   2. wait for the PID to be free (a zombie re-parented to PID 1 holds it for a second or two, §8);
//   3. start the stub from a memfd, seize it, inject clone3(set_tid = [pid], CLONE_PARENT): the new task
//      is our child and the stub is killed;
//   4. in the new task: memory layout and contents (RestoreMemory), files (RestoreFiles), per-process and
//      per-thread state and registers (RestoreCore), the other threads (RestoreThreads);
//   5. release: unmap the restore region as the task's last syscall, set the final registers, detach.
// Any failure kills what was created (fail closed, §1.5).
using System.Diagnostics;
using Crest.Diagnostics;
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
    private const ulong CLONE_PARENT = 0x8000;

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
        var images = RestoreImages.Load(dir);
        int pid = images.Pid;
        Log.Info($"restore: task {pid} from {dir}: {images.Mm.Vmas.Count} vmas, {images.PagesBytes >> 12} pages, {images.Fds.Count} fds");

        WaitForFreePid(pid);
        ChildProcess.ResetSigchldDisposition();

        ChildProcess? restored = null;
        RestoreStatistics stats;
        using (var tracer = new Tracer("crest restore"))
        {
            try
            {
                stats = tracer.Run(() => RestoreOnTracer(tracer, images, out restored));
            }
            catch (Exception e)
            {
                // Fail closed: the restored task (if it exists) is our child and our tracee; kill and reap it.
                if (restored is not null) KillQuietly(restored, tracer);
                if (e is RestoreException) throw;
                if (e is ImageFormatException f) throw new RestoreException($"corrupt image: {f.Message}", f);
                throw new RestoreException($"restore of task {pid} failed: {e.Message}", e);
            }
        }
        // The tracer thread is gone, so the task is detached and runs (it was detached deliberately before).
        stats = stats with { RestoreTime = total.Elapsed };
        try
        {
            WriteStatistics(dir, stats);
            if (options.PidFile is { } pidFile) WritePidFile(pidFile, pid);
        }
        catch (Exception e)
        {
            KillQuietly(restored!, null);
            throw new RestoreException($"restore of task {pid}: {e.Message}", e);
        }
        Log.Info($"restore: task {pid} runs ({stats.PagesRestored} pages in {stats.MemoryTime.TotalMilliseconds:0.0} ms, total {total.Elapsed.TotalMilliseconds:0.0} ms)");
        LastStatistics = stats;
        if (options.Detached) return 0;

        var status = restored!.WaitForExit(Timeout.InfiniteTimeSpan);
        Log.Info($"restore: task {pid} ended: {status}");
        return status.Signaled ? 128 + status.TermSignal : status.ExitCode;
    }

    /// <summary>Figures of the last successful restore in this process (tests and benchmarks read them).</summary>
    public static RestoreStatistics? LastStatistics { get; private set; }

    private static RestoreStatistics RestoreOnTracer(Tracer tracer, RestoreImages images, out ChildProcess? restored)
    {
        restored = null;
        int pid = images.Pid;
        ulong regionBase = RestoreMemory.ChooseRegion(images.Mm);
        // Tracer and tasks share one CPU while syscalls are injected (ENGINE.md §8); the task gets Crest's
        // affinity back before it is released, the tracer thread when the restore ends.
        byte[] affinity = CpuAffinity.Get(0);
        byte[] pinned = PinWhileInjecting ? CpuAffinity.Only(CpuAffinity.CurrentCpu()) : affinity;
        CpuAffinity.Set(0, pinned);
        try
        {
            return RestorePinned(tracer, images, regionBase, affinity, pinned, out restored);
        }
        finally
        {
            CpuAffinity.Set(0, affinity);
        }
    }

    private static RestoreStatistics RestorePinned(Tracer tracer, RestoreImages images, ulong regionBase, byte[] affinity, byte[] pinned,
        out ChildProcess? restored)
    {
        restored = null;
        int pid = images.Pid;
        var forking = Stopwatch.StartNew();
        Tracee task;
        using (var stub = StartStub(tracer, regionBase, out var stubTracee))
        {
            try
            {
                CpuAffinity.Set(stub.Pid, pinned);
                task = CloneWithPid(stubTracee, regionBase, pid);
                restored = ChildProcess.Adopt(pid);
            }
            finally
            {
                KillStub(stub, stubTracee);
            }
        }
        forking.Stop();
        Log.Info($"{pid}: restore: cloned with its pid in {forking.Elapsed.TotalMilliseconds:0.00} ms");

        // Every signal blocked while the task is rebuilt: one sent to it now waits for the release.
        task.SetSigMask(ulong.MaxValue);
        var injector = new StubInjector(task, regionBase, regionBase + RestoreStub.GadgetOffset);
        var memoryClock = Stopwatch.StartNew();
        var memory = new RestoreMemory(injector, images);
        memory.PrepareRegion();
        // Nothing of what the stub's parent had open belongs to the task.
        injector.Check("close_range", "inherited fds", SyscallNumbers.close_range, 0, uint.MaxValue, 0);
        memory.RestoreLayout();
        // The page writers are started from this thread and inherit its affinity: all CPUs for them.
        CpuAffinity.Set(0, affinity);
        long pagesRestored = memory.RestoreContents();
        CpuAffinity.Set(0, pinned);
        memory.FinishLayout();
        GuardRegions.Install(injector, images.Mm.Vmas);
        memoryClock.Stop();

        var core = new RestoreCore(injector, images);
        var threads = new RestoreThreads(injector, images);
        try
        {
            core.RestoreMm(memory);
            RestoreFiles.Restore(injector, images);
            core.RestoreProcessState();
            core.RestoreThreadState();
            core.RestoreIntervalTimers();
            Timers.PosixTimers.Restore(injector, images.Core);
            core.RestorePendingSignals();
            // Threads are cloned before the main thread gets its seccomp filters (a clone inherits them).
            threads.Restore();
            RestoreSeccomp.Install(injector, images.Core.ThreadCore, images.SeccompChain);
            core.RestoreCreds();
            threads.PrepareRelease(affinity);
            CpuAffinity.Set(pid, affinity);
            core.Release(memory);
        }
        catch
        {
            threads.KillAfterFailure();
            throw;
        }
        threads.Detach();

        return new RestoreStatistics(forking.Elapsed, memoryClock.Elapsed, TimeSpan.Zero, pagesRestored) { PagesWriteTime = memory.ContentsTime };
    }

    private static ChildProcess StartStub(Tracer tracer, ulong regionBase, out Tracee tracee)
    {
        byte[] image = RestoreStub.Build(regionBase);
        using var memfd = MemFd.Create("crest-restore-stub");
        memfd.WriteAll(image);
        var stub = ChildProcess.Spawn($"/proc/self/fd/{memfd.Fd}", ["crest-stub"]);
        try
        {
            // ExitKill: should Crest die half way, the kernel kills the stub and the half-built task (the
            // option is inherited by the auto-attached child) instead of letting them run.
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

    private static Tracee CloneWithPid(Tracee stub, ulong regionBase, int pid)
    {
        var injector = new StubInjector(stub, regionBase, regionBase + RestoreStub.GadgetOffset);
        const long PROT_RW = 3, MAP_PRIVATE_ANON_FIXED_NOREPLACE = 0x02 | 0x20 | 0x100000;
        injector.Check("mmap", "restore scratch", SyscallNumbers.mmap, (long)injector.ScratchBase, (long)StubInjector.ScratchSize,
            PROT_RW, MAP_PRIVATE_ANON_FIXED_NOREPLACE, -1, 0);
        ulong tidArray = injector.Put(BitConverter.GetBytes((long)pid));
        Span<byte> args = stackalloc byte[88];
        args.Clear();
        BitConverter.TryWriteBytes(args[0..], CLONE_PARENT);           // flags
        // exit_signal stays 0: clone3 refuses one with CLONE_PARENT, and the child inherits the stub's
        // (SIGCHLD, from posix_spawn). The tracer sees PTRACE_EVENT_CLONE.
        BitConverter.TryWriteBytes(args[64..], tidArray);              // set_tid
        BitConverter.TryWriteBytes(args[72..], 1UL);                   // set_tid_size
        ulong argsAddress = injector.Put(args);
        long rc = injector.Syscall(SyscallNumbers.clone3, (long)argsAddress, 88);
        if (rc < 0)
        {
            var errno = Errno.FromRawReturn(rc);
            string holder = errno.Value == Errno.EEXIST ? $" (held by {DescribeHolder(pid)})" : "";
            throw new RestoreException($"clone3 with set_tid {pid} failed: {errno}{holder}");
        }
        try
        {
            if (rc != pid) throw new RestoreException($"clone3 with set_tid {pid} gave pid {rc}");
            var task = stub.Tracer.Adopt(pid, stub.Options);
            var first = task.WaitForStop(TimeSpan.FromSeconds(10));
            if (!first.Status.IsEventStop) throw new RestoreException($"new task {pid}: first stop is {first.Status}, expected an event stop");
            return task;
        }
        catch
        {
            // The new task is our child (CLONE_PARENT): kill and reap it before the failure goes on.
            using var created = ChildProcess.Adopt((int)rc);
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

    private static void KillQuietly(ChildProcess child, Tracer? tracer)
    {
        try
        {
            if (tracer is not null) tracer.Run(child.Dispose);
            else child.Dispose();
        }
        catch (Exception e)
        {
            Log.Error($"restore: could not kill task {child.Pid} after the failure: {e.Message}");
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

    private static string DescribeHolder(int pid)
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
