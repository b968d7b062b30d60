// Injected syscalls in stub-born tasks (ENGINE.md §4.1). The gadget `syscall; int3` is the stub's own code
// (RestoreStub.GadgetOffset), later a copy of it in an anonymous page of the restore region, so restore
// never pokes code into memory it restores. Each call: registers from a template with rax = nr and the
// arguments, orig_rax = -1, rip = gadget; PTRACE_CONT; the int3 stops the task with SIGTRAP; rax is the
// result. Fork events of an injected clone3 (PTRACE_O_TRACEFORK) are collected on the way.
//
// The restore region [Base, Base + RegionSize) is chosen where the image has no VMA: the gadget page first,
// then scratch pages for the arguments that are pointers (paths, structs, auxv).
using Crest.Diagnostics;
using Crest.Kernel;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Memory;
using Crest.Kernel.Ptrace;

namespace Crest.Engine.Restore;

internal sealed class StubInjector
{
    public const ulong RegionSize = 4 << 20;
    public const ulong ScratchOffset = 0x1000;
    public const ulong ScratchSize = 1 << 20;
    private const int SIGTRAP = 5;

    private readonly UserRegs _template;
    private ulong _scratchUsed;

    public StubInjector(Tracee tracee, ulong regionBase, ulong gadget)
    {
        Tracee = tracee;
        RegionBase = regionBase;
        Gadget = gadget;
        _template = tracee.GetRegisters();
    }

    public Tracee Tracee { get; }

    public int Pid => Tracee.Tid;

    public ulong RegionBase { get; }

    /// <summary>Address of the `syscall; int3` the task runs.</summary>
    public ulong Gadget { get; set; }

    public ulong ScratchBase => RegionBase + ScratchOffset;

    /// <summary>Pids reported by PTRACE_EVENT_FORK / CLONE stops during the last call.</summary>
    public List<int> NewChildren { get; } = [];

    /// <summary>Run syscall <paramref name="nr"/>: rax, or -errno.</summary>
    public long Syscall(long nr, long a1 = 0, long a2 = 0, long a3 = 0, long a4 = 0, long a5 = 0, long a6 = 0)
    {
        var regs = _template.ForInjectedSyscall(Gadget, nr, a1, a2, a3, a4, a5, a6);
        Tracee.SetRegisters(regs);
        Tracee.Continue(0);
        while (true)
        {
            var stop = Tracee.WaitForStop();
            if (stop.Status.IsSignalDeliveryStop && stop.Signal == SIGTRAP) break;
            if (stop.Event is PtraceEvent.Fork or PtraceEvent.Clone or PtraceEvent.VFork)
            {
                NewChildren.Add((int)Tracee.GetEventMessage());
                Tracee.Continue(0);
                continue;
            }
            throw new RestoreException($"task {Pid} stopped unexpectedly ({stop.Status}) in injected syscall {nr}");
        }
        long result = Tracee.GetRegisters().SyscallResult;
        Log.Debug($"{Pid}: restore: syscall {nr}(0x{a1:x}, 0x{a2:x}, 0x{a3:x}, 0x{a4:x}, 0x{a5:x}, 0x{a6:x}) = {result}");
        return result;
    }

    /// <summary>Like <see cref="Syscall"/>, but a -errno result throws a RestoreException naming the call and <paramref name="what"/>.</summary>
    public long Check(string name, string what, long nr, long a1 = 0, long a2 = 0, long a3 = 0, long a4 = 0, long a5 = 0, long a6 = 0)
    {
        long rc = Syscall(nr, a1, a2, a3, a4, a5, a6);
        if (rc is < 0 and >= -4095)
            throw new RestoreException($"{name} in restored task {Pid} failed for {what}: {Errno.FromRawReturn(rc)}");
        return rc;
    }

    /// <summary>
    /// The last syscall of the task before release (munmap of the restore region): stopped at its exit with
    /// PTRACE_SYSCALL, so the task never returns to the gadget, then parked in a PTRACE_EVENT_STOP.
    /// </summary>
    public long FinalSyscall(long nr, long a1, long a2)
    {
        var regs = _template.ForInjectedSyscall(Gadget, nr, a1, a2);
        Tracee.SetRegisters(regs);
        Tracee.ContinueToSyscall(0);
        var entry = Tracee.WaitForStop();
        if (!entry.Status.IsSyscallStop) throw new RestoreException($"task {Pid}: expected a syscall-entry stop, got {entry.Status}");
        Tracee.ContinueToSyscall(0);
        var exit = Tracee.WaitForStop();
        if (!exit.Status.IsSyscallStop) throw new RestoreException($"task {Pid}: expected a syscall-exit stop, got {exit.Status}");
        long result = Tracee.GetRegisters().SyscallResult;
        // The interrupt is taken on the way back to user space, before the (now unmapped) int3 would run.
        Tracee.Interrupt();
        Tracee.Continue(0);
        var parked = Tracee.WaitForStop();
        if (!parked.Status.IsEventStop) throw new RestoreException($"task {Pid}: expected an event stop after the last syscall, got {parked.Status}");
        return result;
    }

    /// <summary>exit_group(<paramref name="code"/>) as the task's last act (a zombie of the tree); returns once the tracer saw it end.</summary>
    public void ExitGroup(int code)
    {
        var regs = _template.ForInjectedSyscall(Gadget, SyscallNumbers.exit_group, code);
        Tracee.SetRegisters(regs);
        Tracee.Continue(0);
        WaitForEnd("exit_group");
    }

    /// <summary>Let the task take <paramref name="signal"/> (queued, unblocked, default action) and die of it.</summary>
    public void DieOfSignal(int signal)
    {
        using (var pidfd = Crest.Kernel.Files.PidFd.Open(Pid))
            pidfd.SendSignal(signal);
        Tracee.SetSigMask(0);
        Tracee.Continue(0);
        WaitForEnd($"signal {signal}");
    }

    private void WaitForEnd(string how)
    {
        try
        {
            while (true)
            {
                var stop = Tracee.WaitForStop(TimeSpan.FromSeconds(10));
                // The signal's delivery stop (and a group-stop's event stop): pass the signal on.
                Tracee.Continue(stop.Status.IsSignalDeliveryStop ? stop.Signal : 0);
            }
        }
        catch (TraceeExitedException)
        {
            Log.Debug($"{Pid}: restore: ended by {how}");
        }
        catch (TimeoutException e)
        {
            throw new RestoreException($"task {Pid} did not end after {how}", e);
        }
    }

    /// <summary>Reset the scratch allocator (the data of earlier calls is no longer needed).</summary>
    public void ResetScratch() => _scratchUsed = 0;

    /// <summary>Copy <paramref name="data"/> into scratch memory (16-byte aligned) and return its address in the task.</summary>
    public ulong Put(ReadOnlySpan<byte> data)
    {
        ulong size = ((ulong)data.Length + 15) & ~15UL;
        if (_scratchUsed + size > ScratchSize)
            throw new RestoreException($"restore scratch memory of task {Pid} is exhausted ({_scratchUsed} + {data.Length} bytes)");
        ulong address = ScratchBase + _scratchUsed;
        _scratchUsed += Math.Max(size, 16);
        if (data.Length > 0) RemoteMemory.Write(Pid, address, data);
        return address;
    }

    /// <summary>A NUL-terminated path in scratch memory.</summary>
    public ulong PutString(string text)
    {
        var bytes = new byte[System.Text.Encoding.UTF8.GetByteCount(text) + 1];
        System.Text.Encoding.UTF8.GetBytes(text, bytes);
        return Put(bytes);
    }

    /// <summary>Reserve <paramref name="size"/> zeroed bytes of scratch (for results).</summary>
    public ulong Reserve(int size) => Put(new byte[size]);
}
