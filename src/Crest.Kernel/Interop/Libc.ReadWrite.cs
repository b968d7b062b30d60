// read(2), write(2), pread(2), pwrite(2), fsync(2). They may be interrupted by a signal before transferring
// anything (EINTR); the managed FileDescriptor retries that in one place.
using System.Runtime.InteropServices;

namespace Crest.Kernel.Interop;

internal static unsafe partial class Libc
{
    /// <summary>read(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial nint read(int fd, byte* buf, nuint count);

    /// <summary>write(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial nint write(int fd, byte* buf, nuint count);

    /// <summary>pread(2) (pread64 on x86_64: off_t is 64-bit).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial nint pread(int fd, byte* buf, nuint count, long offset);

    /// <summary>pwrite(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial nint pwrite(int fd, byte* buf, nuint count, long offset);

    /// <summary>fsync(2): file data and metadata reach the disk; on a directory, its entries do.</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int fsync(int fd);
}
