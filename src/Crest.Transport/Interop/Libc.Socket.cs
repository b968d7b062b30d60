// sendmsg(2)/recvmsg(2) with SCM_RIGHTS (unix(7), cmsg(3)) and poll(2): how the image-proxy lends its TCP connection to
// the image-cache to a dump (the connected socket's descriptor passed over the dump's unix socket), and how the dump
// writes into it. .NET's Socket has no way to pass a descriptor, and the descriptor's file status flags (O_NONBLOCK,
// set by .NET's async I/O in the proxy) are shared by every copy: the writer here waits in poll(2) on EAGAIN.
using System.Runtime.InteropServices;

namespace Crest.Transport.Interop;

internal static unsafe partial class Libc
{
    public const int EAGAIN = 11;
    public const int SOL_SOCKET = 1, SCM_RIGHTS = 1;
    public const int MSG_DONTWAIT = 0x40, MSG_MORE = 0x8000, MSG_NOSIGNAL = 0x4000, MSG_CTRUNC = 0x8, MSG_CMSG_CLOEXEC = 0x40000000;
    public const short POLLIN = 0x1, POLLOUT = 0x4;

    /// <summary>sendmsg(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial nint sendmsg(int sockfd, msghdr* msg, int flags);

    /// <summary>recvmsg(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial nint recvmsg(int sockfd, msghdr* msg, int flags);

    /// <summary>poll(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int poll(pollfd* fds, nuint nfds, int timeout);

    /// <summary>Room for one control message carrying one descriptor: a 16-byte cmsghdr, the int, padding to 8.</summary>
    public const int OneDescriptorControlSize = 24;

    /// <summary>Waits until <paramref name="fd"/> is ready for <paramref name="events"/> (POLLIN, POLLOUT), or an error or
    /// hang-up is pending on it (the next call reports that), or <paramref name="timeoutMs"/> passed (false); EINTR is retried.</summary>
    internal static bool WaitFor(int fd, short events, string what, int timeoutMs = -1)
    {
        var p = new pollfd { fd = fd, events = events };
        while (true)
        {
            int r = poll(&p, 1, timeoutMs);
            if (r >= 0) return r > 0;
            int errno = Marshal.GetLastPInvokeError();
            if (errno != EINTR) throw SocketFailure($"poll({what})", errno);
        }
    }

    internal static IOException SocketFailure(string call, int errno) =>
        new($"{call}: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})", errno);
}

#pragma warning disable CS8981 // kernel struct names are lower case, as in C
/// <summary>struct iovec.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct iovec
{
    public nint iov_base;
    public nuint iov_len;
}

/// <summary>struct msghdr (x86_64: 56 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct msghdr
{
    public void* msg_name;
    public uint msg_namelen;
    public iovec* msg_iov;
    public nuint msg_iovlen;
    public void* msg_control;
    public nuint msg_controllen;
    public int msg_flags;
}

/// <summary>struct cmsghdr (x86_64: 16 bytes; the data follows at once, being 8-aligned).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct cmsghdr
{
    public nuint cmsg_len;
    public int cmsg_level;
    public int cmsg_type;
}

/// <summary>struct pollfd.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct pollfd
{
    public int fd;
    public short events;
    public short revents;
}
#pragma warning restore CS8981
