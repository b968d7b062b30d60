// open(2), openat(2), close(2), fcntl(2), dup(2)/dup3(2), pipe2(2), tee(2), splice(2), lseek(2), ioctl(2): the file
// descriptor calls. open, fcntl and ioctl are variadic in C; on x86_64 the variadic integer
// arguments travel in the same registers as fixed ones (%al only tells the callee how many vector
// registers to spill), so fixed declarations are safe.
using System.Runtime.InteropServices;

namespace Crest.Kernel.Interop;

internal static unsafe partial class Libc
{
    internal const int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0x40, O_EXCL = 0x80, O_NOCTTY = 0x100,
        O_TRUNC = 0x200, O_APPEND = 0x400, O_NONBLOCK = 0x800, O_DSYNC = 0x1000, O_DIRECT = 0x4000,
        O_LARGEFILE = 0x8000, O_DIRECTORY = 0x10000, O_NOFOLLOW = 0x20000, O_NOATIME = 0x40000,
        O_CLOEXEC = 0x80000, O_SYNC = 0x101000, O_PATH = 0x200000, O_TMPFILE = 0x410000;

    internal const int AT_FDCWD = -100;

    internal const int F_DUPFD = 0, F_GETFD = 1, F_SETFD = 2, F_GETFL = 3, F_SETFL = 4, F_SETOWN = 8,
        F_GETOWN = 9, F_SETSIG = 10, F_GETSIG = 11, F_SETOWN_EX = 15, F_GETOWN_EX = 16, F_SETLEASE = 1024,
        F_GETLEASE = 1025, F_DUPFD_CLOEXEC = 1030, F_SETPIPE_SZ = 1031, F_GETPIPE_SZ = 1032,
        F_ADD_SEALS = 1033, F_GET_SEALS = 1034;

    internal const int FD_CLOEXEC = 1;

    internal const int SEEK_SET = 0, SEEK_CUR = 1, SEEK_END = 2, SEEK_DATA = 3, SEEK_HOLE = 4;

    /// <summary>open(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int open(byte* pathname, int flags, uint mode);

    /// <summary>openat(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int openat(int dirfd, byte* pathname, int flags, uint mode);

    /// <summary>close(2). On Linux the descriptor is released even when close reports EINTR: never retry.</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int close(int fd);

    /// <summary>fcntl(2) with an integer argument (or none).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int fcntl(int fd, int cmd, long arg);

    /// <summary>dup(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int dup(int oldfd);

    /// <summary>dup3(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int dup3(int oldfd, int newfd, int flags);

    /// <summary>pipe2(2): pipefd[0] is the read end, pipefd[1] the write end.</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int pipe2(int* pipefd, int flags);

    internal const uint SPLICE_F_NONBLOCK = 2;

    /// <summary>tee(2): duplicates up to len bytes of one pipe's buffer into another without consuming them.</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial nint tee(int fdIn, int fdOut, nuint len, uint flags);

    /// <summary>splice(2) between a pipe and another descriptor, without offsets (both at their file positions).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial nint splice(int fdIn, long* offIn, int fdOut, long* offOut, nuint len, uint flags);

    /// <summary>lseek(2) (64-bit off_t on x86_64).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial long lseek(int fd, long offset, int whence);

    /// <summary>ioctl(2) with a pointer or integer argument.</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int ioctl(int fd, ulong request, nint arg);
}
