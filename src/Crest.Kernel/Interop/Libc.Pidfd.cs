// pidfd_open(2) (Linux 5.3), pidfd_getfd(2) (Linux 5.6), pidfd_send_signal(2) (Linux 5.1),
// process_mrelease(2) (Linux 5.15), process_madvise(2) (Linux 5.10; MADV_COLLAPSE through it since 6.1).
// glibc wraps them only since 2.36, so they go through syscall(2): the kernel is what matters.
using Crest.Kernel.Arch.X64;

namespace Crest.Kernel.Interop;

internal static unsafe partial class Libc
{
    /// <summary>pidfd_open flags: PIDFD_NONBLOCK is O_NONBLOCK, PIDFD_THREAD (Linux 6.9) is O_EXCL.</summary>
    internal const uint PIDFD_NONBLOCK = 0x800, PIDFD_THREAD = 0x80;

    /// <summary>pidfd_open(2): a pidfd for pid, close-on-exec. Returns -1 and errno on failure.</summary>
    internal static int pidfd_open(int pid, uint flags) => (int)syscall(SyscallNumbers.pidfd_open, pid, flags);

    /// <summary>pidfd_getfd(2): a close-on-exec duplicate of targetfd of the task behind pidfd.
    /// Needs PTRACE_MODE_ATTACH_REALCREDS over the task.</summary>
    internal static int pidfd_getfd(int pidfd, int targetfd, uint flags) =>
        (int)syscall(SyscallNumbers.pidfd_getfd, pidfd, targetfd, flags);

    /// <summary>pidfd_send_signal(2). info may be null (then it acts like kill(2)).</summary>
    internal static int pidfd_send_signal(int pidfd, int sig, void* info, uint flags) =>
        (int)syscall(SyscallNumbers.pidfd_send_signal, pidfd, sig, (long)info, flags);

    /// <summary>process_mrelease(2): free the memory of a task that is dying (SIGKILL pending or exiting) in the
    /// caller's context, as the OOM reaper does. EINVAL when the task is not dying.</summary>
    internal static int process_mrelease(int pidfd, uint flags) => (int)syscall(SyscallNumbers.process_mrelease, pidfd, flags);

    /// <summary>process_madvise(2): advice for the ranges of iovec in the task behind pidfd; the bytes advised, or -1 and errno.</summary>
    internal static long process_madvise(int pidfd, void* iovec, ulong count, int advice, uint flags) =>
        syscall(SyscallNumbers.process_madvise, pidfd, (long)iovec, (long)count, advice, flags);
}
