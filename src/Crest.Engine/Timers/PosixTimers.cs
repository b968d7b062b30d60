// POSIX timers of a process (timer_create(2)), kept in core tc.timers.posix as CRIU keeps them.
//
// Dump: /proc/PID/timers (Linux 3.10, CONFIG_CHECKPOINT_RESTORE) gives each timer's id, clock and how it
// notifies (signal, sigev_value, SIGEV_SIGNAL / SIGEV_NONE / SIGEV_THREAD, with SIGEV_THREAD_ID and its tid).
// The time left and the interval only the task can ask for: timer_gettime(id) injected (relative, also for a
// timer armed with TIMER_ABSTIME), and timer_getoverrun(id) injected.
//
// Restore: prctl(PR_TIMER_CREATE_RESTORE_IDS, ON) (Linux 6.15) makes timer_create read the id it is to
// hand out from *created_timer_id (kernel/time/posix-timers.c do_timer_create: copy_from_user of req_id,
// then posix_timer_add at exactly that id, -EBUSY if taken); then OFF again, and timer_settime with the time
// that was left (relative) and the interval. All injected, after the signal handlers, before credentials.
// The overrun count cannot be set again; it is kept in the image and logged only.
using System.Buffers.Binary;
using Crest.Diagnostics;
using Crest.Engine.Restore;
using Crest.Images.Protos;
using Crest.Kernel;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Injection;
using Crest.Kernel.Proc;

namespace Crest.Engine.Timers;

/// <summary>One POSIX timer as dumped: what /proc says and what timer_gettime / timer_getoverrun said.</summary>
internal readonly record struct PosixTimer(PosixTimerInfo Info, ulong IntervalSec, ulong IntervalNsec, ulong ValueSec, ulong ValueNsec, int Overrun);

internal static class PosixTimers
{
    private const long PR_TIMER_CREATE_RESTORE_IDS = 77, PR_TIMER_CREATE_RESTORE_IDS_OFF = 0, PR_TIMER_CREATE_RESTORE_IDS_ON = 1;
    private const int SigeventSize = 64, ItimerspecSize = 32;

    /// <summary>The task's POSIX timers, oldest first; <paramref name="scratch"/> holds at least 32 bytes in the task.</summary>
    public static IReadOnlyList<PosixTimer> Read(int pid, SyscallInjector remote, ulong scratch)
    {
        var listed = ProcTimers.Parse(ProcFile.ReadAll(pid, "timers"));
        var result = new List<PosixTimer>(listed.Count);
        Span<byte> its = stackalloc byte[ItimerspecSize];
        // /proc lists the newest first; restoring in creation order keeps the kernel's id counter ahead of all.
        foreach (var info in listed.OrderBy(t => t.Id))
        {
            long rc = remote.Syscall(SyscallNumbers.timer_gettime, info.Id, (long)scratch);
            if (rc < 0) throw new KernelException($"timer_gettime({info.Id}) (injected)", pid, Errno.FromRawReturn(rc));
            remote.ReadScratch(scratch, its);
            long overrun = remote.Syscall(SyscallNumbers.timer_getoverrun, info.Id);
            if (overrun < 0) throw new KernelException($"timer_getoverrun({info.Id}) (injected)", pid, Errno.FromRawReturn(overrun));
            var timer = new PosixTimer(info, U64(its, 0), U64(its, 8), U64(its, 16), U64(its, 24), (int)overrun);
            Log.Debug($"{pid}: timers: POSIX timer {info.Id} clock {info.ClockId} signal {info.Signal} notify {info.SigevNotifyValue}: " +
                $"{timer.ValueSec}.{timer.ValueNsec:000000000} s left, interval {timer.IntervalSec}.{timer.IntervalNsec:000000000} s, overrun {overrun}");
            result.Add(timer);
        }
        return result;
    }

    public static PosixTimerEntry ToEntry(PosixTimer t)
    {
        var entry = new PosixTimerEntry
        {
            ItId = (uint)t.Info.Id,
            ClockId = (uint)t.Info.ClockId,
            SiSigno = (uint)t.Info.Signal,
            ItSigevNotify = (uint)t.Info.SigevNotifyValue,
            SivalPtr = t.Info.SigevValue,
            Overrun = (uint)t.Overrun,
            Isec = t.IntervalSec,
            Insec = t.IntervalNsec,
            Vsec = t.ValueSec,
            Vnsec = t.ValueNsec,
        };
        if (t.Info.ToThread) entry.NotifyThreadId = t.Info.NotifyTarget;
        return entry;
    }

    /// <summary>Create each timer at its id, then arm it with the time it had left.</summary>
    public static void Restore(StubInjector task, CoreEntry core)
    {
        var timers = core.Tc?.Timers?.Posix;
        if (timers is null || timers.Count == 0) return;
        task.Check("prctl(PR_TIMER_CREATE_RESTORE_IDS)", "on", SyscallNumbers.prctl, PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_ON, 0, 0, 0);
        // A failure leaves the mode on, but the half-restored task is killed then anyway.
        foreach (var t in timers) Create(task, t);
        task.Check("prctl(PR_TIMER_CREATE_RESTORE_IDS)", "off", SyscallNumbers.prctl, PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_OFF, 0, 0, 0);
        foreach (var t in timers) Arm(task, t);
        Log.Info($"{task.Pid}: restore: {timers.Count} POSIX timer(s) created with their ids");
    }

    private static void Create(StubInjector task, PosixTimerEntry t)
    {
        // struct sigevent (x86_64): sigev_value at 0, sigev_signo at 8, sigev_notify at 12, sigev_notify_thread_id at 16.
        var sigevent = new byte[SigeventSize];
        BinaryPrimitives.WriteUInt64LittleEndian(sigevent, t.SivalPtr);
        BinaryPrimitives.WriteInt32LittleEndian(sigevent.AsSpan(8), (int)t.SiSigno);
        BinaryPrimitives.WriteInt32LittleEndian(sigevent.AsSpan(12), (int)t.ItSigevNotify);
        BinaryPrimitives.WriteInt32LittleEndian(sigevent.AsSpan(16), t.HasNotifyThreadId ? t.NotifyThreadId : 0);
        ulong eventAddress = task.Put(sigevent);
        var wanted = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(wanted, (int)t.ItId);
        ulong idAddress = task.Put(wanted);
        long rc = task.Check("timer_create", $"POSIX timer {t.ItId} (clock {(int)t.ClockId})", SyscallNumbers.timer_create,
            (int)t.ClockId, (long)eventAddress, (long)idAddress);
        Span<byte> got = stackalloc byte[4];
        Crest.Kernel.Memory.RemoteMemory.Read(task.Pid, idAddress, got);
        task.ResetScratch();
        int id = BinaryPrimitives.ReadInt32LittleEndian(got);
        if (rc != 0 || id != (int)t.ItId)
            throw new RestoreException($"timer_create in restored task {task.Pid} gave POSIX timer {id}, not {t.ItId}");
    }

    private static void Arm(StubInjector task, PosixTimerEntry t)
    {
        if (t.Overrun != 0) Log.Info($"{task.Pid}: restore: POSIX timer {t.ItId} had overrun {t.Overrun}; that count starts again at 0");
        if (t.Vsec == 0 && t.Vnsec == 0) return; // disarmed
        var its = new byte[ItimerspecSize];
        BinaryPrimitives.WriteUInt64LittleEndian(its, t.Isec);
        BinaryPrimitives.WriteUInt64LittleEndian(its.AsSpan(8), t.Insec);
        BinaryPrimitives.WriteUInt64LittleEndian(its.AsSpan(16), t.Vsec);
        BinaryPrimitives.WriteUInt64LittleEndian(its.AsSpan(24), t.Vnsec);
        task.Check("timer_settime", $"POSIX timer {t.ItId}", SyscallNumbers.timer_settime, t.ItId, 0, (long)task.Put(its), 0);
        task.ResetScratch();
    }

    private static ulong U64(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt64LittleEndian(b[at..]);
}
