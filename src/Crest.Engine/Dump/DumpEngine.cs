// Checkpoint of one process (all its threads) without children into CRIU-format images (ENGINE.md §2, §3, §6).
//
//   freeze (seize + interrupt)                    Freezer.cs, ThreadDumper.cs (the other threads)
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
//  - fdinfo-1.img (files_id 1): fd number, file id, FD_CLOEXEC. fs-PID.img: cwd_id, root_id, umask.
//  - pagemap-PID.img + pages-1.img: PE_PRESENT runs in ascending order, zero-page-backed pages left out.
//
// Fail closed: any failure before the images are complete releases the task exactly as it was (the
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
using Crest.Kernel.Ptrace;
using Google.Protobuf;

namespace Crest.Engine.Dump;

public static class DumpEngine
{
    /// <summary>pages-N.img holding this dump's pages.</summary>
    private const uint PagesId = 1;

    /// <summary>CRIU's image version (2: images since CRIU 1.x with fdinfo per id).</summary>
    private const uint ImageVersion = 2;

    /// <summary>Kernel object ids of the one task (CRIU generates them per kind, from 1).</summary>
    private const uint VmId = 1, FilesId = 1, FsId = 1, SighandId = 1;

    /// <summary>Tests only: called at named stages ("frozen", "injecting", "pages") to make the dump fail there.</summary>
    internal static Action<string>? StageHook { get; set; }

    public static DumpStatistics Dump(DumpOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.LeaveRunning && options.LeaveStopped)
            throw new DumpException("Leave-running and leave-stopped exclude each other.");
        int pid = options.Pid;
        var images = new ImageDirectory(options.ImagesDir);
        CheckSingleTask(pid);
        images.RemoveStaleInventory();
        Log.Info($"{pid}: dump: into {images.Path}");

        var clock = Stopwatch.StartNew();
        using var tracer = new Tracer("crest dump");
        var task = Freezer.Freeze(tracer, pid, options.FreezeTimeout);
        List<FrozenTask> threads;
        try
        {
            threads = ThreadDumper.FreezeOthers(tracer, task, options.FreezeTimeout);
        }
        catch
        {
            ReleaseAfterFailure(task, [], images);
            throw;
        }
        var freezingTime = clock.Elapsed;
        var frozenAt = Stopwatch.GetTimestamp();
        PageDumpResult pages;
        try
        {
            CheckSingleTask(pid);
            pages = DumpFrozen(task, threads, images);
        }
        catch (Exception e)
        {
            ReleaseAfterFailure(task, threads, images);
            if (e is DumpException) throw;
            if (e is TraceeExitedException exited)
                throw new DumpException($"Task {pid} ended during the dump ({exited.Status}).", e);
            throw new DumpException($"Dumping task {pid} failed: {e.Message}", e);
        }

        var mode = options.LeaveRunning ? ReleaseMode.AsItWas : options.LeaveStopped ? ReleaseMode.Stopped : ReleaseMode.Killed;
        ThreadDumper.Release(task, threads, mode);
        var frozenTime = Stopwatch.GetElapsedTime(frozenAt);

        var stats = new DumpStatistics(freezingTime, frozenTime, pages.MemdumpTime, pages.MemwriteTime,
            pages.PagesScanned, 0, pages.PagesWritten, 0, images.BytesWritten);
        WriteStats(images, stats);
        Log.Info($"{pid}: dump: done, {stats.PagesWritten} pages, {stats.ImageBytes} bytes of images, frozen {frozenTime.TotalMilliseconds:0.###} ms");
        return stats;
    }

    /// <summary>This engine handles one process (with its threads): refuse children with a clear message.</summary>
    private static void CheckSingleTask(int pid)
    {
        string taskDir = $"/proc/{pid}/task";
        if (!Directory.Exists(taskDir))
            throw new DumpException($"Task {pid} does not exist.");
        var children = new System.Text.StringBuilder();
        foreach (int tid in ThreadDumper.ListThreads(pid))
        {
            try
            {
                children.Append(File.ReadAllText($"{taskDir}/{tid}/children").Trim());
            }
            catch (IOException e)
            {
                // A thread may end at any time before the freeze; the main thread may not.
                if (tid == pid) throw new DumpException($"Task {pid} vanished: {e.Message}", e);
            }
        }
        if (children.Length > 0)
            throw new DumpException($"Task {pid} has children ({children}); only a single process without children can be dumped for now.");
    }

    private static PageDumpResult DumpFrozen(FrozenTask task, IReadOnlyList<FrozenTask> threads, ImageDirectory images)
    {
        int pid = task.Pid;
        // 1. Everything readable from outside, and every check, before anything in the task changes.
        StageHook?.Invoke("frozen");
        var state = CoreDumper.ReadFromOutside(task);
        var smaps = VmaDumper.ReadSmaps(pid);
        var files = new FileTable();
        var fdinfos = FileDescriptors.Collect(pid, files);
        var vmas = VmaDumper.Collect(pid, smaps, files);
        var fs = FsDumper.Collect(pid, files, state.Umask);

        // 2. What only the task can tell; the injector puts everything back when disposed.
        List<ThreadState> threadStates;
        using (var remote = SyscallInjector.Open(task.Tracee))
        {
            CoreDumper.ReadFromInside(state, remote);
            StageHook?.Invoke("injecting");
            // The other threads' injections share the vdso gadget and a scratch page of this session.
            threadStates = ThreadDumper.Read(threads, remote.GadgetAddress, threads.Count > 0 ? remote.AllocScratch(4096) : 0);
        }

        var mm = VmaDumper.BuildMm(pid, state, vmas, files);
        var core = CoreDumper.BuildCore(state);
        var threadCores = threadStates.Select(t => (t.Tid, Core: ThreadDumper.BuildCore(t, core))).ToList();
        var seccomp = new SeccompTable();
        seccomp.Describe(task.Tracee, state.Status, core.ThreadCore);
        for (int i = 0; i < threads.Count; i++)
        {
            var threadStatus = ProcStatus.Parse(ProcFile.ReadAll(pid, $"task/{threads[i].Pid}/status"));
            ThreadDumper.CheckSameCredentials(state.Status, threadStatus, threads[i].Pid);
            seccomp.Describe(threads[i].Tracee, threadStatus, threadCores[i].Core.ThreadCore);
        }

        // 3. Memory, then the small images, inventory last.
        PageDumpResult pages;
        string pagemapName = ImageKinds.FileName(ImageKinds.Pagemap, (ulong)pid);
        string pagesName = ImageKinds.FileName(ImageKinds.Pages, PagesId);
        images.Track(pagemapName);
        images.Track(pagesName);
        try
        {
            using var writer = PageImageWriter.Create(images.Path, (ulong)pid, PagesId, syncOnClose: false);
            pages = PageDumper.Dump(pid, vmas, writer);
            StageHook?.Invoke("pages");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DumpException($"Cannot write the memory images of task {pid} into {images.Path}: {e.Message}", e);
        }
        images.Account(pagemapName);
        images.Account(pagesName);

        var ids = new TaskKobjIdsEntry { VmId = VmId, FilesId = FilesId, FsId = FsId, SighandId = SighandId };
        FillNamespaceIds(ids);
        var stat = state.Stat;
        images.Write(ImageKinds.Core, (ulong)pid, core);
        foreach (var (tid, threadCore) in threadCores) images.Write(ImageKinds.Core, (ulong)tid, threadCore);
        images.Write(ImageKinds.Mm, (ulong)pid, mm);
        images.Write(ImageKinds.Ids, (ulong)pid, ids);
        images.Write(ImageKinds.Fs, (ulong)pid, fs);
        images.WriteNamed(ImageKinds.FileName(ImageKinds.Files), ImageKinds.Files, [.. files.Entries]);
        images.WriteNamed(ImageKinds.FileName(ImageKinds.Fdinfo, FilesId), ImageKinds.Fdinfo, [.. fdinfos]);
        images.WriteWithPayloads(ImageKinds.FileName(ImageKinds.PipesData), ImageKinds.PipesData, [.. files.PipeData.Select(p => ((IMessage)p.Entry, p.Data))]);
        if (seccomp.Count > 0)
            images.WriteNamed(ImageKinds.FileName(ImageKinds.Seccomp), ImageKinds.Seccomp, [seccomp.Entry]);
        images.Write(ImageKinds.Pstree, 0, new PstreeEntry { Pid = (uint)pid, Ppid = 0, Pgid = (uint)stat.Pgrp, Sid = (uint)stat.Session, Threads = { (uint)pid, threadCores.Select(t => (uint)t.Tid) } });
        images.SyncAll();
        var inventory = new InventoryEntry
        {
            ImgVersion = ImageVersion,
            FdinfoPerId = true,
            RootIds = ids.Clone(),
            NsPerId = true,
            Lsmtype = Lsmtype.NoLsm,
        };
        images.Write(ImageKinds.Inventory, 0, inventory);
        images.SyncAll();
        Log.Info($"{pid}: dump: {1 + threadCores.Count} threads, {vmas.Count} vmas, {fdinfos.Count} fds, {files.Entries.Count} files, {pages.PagesWritten} pages");
        return pages;
    }

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

    private static void WriteStats(ImageDirectory images, DumpStatistics s)
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

    private static void ReleaseAfterFailure(FrozenTask task, IReadOnlyList<FrozenTask> threads, ImageDirectory images)
    {
        images.RemoveCreated();
        try
        {
            ThreadDumper.ReleaseAll(threads, ReleaseMode.AsItWas);
        }
        catch (DumpException e)
        {
            Log.Error($"{task.Pid}: dump: cannot release every thread after the failure: {e.Message}");
        }
        if (task.Released) return;
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
