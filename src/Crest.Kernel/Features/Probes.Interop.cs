// Raw bindings the feature probes need: posix_spawn(3), signal(2), and thin wrappers over syscall(2)
// that read errno right after the call. Kept apart from the kernel-interop families (Interop/Libc.*)
// so the probes stand alone; every signature is blittable (DisableRuntimeMarshalling is on).
using System.Runtime.InteropServices;
using Crest.Kernel.Interop;
using Nr = Crest.Kernel.Arch.X64.SyscallNumbers;

namespace Crest.Kernel.Features;

internal static unsafe partial class FeatureInterop
{
    /// <summary>posix_spawn(3). Returns 0 or an errno value (it does not set errno).</summary>
    [LibraryImport("libc")]
    internal static partial int posix_spawn(int* pid, byte* path, void* file_actions, void* attrp, byte** argv, byte** envp);

    /// <summary>signal(2). Returns the previous handler.</summary>
    [LibraryImport("libc")]
    internal static partial nint signal(int signum, nint handler);

    internal const int SIGKILL = 9, SIGCHLD = 17;
    internal const nint SIG_DFL = 0;

    // x86_64 numbers not in Arch/X64/SyscallNumbers yet (syscall_64.tbl).
    internal const long NR_timerfd_create = 283, NR_timerfd_settime = 286, NR_epoll_ctl = 233,
        NR_epoll_create1 = 291, NR_shutdown = 48, NR_listen = 50, NR_getsockname = 51, NR_accept4 = 288,
        NR_setsockopt = 54, NR_getsockopt = 55, NR_openat2 = 437;

    /// <summary>One syscall; on failure returns -1 and the errno it left.</summary>
    internal static long Sys(long nr, out Errno errno, long a1 = 0, long a2 = 0, long a3 = 0, long a4 = 0, long a5 = 0, long a6 = 0)
    {
        long ret = Libc.syscall(nr, a1, a2, a3, a4, a5, a6);
        errno = ret == -1 ? Errno.Last : default;
        return ret;
    }

    /// <summary>close(2) of a descriptor a probe opened; a failure here is not the feature's fault.</summary>
    internal static void Close(long fd)
    {
        if (fd >= 0) Libc.syscall(Nr.close, fd);
    }

    internal const int AT_FDCWD = -100, O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CLOEXEC = 0x80000, O_NONBLOCK = 0x800;

    /// <summary>openat(AT_FDCWD, path, flags) with a NUL-terminated copy of the path.</summary>
    internal static long Open(string path, int flags, out Errno errno)
    {
        byte* buffer = stackalloc byte[path.Length * 3 + 1];
        int length = System.Text.Encoding.UTF8.GetBytes(path, new Span<byte>(buffer, path.Length * 3));
        buffer[length] = 0;
        return Sys(Nr.openat, out errno, AT_FDCWD, (long)buffer, flags | O_CLOEXEC);
    }

    internal const int PROT_READ = 1, PROT_WRITE = 2, MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20;
    internal const long PageSize = 4096;

    /// <summary>An anonymous private read-write mapping of <paramref name="pages"/> pages, or 0.</summary>
    internal static byte* MapAnonymous(int pages, out Errno errno)
    {
        long address = Sys(Nr.mmap, out errno, 0, pages * PageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return address == -1 ? null : (byte*)address;
    }

    internal static void Unmap(byte* address, int pages)
    {
        if (address != null) Libc.syscall(Nr.munmap, (long)address, pages * PageSize);
    }
}
