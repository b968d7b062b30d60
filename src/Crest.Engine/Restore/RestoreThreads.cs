// The threads of a restored process besides its main thread (ENGINE.md §4.5; CRIU's restorer creates them
// from inside the process, Crest from outside). After memory and files are back, and while the restore region
// with its `syscall; int3` gadget is still mapped:
//  1. the main thread runs clone3 (Linux 5.3; set_tid 5.5) with CLONE_VM | CLONE_FS | CLONE_FILES |
//     CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM, no stack and set_tid = [TID]: the new thread starts from
//     the main thread's registers (rip at the gadget's int3) and, PTRACE_O_TRACECLONE being set, is attached
//     to our tracer thread and first reported in a PTRACE_EVENT_STOP, before it runs any instruction. It
//     inherits the main thread's blocked mask, which is "everything" during the restore.
//  2. in the thread itself (these calls act on the caller): set_tid_address, set_robust_list, rseq
//     (4.18; a CLONE_VM child starts unregistered), sigaltstack (reset by clone for CLONE_VM), PR_SET_NAME,
//     its pending signals with rt_tgsigqueueinfo(pid, tid, sig, info), which accepts an si_code >= 0 or
//     SI_TKILL (kernel-, kill()- or tgkill()-sent) only from the target thread itself, and, last of all, its
//     seccomp filters and credentials (both per thread: setresuid & co. change the calling thread only);
//  3. at release, from outside: PTRACE_SETREGSET NT_X86_XSTATE and NT_PRSTATUS, PTRACE_SETSIGMASK, the CPU
//     affinity Crest had, then PTRACE_DETACH — after the main thread's munmap of the restore region, so that no
//     thread runs while the region goes away. A thread sits in the SIGTRAP stop of its last injected call;
//     detaching with signal 0 discards that trap.
// A failure kills the process and collects every thread's exit, so that the group leader can be reaped.
using System.Buffers.Binary;
using System.Diagnostics;
using Crest.Diagnostics;
using Crest.Images.Protos;
using Crest.Kernel;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Processes;
using Crest.Kernel.Ptrace;

namespace Crest.Engine.Restore;

internal sealed class RestoreThreads(StubInjector main, RestoreImages images)
{
    private const ulong CLONE_VM = 0x100, CLONE_FS = 0x200, CLONE_FILES = 0x400, CLONE_SIGHAND = 0x800,
        CLONE_THREAD = 0x10000, CLONE_SYSVSEM = 0x40000;
    private const ulong ThreadFlags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
    private const long PR_SET_NAME = 15, SS_DISABLE = 2, SS_ONSTACK = 1;
    private const int SIGKILL = 9;

    private readonly List<RestoredThread> _threads = [];

    /// <summary>Tests only: called with the index of each thread once it is cloned, to make the restore fail there.</summary>
    internal static Action<int>? ThreadHook { get; set; }

    public int Count => _threads.Count;

    /// <summary>Clone every thread with its TID and give it its state; pending signals and credentials included.</summary>
    public void Restore()
    {
        if (images.Threads.Count == 0) return;
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < images.Threads.Count; i++)
        {
            var (tid, core, seccomp) = images.Threads[i];
            var thread = Clone(tid, core);
            ThreadHook?.Invoke(i);
            RestoreThreadState(thread);
            thread.Seccomp = seccomp;
        }
        var cloned = clock.Elapsed;
        int signals = 0;
        foreach (var thread in _threads) signals += QueuePendingSignals(main, thread);
        foreach (var thread in _threads)
        {
            RestoreSeccomp.Install(thread.Injector, thread.Core.ThreadCore, thread.Seccomp);
            if (thread.Core.ThreadCore?.Creds is { } creds) RestoreCredentials.Restore(thread.Injector, creds);
        }
        Log.Info($"{main.Pid}: threads: {_threads.Count} threads cloned and set up in {cloned.TotalMilliseconds:0.0} ms, {signals} pending signals, total {clock.Elapsed.TotalMilliseconds:0.0} ms");
    }

    private RestoredThread Clone(int tid, CoreEntry core)
    {
        ulong tidArray = main.Put(BitConverter.GetBytes((long)tid));
        Span<byte> args = stackalloc byte[88];
        args.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(args, ThreadFlags);   // flags; exit_signal 0, no stack
        BinaryPrimitives.WriteUInt64LittleEndian(args[64..], tidArray); // set_tid
        BinaryPrimitives.WriteUInt64LittleEndian(args[72..], 1);        // set_tid_size
        ulong argsAddress = main.Put(args);
        main.NewChildren.Clear();
        long rc = main.Syscall(SyscallNumbers.clone3, (long)argsAddress, args.Length);
        main.ResetScratch();
        if (rc < 0)
        {
            var errno = Errno.FromRawReturn(rc);
            string holder = errno.Value == Errno.EEXIST ? $" (held by comm '{TryComm(tid)}')" : "";
            throw new RestoreException($"clone3 of thread {tid} in task {main.Pid} failed: {errno}{holder}");
        }
        // Tracked before anything else can fail, so that a failure collects its exit.
        var tracee = main.Tracee.Tracer.Adopt((int)rc, main.Tracee.Options);
        var thread = new RestoredThread(tracee, core);
        _threads.Add(thread);
        if (rc != tid) throw new RestoreException($"clone3 with set_tid {tid} in task {main.Pid} gave thread {rc}");
        var first = tracee.WaitForStop(TimeSpan.FromSeconds(10));
        if (!first.Status.IsEventStop)
            throw new RestoreException($"new thread {tid} of task {main.Pid}: first stop is {first.Status}, expected an event stop");
        thread.Injector = new StubInjector(tracee, main.RegionBase, main.Gadget);
        return thread;
    }

    private static void RestoreThreadState(RestoredThread thread)
    {
        var task = thread.Injector;
        var info = thread.Core.ThreadInfo;
        var tc = thread.Core.ThreadCore;
        task.Syscall(SyscallNumbers.set_tid_address, (long)info.ClearTidAddr);
        if (tc is null) return;
        if (tc.FutexRla != 0)
            task.Check("set_robust_list", $"0x{tc.FutexRla:x}", SyscallNumbers.set_robust_list, (long)tc.FutexRla, tc.FutexRlaLen);
        if (tc.RseqEntry is { RseqAbiPointer: not 0 } rseq)
            task.Check("rseq", $"0x{rseq.RseqAbiPointer:x}+{rseq.RseqAbiSize}", SyscallNumbers.rseq, (long)rseq.RseqAbiPointer, rseq.RseqAbiSize, 0, rseq.Signature);
        if (tc.Sas is { } sas && (sas.SsFlags & SS_DISABLE) == 0 && sas.SsSize != 0)
        {
            var stack = new byte[24];
            BinaryPrimitives.WriteUInt64LittleEndian(stack, sas.SsSp);
            BinaryPrimitives.WriteUInt32LittleEndian(stack.AsSpan(8), sas.SsFlags & ~(uint)SS_ONSTACK); // on-stack is a state
            BinaryPrimitives.WriteUInt64LittleEndian(stack.AsSpan(16), sas.SsSize);
            task.Check("sigaltstack", $"0x{sas.SsSp:x}+{sas.SsSize}", SyscallNumbers.sigaltstack, (long)task.Put(stack), 0);
            task.ResetScratch();
        }
        if (tc.HasComm && tc.Comm.Length > 0)
        {
            task.Check("prctl(PR_SET_NAME)", $"comm '{tc.Comm}'", SyscallNumbers.prctl, PR_SET_NAME, (long)task.PutString(tc.Comm));
            task.ResetScratch();
        }
    }

    private static int QueuePendingSignals(StubInjector main, RestoredThread thread)
    {
        if (thread.Core.ThreadCore?.SignalsP is not { } queue) return 0;
        var task = thread.Injector;
        foreach (var info in queue.Signals)
        {
            if (info.Siginfo.Length < 4) throw new RestoreException($"core-{task.Pid}.img: a pending signal has a {info.Siginfo.Length}-byte siginfo");
            int sig = BinaryPrimitives.ReadInt32LittleEndian(info.Siginfo.Span);
            task.Check("rt_tgsigqueueinfo", $"pending signal {sig}", SyscallNumbers.rt_tgsigqueueinfo, main.Pid, task.Pid, sig, (long)task.Put(info.Siginfo.Span));
            task.ResetScratch();
        }
        return queue.Signals.Count;
    }

    /// <summary>Final registers, xstate, blocked mask and CPU affinity of every thread; they stay stopped.</summary>
    public void PrepareRelease(ReadOnlySpan<byte> affinity)
    {
        foreach (var thread in _threads)
        {
            var info = thread.Core.ThreadInfo;
            var tracee = thread.Tracee;
            tracee.SetXState(RestoreCore.BuildXState(tracee.GetXState(), info.Fpregs));
            tracee.SetRegisters(RestoreCore.FinalRegisters(info.Gpregs));
            tracee.SetSigMask(thread.Core.ThreadCore is { HasBlkSigset: true } tc ? tc.BlkSigset : 0);
            CpuAffinity.Set(tracee.Tid, affinity);
        }
    }

    /// <summary>Let every thread run (after the main thread's last syscall).</summary>
    public void Detach()
    {
        foreach (var thread in _threads) thread.Tracee.Detach(0);
        if (_threads.Count > 0) Log.Info($"{main.Pid}: threads: {_threads.Count} threads released");
    }

    /// <summary>
    /// After a failure: SIGKILL the process and collect each thread's exit here (the tracer), without which the
    /// main thread, a zombie group leader, would never be reported to its parent.
    /// </summary>
    public void KillAfterFailure()
    {
        if (_threads.Count == 0) return;
        try
        {
            using var pidfd = Crest.Kernel.Files.PidFd.Open(main.Pid);
            pidfd.SendSignal(SIGKILL);
        }
        catch (KernelException e)
        {
            Log.Warning($"{main.Pid}: threads: kill after the failure: {e.Message}");
        }
        foreach (var thread in _threads)
        {
            try
            {
                while (true) thread.Tracee.WaitForStop(TimeSpan.FromSeconds(10));
            }
            catch (TraceeExitedException)
            {
            }
            catch (Exception e) when (e is KernelException or TimeoutException)
            {
                Log.Error($"{thread.Tracee.Tid}: threads: the thread did not end after SIGKILL: {e.Message}");
            }
        }
    }

    private static string TryComm(int tid)
    {
        try
        {
            return File.ReadAllText($"/proc/{tid}/comm").TrimEnd('\n');
        }
        catch (IOException)
        {
            return "?";
        }
    }

    /// <summary>What the images hold for one thread: its core and its seccomp filters, oldest first.</summary>
    internal sealed record ThreadImages(int Tid, CoreEntry Core, IReadOnlyList<SeccompFilter> Seccomp);

    private sealed class RestoredThread(Tracee tracee, CoreEntry core)
    {
        public IReadOnlyList<SeccompFilter> Seccomp { get; set; } = [];

        public Tracee Tracee { get; } = tracee;
        public CoreEntry Core { get; } = core;
        public StubInjector Injector { get; set; } = null!;
    }
}
