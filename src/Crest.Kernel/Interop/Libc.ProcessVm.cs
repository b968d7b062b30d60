// process_vm_readv(2) / process_vm_writev(2) (Linux 3.2): copy between our memory and another
// task's without stopping it. Both take at most IOV_MAX iovecs per side per call, copy at most
// MAX_RW_COUNT (INT_MAX rounded down to a page) bytes per call, and on a remote page that cannot
// be reached return the count copied so far (a short count, which may split an iovec at a page
// boundary); only a fault at the very first byte is reported as -1 with errno.
using System.Runtime.InteropServices;

namespace Crest.Kernel.Interop;

internal static unsafe partial class Libc
{
    internal const int IOV_MAX = 1024;

    /// <summary>The most bytes one read/write-like call transfers: INT_MAX &amp; PAGE_MASK.</summary>
    internal const long MAX_RW_COUNT = 0x7FFFF000;

    /// <summary>process_vm_readv(2). flags must be 0.</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial nint process_vm_readv(int pid, iovec* local_iov, ulong liovcnt, iovec* remote_iov, ulong riovcnt, ulong flags);

    /// <summary>process_vm_writev(2). flags must be 0.</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial nint process_vm_writev(int pid, iovec* local_iov, ulong liovcnt, iovec* remote_iov, ulong riovcnt, ulong flags);
}

#pragma warning disable CS8981 // kernel struct names are lower case, as in C
/// <summary>struct iovec (readv(2)).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct iovec
{
    public nint iov_base;
    public nuint iov_len;
}
