// Checkpoint of a tree of processes, with all their threads, into CRIU-format images (ENGINE.md §2, §3, §6).
//
//   freeze the tree (seize + interrupt, children  Freezer.cs, FrozenTree.cs, ThreadDumper.cs (threads)
//   read once their parent and its threads are frozen)
//   read from outside: regs, xstate, /proc        Processes/CoreDumper.cs
//   check every fd and mapping (refuse early)     Files/FileDescriptors.cs, Memory/VmaDumper.cs
//   injected syscalls, all undone again           Processes/CoreDumper.cs (SyscallInjector)
//   pages: PAGEMAP_SCAN + process_vm_readv        Memory/PageDumper.cs
//   images, fsync all, directory, inventory last  ImageDirectory.cs
//   release: kill / leave running / leave stopped Freezer.cs
//
// What the images hold, for the restore side:
//  - core-PID.img: gpregs already settled for restore (an interrupted syscall is re-issued: ax = orig_ax,
//    ip -= 2; a restart-block one returns -EINTR); orig_ax as the kernel had it. fpregs = the FXSAVE fields,
//    xsave = XSTATE_BV + each enabled component (ymmh, bndreg, bndcsr, opmask, zmm_upper, hi16_zmm, pkru).
//    tc.sigactions: 62 entries for signals 1..64 without SIGKILL and SIGSTOP, in order; tc.rlimits: 16;
//    tc.timers: the three itimers; tc.task_state 1 (alive) or 3 (stopped, stop_signo 19); thread_core: robust
//    list, sigaltstack, rseq, creds (caps as two u32 words each), pdeath_sig, pending signals (signals_p,
//    tc.signals_s). thread_info.clear_tid_addr from PR_GET_TID_ADDRESS.
//  - mm-PID.img: every VMA; shmid/exe_file_id are ids in files.img; pgoff in bytes; vdso/vvar/vvar_vclock
//    with their addresses (no pages); status bits as crit's mmap.status.
//  - files.img: REG entries (path, fdinfo flags incl. O_CLOEXEC, pos, size, mode, mnt_id) for fds, mapped
//    files, exe, cwd and root (O_DIRECTORY); fds sharing one open file description share one id.
//  - fdinfo-N.img (N = files_id of the process): fd number, file id, FD_CLOEXEC. fs-PID.img: cwd_id, root_id, umask.
//  - pagemap-PID.img + pages-N.img (N = the process's own pages id): PE_PRESENT runs in ascending order,
//    zero-page-backed pages left out.
//  - ids-PID.img: per process vm_id = files_id = fs_id = sighand_id = its position in pstree.img (from 1);
//    files.img is one for the tree: descriptions shared between processes (fork) have one id, and a pipe
//    held by several processes has one pipe_id and its buffer once in pipes-data.img.
//  - core-TID.img of every other thread: thread_info and thread_core only (ThreadDumper.cs).
//  - pstree.img: one entry per process (pid, ppid, pgid, sid, threads: main thread first), parents before children; zombies
//    too, with a core-PID.img holding only tc (task_state 2, exit_code = the wait status) and no mm.
//
// Fail closed: any failure before the images are complete releases every task exactly as it was (the
// injector restores registers, signal mask and scratch memory; the detach happens from an event stop, so an
// interrupted syscall restarts) and removes the images written so far.
using System.Diagnostics;
using Crest.Diagnostics;
using Crest.Engine.Files;
using Crest.Engine.Memory;
using Crest.Engine.Processes;
using Crest.Images;
using Crest.Images.Pages;
using Crest.Images.Protos;
using Crest.Kernel;
using Crest.Kernel.Injection;
using Crest.Kernel.Proc;
using Crest.Kernel.Processes;
using Crest.Kernel.Ptrace;
using Google.Protobuf;

namespace Crest.Engine.Dump;

public static class DumpEngine
{
    /// <summary>CRIU's image version (2: images since CRIU 1.x with fdinfo per id).</summary>
    internal const uint ImageVersion = 2;

    /// <summary>CRIU's task_state of a zombie (TASK_DEAD).</summary>
    private const uint TaskDead = 2;

    /// <summary>Tests only: called at named stages ("frozen", "injecting", "pages") to make the dump fail there.</summary>
    internal static Action<string>? StageHook { get; set; }

    /// <summary>A named stage: a safe point where a stop signal (Interruption) makes the dump fail and roll back.</summary>
    internal static void Stage(string name)
    {
        StageHook?.Invoke(name);
        Interruption.CheckDump();
    }

    public static DumpStatistics Dump(DumpOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.LeaveRunning && options.LeaveStopped)
            throw new DumpException("Leave-running and leave-stopped exclude each other.");
        if (options.LazyPages is not null && (options.PreDump || options.PageDestination is not null || options.PagesOutput is not null))
            throw new DumpException("Lazy pages are kept by a dump into a local images directory only (not by pre-dump, --page-server or --remote).");
        int pid = options.Pid;
        var images = new ImageDirectory(options.ImagesDir);
        CheckNotSelf(pid);
        images.RemoveStaleInventory();
        string? parentDir = PreDump.LinkParent(options, images);
        // Pages unchanged since the parent round are left in the parent images when tracking is asked for.
        string? trackedParent = options.PreDump || options.TrackMemory ? parentDir : null;
        Log.Info($"{pid}: {(options.PreDump ? "pre-dump" : "dump")}: into {images.Path}{(parentDir is null ? "" : $", parent {parentDir}")}");

        // A page server holds the pages of the parent rounds itself (PageTargets.Send).
        var parentChains = PreDump.ResolveParentsEarly(options.PageDestination is null ? trackedParent : null);
        using var noGc = NoGcWindow.Enter();
        var clock = Stopwatch.StartNew();
        using var tracer = new Tracer("crest dump");
        var tree = Freezer.FreezeTree(tracer, pid, options.FreezeTimeout);
        var freezingTime = clock.Elapsed;
        var frozenAt = Stopwatch.GetTimestamp();
        PageDumpResult pages;
        List<PageTargets.ScannedTask>? later = null;
        var trackers = new List<DirtyTracker>();
        var ttys = new Ttys(options.ShellJob, new ExternalFiles(options.External));
        try
        {
            CheckNothingSharedWithParents(tree);
            foreach (var task in tree.Tasks)
            {
                var tracker = DirtyTracker.Find(task.Pid, trackedParent);
                if (parentChains.TryGetValue(task.Pid, out var chain)) tracker.EarlyParentChain = new(chain);
                trackers.Add(tracker);
            }
            pages = options.PreDump ? PreDump.DumpTree(tree, images, options, trackers, trackedParent, out later) : DumpTree(tree, images, options, trackers, trackedParent, ttys);
            // Pages sent to a page server count only once it confirms it stored them all (the tree still frozen).
            if (options.PageDestination is { } destination)
            {
                try
                {
                    destination.Finish();
                }
                catch (IOException e)
                {
                    throw new DumpException($"{destination.Name} did not confirm the pages: {e.Message}", e);
                }
            }
            if (later is null) options.ImagesComplete?.Invoke(images.Path);
        }
        catch (Exception e)
        {
            foreach (var t in trackers) t.Dispose();
            // The bytes read out of the tree's ptys go back before the tree runs on.
            ttys.PutBack();
            ReleaseAfterFailure(tree, images);
            if (e is DumpException) throw;
            if (e is TraceeExitedException exited)
                throw new DumpException($"Task {exited.Tid} ended during the dump ({exited.Status}).", e);
            throw new DumpException($"Dumping the tree of task {pid} failed: {e.Message}", e);
        }

        if (!options.PreDump)
        {
            // The images are complete: the restored task must never see the tracker, and this one no longer needs it.
            for (int i = 0; i < trackers.Count; i++)
            {
                try
                {
                    if (options.LeaveRunning || options.LeaveStopped) trackers[i].Remove(tree.Tasks[i]);
                }
                catch (Exception e) when (e is DumpException or KernelException)
                {
                    Log.Warning($"{tree.Tasks[i].Pid}: dump: the dirty-page tracker stays in the task: {e.Message}");
                }
            }
        }
        if (later is null)
        {
            foreach (var t in trackers) t.Dispose();
        }
        var mode = options.PreDump || options.LeaveRunning ? ReleaseMode.AsItWas : options.LeaveStopped ? ReleaseMode.Stopped : ReleaseMode.Killed;
        if (mode == ReleaseMode.Killed) ttys.Discard();
        else ttys.PutBack();
        Freezer.ReleaseTree(tree, mode);
        var frozenTime = Stopwatch.GetElapsedTime(frozenAt);
        if (later is not null)
        {
            // A pre-dump into the images directory reads the pages once the tree runs again.
            try
            {
                pages = PreDump.Add(pages, PreDump.WriteAfterRelease(tracer, images, options, trackers, later));
                options.ImagesComplete?.Invoke(images.Path);
            }
            finally
            {
                foreach (var t in trackers) t.Dispose();
            }
        }

        var stats = new DumpStatistics(freezingTime, frozenTime, pages.MemdumpTime, pages.MemwriteTime,
            pages.PagesScanned, pages.PagesInParent, pages.PagesWritten, pages.PagesLazy, images.BytesWritten);
        WriteStats(images, stats);
        Log.Info($"{pid}: {(options.PreDump ? "pre-dump" : "dump")}: done, {tree.Tasks.Count} processes, {stats.PagesWritten} pages written, {stats.PagesSkippedParent} in the parent, {stats.ImageBytes} bytes of images, frozen {frozenTime.TotalMilliseconds:0.###} ms");
        return stats;
    }

    /// <summary>The task must exist and must not be Crest itself (a thread cannot trace its own thread group).</summary>
    private static void CheckNotSelf(int pid)
    {
        if (!Directory.Exists($"/proc/{pid}/task"))
            throw new DumpException($"Task {pid} does not exist.");
        if (pid == Environment.ProcessId)
            throw new DumpException($"Task {pid} is Crest itself; it cannot dump its own process.");
    }

    /// <summary>
    /// Each process gets its own mm, fs and signal handlers in the images (ids-PID.img): refuse a process that
    /// shares one with its parent (clone with CLONE_VM, CLONE_FS or CLONE_SIGHAND but not CLONE_THREAD, as vfork
    /// does until exec), found with kcmp. An fd table shared with the parent (CLONE_FILES) is kept: both get
    /// one files_id and the child is cloned with CLONE_FILES at restore.
    /// </summary>
    private static void CheckNothingSharedWithParents(FrozenTree tree)
    {
        foreach (var (child, parent) in tree.Parents)
        {
            if (tree.Zombies.Exists(z => z.Pid == child)) continue;
            foreach (var kind in new[] { Kcmp.Shared.Vm, Kcmp.Shared.Fs, Kcmp.Shared.Sighand })
            {
                if (Kcmp.SameObject(child, parent, kind))
                    throw new DumpException($"Task {child} shares its {kind.ToString().ToLowerInvariant()} with its parent {parent} (clone without CLONE_THREAD, or vfork); not supported yet.");
            }
        }
    }

    private static PageDumpResult DumpTree(FrozenTree tree, ImageDirectory images, DumpOptions options, List<DirtyTracker> trackers, string? parentDir, Ttys ttys)
    {
        Stage("frozen");
        var files = new FileTable();
        var shared = new SharedFiles(new ExternalFiles(options.External), ttys, options.ExternalUnixSockets);
        var seccomp = new SeccompTable();
        var pstree = new List<IMessage>();
        var total = new PageDumpResult(0, 0, TimeSpan.Zero, TimeSpan.Zero);
        TaskKobjIdsEntry? rootIds = null;
        var filesIds = new Dictionary<int, uint>();
        for (int i = 0; i < tree.Tasks.Count; i++)
        {
            var task = tree.Tasks[i];
            // Each process has its own mm, fs and signal handlers: one id of each per process. The fd table is
            // its parent's when they share it (CLONE_FILES; parents are dumped before their children).
            uint n = (uint)i + 1;
            uint filesId = n;
            if (tree.Parents.TryGetValue(task.Pid, out int parentPid) && filesIds.TryGetValue(parentPid, out uint parentFiles)
                && Kcmp.SameObject(task.Pid, parentPid, Kcmp.Shared.Files))
                filesId = parentFiles;
            filesIds[task.Pid] = filesId;
            var ids = new TaskKobjIdsEntry { VmId = n, FilesId = filesId, FsId = n, SighandId = n };
            FillNamespaceIds(ids);
            rootIds ??= ids;
            var threads = tree.ThreadsOf(task);
            var (pages, stat) = DumpProcess(task, threads, images, options, files, shared, seccomp, ids, pagesId: n, ownTable: filesId == n, trackers[i], parentDir);
            total = PreDump.Add(total, pages);
            pstree.Add(new PstreeEntry
            {
                Pid = (uint)task.Pid,
                Ppid = tree.Parents.TryGetValue(task.Pid, out int parent) ? (uint)parent : 0,
                Pgid = (uint)stat.Pgrp,
                Sid = (uint)stat.Session,
                Threads = { (uint)task.Pid, threads.Select(t => (uint)t.Pid) },
            });
        }
        shared.Pipes.CheckExternal(tree.Tasks.Select(t => t.Pid).ToHashSet(), shared.External);
        shared.UnixSockets.Finish(files, shared.External);
        ttys.Finish(tree.Tasks.Select(t => t.Pid).ToHashSet());
        Stage("ttys");
        foreach (var zombie in tree.Zombies)
        {
            images.Write(ImageKinds.Core, (ulong)zombie.Pid, BuildZombieCore(zombie));
            pstree.Add(new PstreeEntry { Pid = (uint)zombie.Pid, Ppid = (uint)zombie.Ppid, Pgid = (uint)zombie.Pgid, Sid = (uint)zombie.Sid, Threads = { (uint)zombie.Pid } });
            Log.Info($"{zombie.Pid}: dump: zombie of {zombie.Ppid}, wait status 0x{zombie.ExitCode:x}");
        }

        images.WriteNamed(ImageKinds.FileName(ImageKinds.Files), ImageKinds.Files, [.. files.Entries]);
        images.WriteWithPayloads(ImageKinds.FileName(ImageKinds.PipesData), ImageKinds.PipesData, [.. files.PipeData.Select(p => ((IMessage)p.Entry, p.Data))]);
        if (files.SocketQueues.Count > 0)
            images.WriteWithPayloads(ImageKinds.FileName(ImageKinds.SkQueues), ImageKinds.SkQueues, [.. files.SocketQueues.Select(p => ((IMessage)p.Entry, p.Data))]);
        if (files.FifoData.Count > 0)
            images.WriteWithPayloads(ImageKinds.FileName(ImageKinds.FifoData), ImageKinds.FifoData, [.. files.FifoData.Select(p => ((IMessage)p.Entry, p.Data))]);
        if (ttys.Infos.Count > 0)
            images.WriteNamed(ImageKinds.FileName(ImageKinds.TtyInfo), ImageKinds.TtyInfo, [.. ttys.Infos]);
        if (ttys.Data.Count > 0)
            images.WriteNamed(ImageKinds.FileName(ImageKinds.TtyData), ImageKinds.TtyData, [.. ttys.Data]);
        if (seccomp.Count > 0)
            images.WriteNamed(ImageKinds.FileName(ImageKinds.Seccomp), ImageKinds.Seccomp, [seccomp.Entry]);
        images.WriteNamed(ImageKinds.FileName(ImageKinds.Pstree), ImageKinds.Pstree, pstree);
        images.SyncAll();
        var inventory = new InventoryEntry
        {
            ImgVersion = ImageVersion,
            FdinfoPerId = true,
            RootIds = rootIds!.Clone(),
            NsPerId = true,
            Lsmtype = Lsmtype.NoLsm,
        };
        images.Write(ImageKinds.Inventory, 0, inventory);
        images.SyncAll();
        return total;
    }

    /// <summary>The threads' rseq areas: the kernel writes them when the restore registers them (and the thread runs).</summary>
    private static List<(ulong Start, ulong End)> RseqAreas(CoreEntry main, IEnumerable<CoreEntry> threads) =>
        threads.Prepend(main).Select(c => c.ThreadCore?.RseqEntry).Where(r => r is { RseqAbiPointer: > 0 })
            .Select(r => (r!.RseqAbiPointer, r.RseqAbiPointer + Math.Max(r.RseqAbiSize, 32u))).ToList();

    /// <summary>The images of one process: core, mm, ids, fs, fdinfo, pagemap and pages. Its fds and files go into the tree's tables.</summary>
    private static (PageDumpResult Pages, ProcStat Stat) DumpProcess(FrozenTask task, IReadOnlyList<FrozenTask> threads, ImageDirectory images, DumpOptions options,
        FileTable files, SharedFiles shared, SeccompTable seccomp, TaskKobjIdsEntry ids, uint pagesId, bool ownTable, DirtyTracker tracker, string? parentDir)
    {
        int pid = task.Pid;
        // 1. Everything readable from outside, and every check, before anything in the task changes.
        var state = CoreDumper.ReadFromOutside(task);
        // A table shared with the parent (same files_id) was described with the parent.
        var unions = shared.UnionsOf(pid);
        var fdinfos = ownTable ? FileDescriptors.Collect(pid, files, shared, unions, tracker.TaskFds) : [];
        // The VMAs of /proc/PID/maps choose the pages (every mapping it can tell is checked here); smaps, for
        // the VmFlags of mm-PID.img, is read while the pages are written (it walks every page table).
        bool crestTracks = tracker.TaskFds.Count > 0;
        var pagedVmas = VmaDumper.Collect(pid, VmaDumper.ReadMaps(pid), new FileTable(), unions, crestTracks);
        var fs = FsDumper.Collect(pid, files, state.Umask, unions);

        // 2. What only the task can tell; the injector puts everything back when disposed.
        List<ThreadState> threadStates = [];
        PinnedInjection.Run(task.Tracee, () =>
        {
            using var remote = SyscallInjector.Open(task.Tracee);
            CoreDumper.ReadFromInside(state, remote);
            Stage("injecting");
            // The other threads' injections share the vdso gadget and a scratch page of this session.
            threadStates = ThreadDumper.Read(threads, remote.GadgetAddress, threads.Count > 0 ? remote.AllocScratch(4096) : 0);
        });

        var core = CoreDumper.BuildCore(state);
        seccomp.Describe(task.Tracee, state.Status, core.ThreadCore);
        var threadCores = threadStates.Select(t => (t.Tid, Core: ThreadDumper.BuildCore(t, core))).ToList();
        for (int i = 0; i < threads.Count; i++)
        {
            var threadStatus = ProcStatus.Parse(ProcFile.ReadAll(pid, $"task/{threads[i].Pid}/status"));
            ThreadDumper.CheckSameCredentials(state.Status, threadStatus, threads[i].Pid);
            seccomp.Describe(threads[i].Tracee, threadStatus, threadCores[i].Core.ThreadCore);
        }

        // 3. Memory, then the small images. smaps may show the scratch VMAs of the task's writes (TaskWriteAccess.Scratch).
        Task<IReadOnlyList<SmapsVma>>? smaps = null;
        // An incremental dump writes few pages, and its time goes to reading the parent images and scanning: the
        // smaps walk (100-150 ms per GiB of present pages) overlaps those from the start. A full dump starts it
        // with its writes, where it does not compete with the scan for the two cores.
        if (parentDir is not null) smaps = Task.Run(() => VmaDumper.ReadSmaps(pid));
        // The task may write its own pages (one copy instead of two), below its file size limit.
        var taskWrite = new TaskWriteAccess(task.Tracee, state.Limits[(int)ResourceLimitKind.FileSize].Current);
        PageDumpResult pages;
        try
        {
            pages = PageTargets.Dump(options, images, pid, pagesId, pagedVmas, tracker, parentDir, taskWrite,
                writing: () => smaps ??= Task.Run(() => VmaDumper.ReadSmaps(pid)), restoreWrites: RseqAreas(core, threadCores.Select(t => t.Core)));
        }
        finally
        {
            // Never leave the read running; its own failure is reported below, or hidden by the one above.
            try { smaps?.Wait(); }
            catch (AggregateException) { }
        }
        List<DumpedVma> vmas;
        try
        {
            smaps ??= Task.FromResult(VmaDumper.ReadSmaps(pid));
            vmas = VmaDumper.Collect(pid, smaps.Result.Where(v => !taskWrite.Scratch.Contains((v.Vma.Start, v.Vma.End))).ToList(), files, unions, crestTracks);
        }
        catch (AggregateException e) when (e.InnerException is not null)
        {
            throw e.InnerException is DumpException d ? d : new DumpException($"Cannot read /proc/{pid}/smaps: {e.InnerException.Message}", e.InnerException);
        }
        VmaDumper.TakeGuardRanges(pid, pagedVmas, vmas);
        var mm = VmaDumper.BuildMm(pid, state, vmas, files, unions);

        images.Write(ImageKinds.Core, (ulong)pid, core);
        foreach (var (tid, threadCore) in threadCores) images.Write(ImageKinds.Core, (ulong)tid, threadCore);
        images.Write(ImageKinds.Mm, (ulong)pid, mm);
        images.Write(ImageKinds.Ids, (ulong)pid, ids);
        images.Write(ImageKinds.Fs, (ulong)pid, fs);
        if (ownTable)
            images.WriteNamed(ImageKinds.FileName(ImageKinds.Fdinfo, ids.FilesId), ImageKinds.Fdinfo, [.. fdinfos]);
        Log.Info($"{pid}: dump: {1 + threads.Count} threads, {vmas.Count} vmas, {fdinfos.Count} fds, {pages.PagesWritten} pages");
        return (pages, state.Stat);
    }

    /// <summary>core-PID.img of a zombie: CRIU's TASK_DEAD with the wait status in exit_code; no registers, no mm.</summary>
    private static CoreEntry BuildZombieCore(ZombieTask zombie) => new()
    {
        Mtype = CoreEntry.Types.March.X8664,
        Tc = new TaskCoreEntry
        {
            TaskState = TaskDead,
            ExitCode = (uint)zombie.ExitCode,
            Personality = 0,
            Flags = 0,
            BlkSigset = 0,
            Comm = zombie.Comm,
        },
    };

    /// <summary>Namespace ids as CRIU numbers them: one id per namespace kind for a task in the root namespaces.</summary>
    private static void FillNamespaceIds(TaskKobjIdsEntry ids)
    {
        ids.PidNsId = 1;
        ids.NetNsId = 2;
        ids.IpcNsId = 3;
        ids.UtsNsId = 4;
        ids.MntNsId = 5;
        ids.UserNsId = 6;
        ids.CgroupNsId = 7;
        ids.TimeNsId = 8;
    }

    internal static void WriteStats(ImageDirectory images, DumpStatistics s)
    {
        static uint Micros(TimeSpan t) => (uint)Math.Min(uint.MaxValue, t.Ticks / 10);
        var entry = new StatsEntry
        {
            Dump = new DumpStatsEntry
            {
                FreezingTime = Micros(s.FreezingTime),
                FrozenTime = Micros(s.FrozenTime),
                MemdumpTime = Micros(s.MemdumpTime),
                MemwriteTime = Micros(s.MemwriteTime),
                PagesScanned = s.PagesScanned,
                PagesSkippedParent = s.PagesSkippedParent,
                PagesWritten = s.PagesWritten,
                IrmapResolve = 0,
                PagesLazy = s.PagesLazy,
                PagePipes = 0,
                PagePipeBufs = 0,
                ShpagesScanned = 0,
                ShpagesSkippedParent = 0,
                ShpagesWritten = 0,
            },
        };
        // CRIU names it without .img.
        images.WriteNamed("stats-dump", ImageKinds.Stats, [entry]);
        images.SyncAll();
    }

    private static void ReleaseAfterFailure(FrozenTree tree, ImageDirectory images)
    {
        images.RemoveCreated();
        for (int i = tree.Tasks.Count - 1; i >= 0; i--)
        {
            var task = tree.Tasks[i];
            try
            {
                ThreadDumper.ReleaseAll(tree.ThreadsOf(task), ReleaseMode.AsItWas);
            }
            catch (DumpException e)
            {
                Log.Error($"{task.Pid}: dump: cannot release every thread after the failure: {e.Message}");
            }
            if (task.Released) continue;
            try
            {
                // The injector is disposed by now; if the failure left the task outside an event stop, park it there.
                if (task.Tracee.LastStop is not { Status.IsEventStop: true })
                {
                    task.Tracee.InterruptAndWait(TimeSpan.FromSeconds(5));
                }
                Freezer.Release(task, ReleaseMode.AsItWas);
            }
            catch (Exception e) when (e is DumpException or KernelException or TimeoutException or TraceeExitedException)
            {
                Log.Error($"{task.Pid}: dump: cannot release the task after the failure: {e.Message}");
            }
        }
    }
}
