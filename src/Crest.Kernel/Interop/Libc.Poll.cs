// poll(2): the readiness of one descriptor without waiting (timeout 0).
using System.Runtime.InteropServices;

namespace Crest.Kernel.Interop;

internal static unsafe partial class Libc
{
    internal const short POLLIN = 0x1, POLLOUT = 0x4, POLLERR = 0x8, POLLHUP = 0x10;

    /// <summary>poll(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int poll(pollfd* fds, ulong nfds, int timeout);
}

#pragma warning disable CS8981 // kernel struct names are lower case, as in C
/// <summary>struct pollfd (include/uapi/asm-generic/poll.h), 8 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct pollfd
{
    public int fd;
    public short events;
    public short revents;
}
#pragma warning restore CS8981
