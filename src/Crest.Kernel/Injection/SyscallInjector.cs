// Runs single system calls inside a seized, stopped task and undoes every trace of them (ENGINE.md §3, §8).
//
// Two ways to make the task execute `syscall`:
//  - Existing instruction (dump side): rip = an existing 0f 05 in the task's [vdso], PTRACE_SYSCALL to the
//    syscall-entry stop and again to the exit stop (PTRACE_O_TRACESYSGOOD, Linux 2.4.6). Nothing is written
//    to the task's memory, so no text page turns into a dirty anonymous copy.
//  - Poked gadget (restore side, stub tasks): `syscall; int3` written with PTRACE_POKEDATA at a chosen
//    executable address, PTRACE_CONT until the SIGTRAP of int3; the original word is put back at the end.
//
// Register set for each call: the task's saved registers with rax = nr, rdi, rsi, rdx, r10, r8, r9 = args,
// rip = gadget and orig_rax = -1, so that resuming from the current stop does not trigger the kernel's
// syscall-restart logic. All signals are blocked (PTRACE_SETSIGMASK, Linux 3.11) while injecting so that
// none is delivered into the borrowed context, and the task's seccomp filters are suspended
// (PTRACE_O_SUSPEND_SECCOMP, Linux 4.3, needs CAP_SYS_ADMIN) so that they neither fail nor kill our calls.
// A fault in the borrowed context (a bad gadget address) is forced through the blocked mask by the kernel,
// which then also resets that signal's handler to SIG_DFL: pass only addresses known to hold the code.
//
// Interrupted syscalls: a task stopped inside a syscall shows rax = -ERESTART* and orig_rax = nr, and the
// kernel restarts the call on its way back to user space from the stop it is in (arch_do_signal_or_restart
// after get_signal). The injection ends in a syscall-exit or SIGTRAP stop instead. PTRACE_DETACH from there
// would still restart the call (the detach wakes the task with TIF_SIGPENDING), but PTRACE_CONT from a
// syscall-exit stop skips the signal path and the task would see -ERESTARTSYS as read()'s result (tested).
// So before the task is handed back it is parked once more in a PTRACE_EVENT_STOP trap (PTRACE_INTERRUPT,
// Linux 3.4) and only then given its saved registers back: however it is released from there, the kernel's
// restart logic sees exactly the registers it had at the original stop.
using System.Globalization;
using Crest.Diagnostics;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Interop;
using Crest.Kernel.Ptrace;

namespace Crest.Kernel.Injection;

/// <summary>How the injector makes the task run its syscall.</summary>
public enum InjectionMode
{
    /// <summary>An existing syscall instruction, reached with PTRACE_SYSCALL; writes nothing.</summary>
    ExistingSyscall,

    /// <summary>A poked <c>syscall; int3</c>, reached with PTRACE_CONT; the bytes are restored at the end.</summary>
    PokedGadget,
}

/// <summary>
/// A session of injected syscalls in one stopped task: <c>using var remote = SyscallInjector.Open(tracee);</c>.
/// Dispose puts back registers, signal mask, options, poked bytes and unmaps scratch memory; the task is
/// then in a PTRACE_EVENT_STOP again, ready to be detached or injected into anew.
/// </summary>
public sealed class SyscallInjector : IDisposable
{
    private const long PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4, MAP_SHARED = 1, MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20;
    private const int PageSize = 4096;

    private readonly UserRegs _saved;
    private readonly ulong _savedSigMask;
    private readonly PtraceOptions _savedOptions;
    private readonly long _savedWord;
    private readonly List<(ulong Address, int Size)> _scratch = [];
    private bool _resumed;
    private bool _disposed;
    private ulong _batchArea;
    private int _batchAreaSize;
    private bool _batchRefused;

    private SyscallInjector(Tracee tracee, InjectionMode mode, ulong gadget)
    {
        Tracee = tracee;
        Mode = mode;
        GadgetAddress = gadget;
        var stop = tracee.LastStop ?? throw new InvalidOperationException($"{tracee} is not in a known stop: wait for it first");
        // Resuming a signal-delivery stop with signal 0 would discard the signal; syscall stops would lose
        // the syscall's own progress. Injection starts from a trap or group stop only.
        if (!stop.Status.IsEventStop)
            throw new InvalidOperationException($"{tracee}: injection needs a PTRACE_EVENT_STOP (interrupt or group stop), task is in {stop.Status}");

        _saved = tracee.GetRegistersCore();
        _savedSigMask = tracee.GetSigMaskCore();
        _savedOptions = tracee.Options;
        bool masked = false, optionsSet = false;
        try
        {
            tracee.SetSigMaskCore(ulong.MaxValue);
            masked = true;
            var wanted = _savedOptions | PtraceOptions.TraceSysGood | PtraceOptions.SuspendSeccomp;
            if (wanted != _savedOptions)
            {
                try
                {
                    tracee.SetOptionsCore(wanted);
                }
                catch (KernelException e) when (e.Errno.Value == Errno.EPERM)
                {
                    // PTRACE_O_SUSPEND_SECCOMP needs CAP_SYS_ADMIN: without it the task's filter applies to
                    // injected calls too.
                    Log.Debug($"{tracee.Tid}: injection: seccomp filters stay active ({e.Errno.Name})");
                    tracee.SetOptionsCore(wanted & ~PtraceOptions.SuspendSeccomp);
                }
                optionsSet = true;
            }
            if (mode == InjectionMode.PokedGadget)
            {
                _savedWord = tracee.PeekDataCore(gadget);
                Span<byte> word = stackalloc byte[8];
                BitConverter.TryWriteBytes(word, _savedWord);
                InjectionGadget.SyscallTrap.CopyTo(word);
                tracee.PokeDataCore(gadget, BitConverter.ToInt64(word));
            }
        }
        catch
        {
            // Undo the part that was done, then let the failure through.
            if (optionsSet) tracee.SetOptionsCore(_savedOptions);
            if (masked) tracee.SetSigMaskCore(_savedSigMask);
            throw;
        }
        Log.Debug($"{tracee.Tid}: injection: session opened ({mode} at 0x{gadget:x})");
    }

    public Tracee Tracee { get; }

    public InjectionMode Mode { get; }

    /// <summary>Where rip is pointed for each call.</summary>
    public ulong GadgetAddress { get; }

    /// <summary>The registers the task had when the session opened; they are what it gets back.</summary>
    public UserRegs SavedRegisters => _saved;

    /// <summary>Open a session that uses the syscall instruction found in the task's [vdso] (writes nothing).</summary>
    public static SyscallInjector Open(Tracee tracee) =>
        tracee.OnTracer(() => new SyscallInjector(tracee, InjectionMode.ExistingSyscall, FindVdsoSyscallCore(tracee)));

    /// <summary>Open a session using a syscall instruction already at <paramref name="syscallAddress"/> (e.g. a cached vdso address).</summary>
    public static SyscallInjector Open(Tracee tracee, ulong syscallAddress) =>
        tracee.OnTracer(() => new SyscallInjector(tracee, InjectionMode.ExistingSyscall, syscallAddress));

    /// <summary>Open a session that pokes <c>syscall; int3</c> at <paramref name="executableAddress"/> (restore side: stub code).</summary>
    public static SyscallInjector OpenWithPokedGadget(Tracee tracee, ulong executableAddress) =>
        tracee.OnTracer(() => new SyscallInjector(tracee, InjectionMode.PokedGadget, executableAddress));

    /// <summary>The address of a <c>syscall</c> instruction (0f 05) in the task's [vdso], from /proc/TID/maps.</summary>
    public static ulong FindVdsoSyscall(Tracee tracee) => tracee.OnTracer(() => FindVdsoSyscallCore(tracee));

    /// <summary>
    /// Run syscall <paramref name="nr"/> in the task. Returns rax: the result, or -errno if the syscall failed
    /// (a result, not an exception). A ptrace failure or an unexpected stop throws.
    /// </summary>
    public long Syscall(long nr, long a1 = 0, long a2 = 0, long a3 = 0, long a4 = 0, long a5 = 0, long a6 = 0)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return Tracee.OnTracer(() => SyscallCore(nr, a1, a2, a3, a4, a5, a6));
    }

    /// <summary>
    /// Run <paramref name="calls"/> one after the other in the task in a single resume, and return each rax (a
    /// result or -errno, as <see cref="Syscall"/>). The code (Arch/X64/SyscallBatchCode.cs) goes into an
    /// anonymous read-write-execute scratch mapping, unmapped on Dispose like all scratch memory; the task runs
    /// it with PTRACE_CONT, stores a done marker and sleeps in pause() until the tracer, which polls the marker
    /// with process_vm_readv, interrupts it into a PTRACE_EVENT_STOP again. No signal and no breakpoint is
    /// involved, so no signal disposition changes (a trap with SIGTRAP blocked would reset its handler). Where
    /// such a mapping is refused (PR_SET_MDWE, an LSM denying execmem), or in a poked-gadget session, the calls
    /// run one by one instead, with the same results.
    /// </summary>
    public long[] Batch(IReadOnlyList<InjectedCall> calls)
    {
        ArgumentNullException.ThrowIfNull(calls);
        ObjectDisposedException.ThrowIf(_disposed, this);
        InjectedCall[] array = [.. calls];
        return Tracee.OnTracer(() => BatchCore(array));
    }

    /// <summary>
    /// Map <paramref name="size"/> bytes (rounded up to pages) of anonymous read-write memory in the task; unmapped on
    /// Dispose. With <paramref name="separate"/> it is shared anonymous memory: a VMA of its own that never merges
    /// with a neighbour, so that a reader of /proc/PID/maps meanwhile can tell it from the task's own by its range.
    /// </summary>
    public ulong AllocScratch(int size, bool separate = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        int length = (size + PageSize - 1) / PageSize * PageSize;
        long address = Syscall(SyscallNumbers.mmap, 0, length, PROT_READ | PROT_WRITE, (separate ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
        if (address is < 0 and >= -4095)
            throw new KernelException("mmap (injected)", Tracee.Tid, Errno.FromRawReturn(address), $"{length} bytes of scratch");
        _scratch.Add(((ulong)address, length));
        return (ulong)address;
    }

    /// <summary>Write into scratch memory from <see cref="AllocScratch"/>.</summary>
    public void WriteScratch(ulong address, ReadOnlySpan<byte> data)
    {
        CheckScratch(address, data.Length);
        RemoteScratch.Write(Tracee.Tid, address, data);
    }

    /// <summary>Read from scratch memory from <see cref="AllocScratch"/>.</summary>
    public void ReadScratch(ulong address, Span<byte> buffer)
    {
        CheckScratch(address, buffer.Length);
        RemoteScratch.Read(Tracee.Tid, address, buffer);
    }

    /// <summary>Undo everything, even after a failure; the first failure of the undo is thrown after all steps ran.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Tracee.OnTracer(Restore);
    }

    private void Restore()
    {
        var failures = new List<Exception>();
        void Step(Action step)
        {
            try { step(); }
            catch (Exception e) { failures.Add(e); }
        }

        for (int i = _scratch.Count - 1; i >= 0; i--)
        {
            var (address, size) = _scratch[i];
            Step(() =>
            {
                long rc = SyscallCore(SyscallNumbers.munmap, (long)address, size, 0, 0, 0, 0);
                if (rc != 0) throw new KernelException("munmap (injected)", Tracee.Tid, Errno.FromRawReturn(rc), $"scratch 0x{address:x}+{size}");
            });
        }
        _scratch.Clear();
        if (Mode == InjectionMode.PokedGadget)
            Step(() => Tracee.PokeDataCore(GadgetAddress, _savedWord));
        if (_resumed)
            Step(ParkInEventStop);
        Step(() => Tracee.SetRegistersCore(in _saved));
        Step(() => Tracee.SetSigMaskCore(_savedSigMask));
        if (Tracee.Options != _savedOptions)
            Step(() => Tracee.SetOptionsCore(_savedOptions));

        Log.Debug($"{Tracee.Tid}: injection: session closed, {failures.Count} failures undoing it");
        if (failures.Count == 1) throw failures[0];
        if (failures.Count > 1) throw new AggregateException($"undoing injection in task {Tracee.Tid} failed", failures);
    }

    /// <summary>
    /// From the syscall-exit or SIGTRAP stop of the last call, back into a PTRACE_EVENT_STOP trap: the task
    /// then sits inside get_signal again, where the kernel restarts an interrupted syscall after release.
    /// </summary>
    private void ParkInEventStop()
    {
        Tracee.InterruptCore();
        Tracee.ResumeCore(Libc.PTRACE_CONT, "PTRACE_CONT", 0);
        var stop = Tracee.WaitCore(blocking: true, Timeout.InfiniteTimeSpan);
        if (!stop.Status.IsEventStop) throw InjectionException.UnexpectedStop(stop, "PTRACE_EVENT_STOP");
    }

    private long SyscallCore(long nr, long a1, long a2, long a3, long a4, long a5, long a6)
    {
        var regs = _saved.ForInjectedSyscall(GadgetAddress, nr, a1, a2, a3, a4, a5, a6);
        Tracee.SetRegistersCore(in regs);
        _resumed = true;
        if (Mode == InjectionMode.ExistingSyscall)
        {
            Tracee.ResumeCore(Libc.PTRACE_SYSCALL, "PTRACE_SYSCALL", 0);
            var entry = Tracee.WaitCore(blocking: true, Timeout.InfiniteTimeSpan);
            if (!entry.Status.IsSyscallStop) throw InjectionException.UnexpectedStop(entry, "syscall-entry stop");
            Tracee.ResumeCore(Libc.PTRACE_SYSCALL, "PTRACE_SYSCALL", 0);
            var exit = Tracee.WaitCore(blocking: true, Timeout.InfiniteTimeSpan);
            if (!exit.Status.IsSyscallStop) throw InjectionException.UnexpectedStop(exit, "syscall-exit stop");
        }
        else
        {
            Tracee.ResumeCore(Libc.PTRACE_CONT, "PTRACE_CONT", 0);
            var trap = Tracee.WaitCore(blocking: true, Timeout.InfiniteTimeSpan);
            if (!trap.Status.IsSignalDeliveryStop || trap.Signal != Libc.SIGTRAP)
                throw InjectionException.UnexpectedStop(trap, "SIGTRAP from int3");
        }
        long result = Tracee.GetRegistersCore().SyscallResult;
        Log.Debug($"{Tracee.Tid}: injection: syscall {nr}({a1:x}, {a2:x}, {a3:x}, {a4:x}, {a5:x}, {a6:x}) = {result}");
        return result;
    }

    private long[] BatchCore(InjectedCall[] calls)
    {
        var results = new long[calls.Length];
        int codeLength = calls.Length * SyscallBatchCode.BytesPerCall + SyscallBatchCode.EndBytes;
        int codeSpace = (codeLength + 7) & ~7;
        int length = codeSpace + 8 * calls.Length + 8;
        ulong area = Mode == InjectionMode.ExistingSyscall ? BatchAreaCore(length) : 0;
        if (area == 0)
        {
            for (int i = 0; i < calls.Length; i++)
            {
                var c = calls[i];
                results[i] = SyscallCore(c.Nr, c.A1, c.A2, c.A3, c.A4, c.A5, c.A6);
            }
            return results;
        }

        ulong resultsAt = area + (ulong)codeSpace, doneAt = resultsAt + 8 * (ulong)calls.Length;
        var program = new (long, long, long, long, long, long, long)[calls.Length];
        for (int i = 0; i < calls.Length; i++)
            program[i] = (calls[i].Nr, calls[i].A1, calls[i].A2, calls[i].A3, calls[i].A4, calls[i].A5, calls[i].A6);
        var image = new byte[length];
        SyscallBatchCode.Build(program, resultsAt, doneAt).CopyTo(image, 0);
        RemoteScratch.Write(Tracee.Tid, area, image);

        var regs = _saved.ForInjectedSyscall(area, 0);
        Tracee.SetRegistersCore(in regs);
        _resumed = true;
        Tracee.ResumeCore(Libc.PTRACE_CONT, "PTRACE_CONT", 0);
        WaitForDoneMarker(doneAt);
        Tracee.InterruptCore();
        var stop = Tracee.WaitCore(blocking: true, Timeout.InfiniteTimeSpan);
        if (!stop.Status.IsEventStop) throw InjectionException.UnexpectedStop(stop, "PTRACE_EVENT_STOP after the batch");

        var values = new byte[8 * calls.Length];
        RemoteScratch.Read(Tracee.Tid, resultsAt, values);
        for (int i = 0; i < calls.Length; i++)
        {
            results[i] = BitConverter.ToInt64(values, 8 * i);
            var c = calls[i];
            Log.Debug($"{Tracee.Tid}: injection: syscall {c.Nr}({c.A1:x}, {c.A2:x}, {c.A3:x}, {c.A4:x}, {c.A5:x}, {c.A6:x}) = {results[i]} (batched)");
        }
        return results;
    }

    // The task runs the batch on its own; it is done when the marker is set. A stop meanwhile (a fault in the
    // code, SIGKILL) ends the wait with an error; so does a batch that is not done within the time limit.
    private void WaitForDoneMarker(ulong doneAt)
    {
        Span<byte> marker = stackalloc byte[8];
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int round = 0; ; round++)
        {
            // Tracer and task often share one CPU (dump pins them): give it to the task before looking.
            if (round < 100) Thread.Yield();
            else Thread.Sleep(round < 1000 ? 0 : 1);
            RemoteScratch.Read(Tracee.Tid, doneAt, marker);
            if (BitConverter.ToInt64(marker) == 1) return;
            if (round % 16 == 15 && Tracee.PollCore() is { } stop)
                throw InjectionException.UnexpectedStop(stop, "the end of the injected batch");
            if (clock.Elapsed > BatchTimeLimit)
            {
                Tracee.InterruptCore();
                Tracee.WaitCore(blocking: false, TimeSpan.FromSeconds(5));
                throw new InjectionException(Tracee.Tid, $"an injected batch of syscalls did not finish within {BatchTimeLimit.TotalSeconds:0} s");
            }
        }
    }

    private static readonly TimeSpan BatchTimeLimit = TimeSpan.FromSeconds(10);

    // Read-write-execute scratch for batches, mapped once per session (grown when a larger batch comes); 0
    // when the kernel refuses such a mapping in this task.
    private ulong BatchAreaCore(int length)
    {
        if (_batchRefused) return 0;
        if (_batchArea != 0 && _batchAreaSize >= length) return _batchArea;
        int size = (length + PageSize - 1) / PageSize * PageSize;
        long address = SyscallCore(SyscallNumbers.mmap, 0, size, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (address is < 0 and >= -4095)
        {
            Log.Debug($"{Tracee.Tid}: injection: no executable scratch ({Errno.FromRawReturn(address).Name}), syscalls run one by one");
            _batchRefused = true;
            return 0;
        }
        _scratch.Add(((ulong)address, size));
        _batchArea = (ulong)address;
        _batchAreaSize = size;
        return _batchArea;
    }

    private void CheckScratch(ulong address, int length)
    {
        foreach (var (start, size) in _scratch)
            if (address >= start && address + (ulong)length <= start + (ulong)size) return;
        throw new ArgumentOutOfRangeException(nameof(address), $"0x{address:x}+{length} is not inside scratch memory of this session");
    }

    private static ulong FindVdsoSyscallCore(Tracee tracee)
    {
        string maps = File.ReadAllText($"/proc/{tracee.Tid}/maps");
        foreach (var line in maps.AsSpan().EnumerateLines())
        {
            if (!line.EndsWith("[vdso]")) continue;
            int dash = line.IndexOf('-'), space = line.IndexOf(' ');
            ulong start = ulong.Parse(line[..dash], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            ulong end = ulong.Parse(line[(dash + 1)..space], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (end <= start || end - start > 1 << 20)
                throw new InjectionException(tracee.Tid, $"implausible [vdso] range {line}");
            var code = new byte[end - start];
            RemoteScratch.Read(tracee.Tid, start, code);
            int at = code.AsSpan().IndexOf(InjectionGadget.Syscall);
            if (at < 0) throw new InjectionException(tracee.Tid, "no syscall instruction in [vdso]");
            return start + (ulong)at;
        }
        throw new InjectionException(tracee.Tid, "task has no [vdso] mapping");
    }
}
