// The threads of a process besides its main thread (ENGINE.md §2, §3; CRIU's dump_task_threads).
//
// Freezing: every TID in /proc/PID/task is seized and interrupted like the main thread (Freezer.Freeze);
// the list is read again until a pass finds no new TID, because a running thread may clone while others are
// being attached. A thread that ends before it is seized is dropped.
//
// Per thread, from outside: PTRACE_GETREGSET (NT_PRSTATUS, NT_X86_XSTATE), PTRACE_GETSIGMASK,
// PTRACE_GET_RSEQ_CONFIGURATION (5.13), PTRACE_PEEKSIGINFO of the thread's own queue (3.10; the shared queue
// belongs to the main thread's core), get_robust_list(tid), /proc/PID/task/TID/comm. Injected into that very
// thread, because they answer for the caller only: sigaltstack(NULL, &old), prctl(PR_GET_TID_ADDRESS); their
// results land in scratch memory the main thread's injector mapped (the threads share the address space), so
// a thread costs two injected calls and no mmap/munmap of its own.
//
// Images: core-TID.img per thread holds thread_info (registers settled as for the main thread, fpregs,
// clear_tid_addr) and thread_core (blocked mask, sigaltstack, robust list, rseq, comm, creds, pending
// signals); tc (process-wide state) is only in the main thread's core. pstree's `threads` lists the main
// thread first, then the others in /proc order.
//
// Release: every thread is detached as the main thread is. Killing a traced multi-threaded process needs the
// tracer to collect each thread's exit before the leader's exit is reported (the kernel delays the group
// leader until its thread group is empty), so the other threads are waited for first.
using System.Buffers.Binary;
using System.Diagnostics;
using Crest.Diagnostics;
using Crest.Engine.Processes;
using Crest.Images.Protos;
using Crest.Kernel;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Files;
using Crest.Kernel.Injection;
using Crest.Kernel.Memory;
using Crest.Kernel.Proc;
using Crest.Kernel.Processes;
using Crest.Kernel.Ptrace;

namespace Crest.Engine.Dump;

/// <summary>What the dump learns about one thread that is not the main thread.</summary>
internal sealed class ThreadState
{
    public required int Tid { get; init; }
    public required UserRegs Registers { get; init; }
    public required byte[] XState { get; init; }
    public required ulong SigMask { get; init; }
    public required RseqConfiguration Rseq { get; init; }
    public required string Comm { get; init; }
    public required IReadOnlyList<byte[]> Signals { get; init; }
    public AltStack AltStack { get; set; }
    public ulong ClearChildTid { get; set; }
    public required ulong RobustListHead { get; init; }
    public required ulong RobustListLength { get; init; }
}

internal static class ThreadDumper
{
    private const int SIGKILL = 9;
    private const int PR_GET_TID_ADDRESS = 40;

    /// <summary>Tests only: called with the index of each thread read by injection, to make the dump fail there.</summary>
    internal static Action<int>? ThreadHook { get; set; }

    /// <summary>
    /// Seize and interrupt every thread of <paramref name="main"/>'s process but the main one, until a scan of
    /// /proc/PID/task finds none new. On failure the threads frozen so far are released and the error thrown.
    /// </summary>
    public static List<FrozenTask> FreezeOthers(Tracer tracer, FrozenTask main, TimeSpan timeout)
    {
        int pid = main.Pid;
        var frozen = new List<FrozenTask>();
        var known = new HashSet<int> { pid };
        var clock = Stopwatch.StartNew();
        try
        {
            while (true)
            {
                var found = ListThreads(pid).Where(known.Add).ToList();
                if (found.Count == 0) break;
                if (main.WasStopped)
                {
                    // Group stop: each thread reports it at the seize; Freezer knows how to wait for that.
                    foreach (int tid in found)
                    {
                        TimeSpan left = timeout - clock.Elapsed;
                        try
                        {
                            frozen.Add(Freezer.Freeze(tracer, tid, left > TimeSpan.Zero ? left : TimeSpan.Zero));
                        }
                        catch (DumpException) when (!Directory.Exists($"/proc/{pid}/task/{tid}"))
                        {
                            Log.Debug($"{pid}: freezer: thread {tid} ended before it was seized");
                        }
                    }
                }
                else
                {
                    FreezeRunning(tracer, pid, found, frozen, timeout - clock.Elapsed);
                }
            }
        }
        catch
        {
            ReleaseAll(frozen, ReleaseMode.AsItWas);
            throw;
        }
        if (frozen.Count > 0) Log.Info($"{pid}: freezer: {frozen.Count} more threads frozen in {clock.Elapsed.TotalMilliseconds:0.###} ms");
        return frozen;
    }

    /// <summary>
    /// Seize and interrupt all of <paramref name="tids"/> first, then collect their stops: the threads stop in
    /// parallel instead of one after the other. A signal-delivery stop on the way is passed on (the interrupt
    /// stays pending and stops the thread right after), as Freezer does for a single task.
    /// </summary>
    private static void FreezeRunning(Tracer tracer, int pid, List<int> tids, List<FrozenTask> frozen, TimeSpan timeout)
    {
        var seized = new List<Tracee>(tids.Count);
        try
        {
            foreach (int tid in tids)
            {
                Tracee tracee;
                try
                {
                    tracee = tracer.Seize(tid);
                }
                catch (KernelException e) when (e.Errno.Value is Errno.ESRCH or Errno.EPERM && HasEnded(pid, tid))
                {
                    Log.Debug($"{pid}: freezer: thread {tid} ended before it was seized");
                    continue;
                }
                seized.Add(tracee);
                try
                {
                    tracee.Interrupt();
                }
                catch (KernelException e) when (e.Errno.Value == Errno.ESRCH)
                {
                    // Exiting already: its exit is collected below.
                }
            }
            var clock = Stopwatch.StartNew();
            while (seized.Count > 0)
            {
                var tracee = seized[0];
                TimeSpan left = timeout - clock.Elapsed;
                TraceeStop stop;
                try
                {
                    stop = tracee.WaitForStop(left > TimeSpan.Zero ? left : TimeSpan.Zero);
                }
                catch (TraceeExitedException)
                {
                    Log.Debug($"{pid}: freezer: thread {tracee.Tid} ended while it was being frozen");
                    seized.RemoveAt(0);
                    continue;
                }
                if (stop.Status.IsEventStop)
                {
                    frozen.Add(new FrozenTask(tracee, wasStopped: false));
                    seized.RemoveAt(0);
                    continue;
                }
                Log.Debug($"{tracee.Tid}: freezer: passing on {stop.Status} before the interrupt stop");
                tracee.Continue(stop.Status.IsSignalDeliveryStop ? stop.Signal : 0);
            }
        }
        catch (Exception e) when (e is KernelException or TimeoutException or TraceeExitedException)
        {
            // Whatever was seized but is not frozen yet: catch its stop briefly and detach it (the tracer's end
            // would detach it anyway).
            foreach (var tracee in seized)
            {
                try
                {
                    if (tracee.LastStop is null) tracee.WaitForStop(TimeSpan.FromMilliseconds(200));
                    tracee.Detach();
                }
                catch (Exception undo) when (undo is KernelException or TimeoutException or TraceeExitedException)
                {
                    Log.Warning($"{tracee.Tid}: freezer: detach after a failed freeze: {undo.Message}");
                }
            }
            throw new DumpException($"Cannot freeze the threads of task {pid}: {e.Message}", e);
        }
    }

    /// <summary>The thread is gone or a zombie (a seize of an exiting thread fails with EPERM).</summary>
    private static bool HasEnded(int pid, int tid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/task/{tid}/stat");
            int paren = stat.LastIndexOf(')');
            return paren > 0 && paren + 2 < stat.Length && stat[paren + 2] is 'Z' or 'X';
        }
        catch (IOException)
        {
            return true;
        }
    }

    /// <summary>The TIDs in /proc/PID/task, main thread included.</summary>
    public static List<int> ListThreads(int pid)
    {
        var tids = new List<int>();
        try
        {
            foreach (string dir in Directory.EnumerateDirectories($"/proc/{pid}/task"))
                if (int.TryParse(Path.GetFileName(dir), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int tid))
                    tids.Add(tid);
        }
        catch (IOException e)
        {
            throw new DumpException($"Task {pid} vanished: {e.Message}", e);
        }
        return tids;
    }

    /// <summary>
    /// Read every thread's state; the injections in each thread are undone before the next one.
    /// <paramref name="scratch"/>: 32 bytes of memory mapped in the process for the injected calls' results.
    /// </summary>
    public static List<ThreadState> Read(IReadOnlyList<FrozenTask> threads, ulong vdsoSyscall, ulong scratch)
    {
        var clock = Stopwatch.StartNew();
        var states = new List<ThreadState>(threads.Count);
        for (int i = 0; i < threads.Count; i++)
        {
            var state = ReadFromOutside(threads[i]);
            int index = i;
            // Each thread on the tracer's CPU while it runs its calls (PinnedInjection), its mask given back after.
            PinnedInjection.Run(threads[i].Tracee, () =>
            {
                using var remote = SyscallInjector.Open(threads[index].Tracee, vdsoSyscall);
                ReadFromInside(state, remote, scratch);
                ThreadHook?.Invoke(index);
            });
            states.Add(state);
        }
        if (threads.Count > 0) Log.Info($"{threads[0].Pid}: threads: {threads.Count} threads read in {clock.Elapsed.TotalMilliseconds:0.###} ms");
        return states;
    }

    private static ThreadState ReadFromOutside(FrozenTask thread)
    {
        var tracee = thread.Tracee;
        int tid = thread.Pid;
        (ulong robustHead, ulong robustLength) = RobustList.Get(tid);
        var signals = new List<byte[]>();
        while (true)
        {
            const int Batch = 32;
            var got = tracee.PeekSigInfo(shared: false, signals.Count, Batch);
            foreach (var info in got) signals.Add(info.Bytes);
            if (got.Count < Batch) break;
        }
        string comm;
        try
        {
            comm = File.ReadAllText($"/proc/{tid}/comm").TrimEnd('\n');
        }
        catch (IOException e)
        {
            throw new DumpException($"Thread {tid} vanished: {e.Message}", e);
        }
        return new ThreadState
        {
            Tid = tid,
            Registers = tracee.GetRegisters(),
            XState = tracee.GetXState(),
            SigMask = tracee.GetSigMask(),
            Rseq = tracee.GetRseqConfiguration(),
            Comm = comm,
            Signals = signals,
            RobustListHead = robustHead,
            RobustListLength = robustLength,
        };
    }

    private static void ReadFromInside(ThreadState state, SyscallInjector remote, ulong scratch)
    {
        int tid = state.Tid;
        Span<byte> buffer = stackalloc byte[32];

        void Call(string what, long nr, long a1 = 0, long a2 = 0, long a3 = 0)
        {
            long rc = remote.Syscall(nr, a1, a2, a3);
            if (rc is < 0 and >= -4095)
                throw new KernelException($"{what} (injected)", tid, Errno.FromRawReturn(rc));
        }

        // Both answers side by side in the scratch memory (stack_t, 24 bytes; then the address, 8), read in one go.
        Call("sigaltstack", SyscallNumbers.sigaltstack, 0, (long)scratch);
        Call("prctl(PR_GET_TID_ADDRESS)", SyscallNumbers.prctl, PR_GET_TID_ADDRESS, (long)scratch + 24);
        RemoteMemory.Read(tid, scratch, buffer);
        state.AltStack = new AltStack(BinaryPrimitives.ReadUInt64LittleEndian(buffer), BinaryPrimitives.ReadUInt32LittleEndian(buffer[8..]),
            BinaryPrimitives.ReadUInt64LittleEndian(buffer[16..]));
        state.ClearChildTid = BinaryPrimitives.ReadUInt64LittleEndian(buffer[24..]);
        Log.Debug($"{tid}: threads: clear_child_tid 0x{state.ClearChildTid:x}, robust list 0x{state.RobustListHead:x}, {state.Signals.Count} signals");
    }

    /// <summary>
    /// A thread's core carries the main thread's credentials; one whose ids, groups, capabilities or
    /// no_new_privs differ (raw setresuid & co. act per thread) is refused rather than restored wrongly.
    /// </summary>
    public static void CheckSameCredentials(ProcStatus main, ProcStatus thread, int tid)
    {
        bool same = main.Uid.Equals(thread.Uid) && main.Gid.Equals(thread.Gid) && main.Groups.SequenceEqual(thread.Groups)
            && main.CapInh == thread.CapInh && main.CapPrm == thread.CapPrm && main.CapEff == thread.CapEff
            && main.CapBnd == thread.CapBnd && main.CapAmb == thread.CapAmb && main.NoNewPrivs == thread.NoNewPrivs;
        if (!same)
            throw new DumpException($"Thread {tid} of task {main.Pid} has credentials other than its main thread's; per-thread credentials cannot be dumped yet.");
    }

    /// <summary>core-TID.img of a thread: thread_info and thread_core; creds and scheduling as the main thread's.</summary>
    public static CoreEntry BuildCore(ThreadState thread, CoreEntry main)
    {
        var core = new CoreEntry
        {
            Mtype = CoreEntry.Types.March.X8664,
            ThreadInfo = new ThreadInfoX86
            {
                ClearTidAddr = thread.ClearChildTid,
                Gpregs = BuildGpRegs(CoreDumper.SettleInterruptedSyscall(thread.Tid, thread.Registers)),
                Fpregs = CoreDumper.BuildFpRegs(thread.XState),
            },
            ThreadCore = new ThreadCoreEntry
            {
                FutexRla = thread.RobustListHead,
                FutexRlaLen = (uint)thread.RobustListLength,
                BlkSigset = thread.SigMask,
                Sas = new ThreadSasEntry { SsSp = thread.AltStack.Sp, SsSize = thread.AltStack.Size, SsFlags = thread.AltStack.Flags },
                SeccompMode = SeccompMode.Disabled,
                Comm = thread.Comm,
            },
        };
        var mainThread = main.ThreadCore;
        if (mainThread is not null)
        {
            core.ThreadCore.SchedNice = mainThread.SchedNice;
            core.ThreadCore.SchedPolicy = mainThread.SchedPolicy;
            core.ThreadCore.SchedPrio = mainThread.SchedPrio;
            core.ThreadCore.PdeathSig = mainThread.PdeathSig;
            if (mainThread.Creds is not null) core.ThreadCore.Creds = mainThread.Creds.Clone();
        }
        if (thread.Signals.Count > 0)
        {
            var queue = new SignalQueueEntry();
            foreach (var info in thread.Signals) queue.Signals.Add(new SiginfoEntry { Siginfo = Google.Protobuf.ByteString.CopyFrom(info) });
            core.ThreadCore.SignalsP = queue;
        }
        if (thread.Rseq.AbiPointer != 0)
            core.ThreadCore.RseqEntry = new RseqEntry { RseqAbiPointer = thread.Rseq.AbiPointer, RseqAbiSize = thread.Rseq.AbiSize, Signature = thread.Rseq.Signature };
        return core;
    }

    private static UserX86RegsEntry BuildGpRegs(UserRegs r) => new()
    {
        R15 = r.r15, R14 = r.r14, R13 = r.r13, R12 = r.r12, Bp = r.rbp, Bx = r.rbx, R11 = r.r11, R10 = r.r10,
        R9 = r.r9, R8 = r.r8, Ax = r.rax, Cx = r.rcx, Dx = r.rdx, Si = r.rsi, Di = r.rdi, OrigAx = r.orig_rax,
        Ip = r.rip, Cs = r.cs, Flags = r.eflags, Sp = r.rsp, Ss = r.ss, FsBase = r.fs_base, GsBase = r.gs_base,
        Ds = r.ds, Es = r.es, Fs = r.fs, Gs = r.gs, Mode = UserX86RegsMode.Native,
    };

    /// <summary>
    /// Release the other threads and the main thread as <paramref name="mode"/> says. Stopped: the main thread
    /// queues SIGSTOP for the process before anything is detached. Killed: SIGKILL, then each thread's exit is
    /// collected before the main thread's.
    /// </summary>
    public static void Release(FrozenTask main, IReadOnlyList<FrozenTask> threads, ReleaseMode mode)
    {
        if (threads.Count == 0)
        {
            Freezer.Release(main, mode);
            return;
        }
        switch (mode)
        {
            case ReleaseMode.AsItWas:
                ReleaseAll(threads, mode);
                Freezer.Release(main, mode);
                break;
            case ReleaseMode.Stopped:
                Freezer.Release(main, mode);
                ReleaseAll(threads, ReleaseMode.AsItWas);
                break;
            case ReleaseMode.Killed:
                try
                {
                    using (var pidfd = PidFd.Open(main.Pid))
                        pidfd.SendSignal(SIGKILL);
                }
                catch (KernelException e)
                {
                    throw new DumpException($"Cannot kill task {main.Pid}: {e.Message}.", e);
                }
                WaitUntilKilled(threads);
                Freezer.Release(main, mode);
                break;
        }
    }

    /// <summary>Collect the exit of each thread of a process that was sent SIGKILL.</summary>
    public static void WaitUntilKilled(IReadOnlyList<FrozenTask> threads)
    {
        foreach (var thread in threads)
            if (!thread.Released) WaitForExit(thread);
    }

    /// <summary>Release every thread that is not released yet; the first failure is thrown after all were tried.</summary>
    public static void ReleaseAll(IReadOnlyList<FrozenTask> threads, ReleaseMode mode)
    {
        DumpException? first = null;
        foreach (var thread in threads)
        {
            try
            {
                if (thread.Released) continue;
                if (thread.Tracee.LastStop is not { Status.IsEventStop: true })
                    thread.Tracee.InterruptAndWait(TimeSpan.FromSeconds(5));
                Freezer.Release(thread, mode);
            }
            catch (Exception e) when (e is DumpException or KernelException or TimeoutException or TraceeExitedException)
            {
                Log.Error($"{thread.Pid}: threads: cannot release the thread: {e.Message}");
                first ??= e as DumpException ?? new DumpException($"Cannot release thread {thread.Pid}: {e.Message}", e);
            }
        }
        if (first is not null) throw first;
    }

    private static void WaitForExit(FrozenTask thread)
    {
        try
        {
            while (true) thread.Tracee.WaitForStop(TimeSpan.FromSeconds(10));
        }
        catch (TraceeExitedException)
        {
        }
        catch (KernelException e) when (e.Errno.Value == Errno.ECHILD)
        {
        }
        catch (TimeoutException e)
        {
            throw new DumpException($"Thread {thread.Pid} was sent SIGKILL but did not end within 10 s.", e);
        }
        thread.Released = true;
    }
}
