// A process file descriptor: pidfd_open(2) (Linux 5.3; PIDFD_THREAD 6.9), pidfd_getfd(2)
// (Linux 5.6), pidfd_send_signal(2) (Linux 5.1). A pidfd keeps naming the same task even after its
// pid is reused, which is what makes it safe to take descriptors from a task while dumping it.
// Ownership: the PidFd owns its descriptor; every descriptor GetFd returns is a new one owned by
// the caller (close-on-exec, set by the kernel).
using Crest.Kernel.Interop;

namespace Crest.Kernel.Files;

public sealed class PidFd : IDisposable
{
    private PidFd(int pid, FileDescriptor handle)
    {
        Pid = pid;
        Handle = handle;
    }

    /// <summary>The pid this pidfd was opened for.</summary>
    public int Pid { get; }

    /// <summary>The pidfd itself (owned by this object).</summary>
    public FileDescriptor Handle { get; }

    /// <summary>pidfd_open(2) for a process (thread-group leader), or any thread with thread = true.</summary>
    public static PidFd Open(int pid, bool nonBlocking = false, bool thread = false)
    {
        uint flags = (nonBlocking ? Libc.PIDFD_NONBLOCK : 0) | (thread ? Libc.PIDFD_THREAD : 0);
        int fd = Libc.pidfd_open(pid, flags);
        if (fd < 0) throw new KernelException("pidfd_open", pid, Errno.Last);
        return new PidFd(pid, FileDescriptor.Own(fd));
    }

    /// <summary>Takes ownership of <paramref name="fd"/>, a pidfd of <paramref name="pid"/> received from elsewhere (SCM_RIGHTS).</summary>
    public static PidFd Adopt(FileDescriptor fd, int pid) => new(pid, fd);

    /// <summary>pidfd_getfd(2): a duplicate of the task's descriptor targetFd, owned by the caller.</summary>
    public FileDescriptor GetFd(int targetFd)
    {
        using var pidfd = Handle.Use();
        int fd = Libc.pidfd_getfd(pidfd.Fd, targetFd, 0);
        if (fd < 0) throw new KernelException("pidfd_getfd", Pid, Errno.Last, $"fd {targetFd}");
        return FileDescriptor.Own(fd);
    }

    /// <summary>pidfd_send_signal(2) with no siginfo: like kill(pid, signal), but cannot hit a reused pid.</summary>
    public unsafe void SendSignal(int signal)
    {
        using var pidfd = Handle.Use();
        if (Libc.pidfd_send_signal(pidfd.Fd, signal, null, 0) != 0)
            throw new KernelException("pidfd_send_signal", Pid, Errno.Last, $"signal {signal}");
    }

    /// <summary>
    /// process_mrelease(2): free the address space of the task, which must be dying (SIGKILL sent), here and now,
    /// alongside its own exit. Returns the error instead of throwing: the task frees its memory anyway.
    /// </summary>
    public Errno ReleaseMemory()
    {
        using var pidfd = Handle.Use();
        return Libc.process_mrelease(pidfd.Fd, 0) == 0 ? new Errno(0) : Errno.Last;
    }

    /// <summary>process_madvise(2) of one range (MADV_COLLAPSE, MADV_COLD...): the error, or 0.</summary>
    public unsafe Errno Advise(ulong start, ulong length, int advice)
    {
        using var pidfd = Handle.Use();
        ulong* iov = stackalloc ulong[2];
        iov[0] = start;
        iov[1] = length;
        return Libc.process_madvise(pidfd.Fd, iov, 1, advice, 0) < 0 ? Errno.Last : new Errno(0);
    }

    public void Dispose() => Handle.Dispose();

    public override string ToString() => $"pidfd {Handle} for {Pid}";
}
