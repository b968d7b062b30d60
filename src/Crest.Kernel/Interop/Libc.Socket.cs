// socket(2), socketpair(2), bind(2), connect(2), listen(2), accept4(2), sendmsg(2)/recvmsg(2)
// (SCM_RIGHTS control messages, unix(7)), sendto(2)/recvfrom(2), getsockopt(2)/setsockopt(2),
// getsockname(2)/getpeername(2), shutdown(2).
using System.Runtime.InteropServices;

namespace Crest.Kernel.Interop;

internal static unsafe partial class Libc
{
    internal const int AF_UNSPEC = 0, AF_UNIX = 1, AF_INET = 2, AF_INET6 = 10, AF_NETLINK = 16, AF_PACKET = 17;

    internal const int SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_RAW = 3, SOCK_SEQPACKET = 5,
        SOCK_NONBLOCK = 0x800, SOCK_CLOEXEC = 0x80000;

    internal const int IPPROTO_IP = 0, IPPROTO_TCP = 6, IPPROTO_UDP = 17, IPPROTO_IPV6 = 41;

    internal const int SOL_SOCKET = 1, SOL_TCP = 6, SOL_IPV6 = 41, SOL_NETLINK = 270;

    internal const int SO_DEBUG = 1, SO_REUSEADDR = 2, SO_TYPE = 3, SO_ERROR = 4, SO_DONTROUTE = 5,
        SO_BROADCAST = 6, SO_SNDBUF = 7, SO_RCVBUF = 8, SO_KEEPALIVE = 9, SO_OOBINLINE = 10, SO_NO_CHECK = 11,
        SO_PRIORITY = 12, SO_LINGER = 13, SO_BSDCOMPAT = 14, SO_REUSEPORT = 15, SO_PASSCRED = 16,
        SO_PEERCRED = 17, SO_RCVLOWAT = 18, SO_SNDLOWAT = 19, SO_RCVTIMEO = 20, SO_SNDTIMEO = 21,
        SO_BINDTODEVICE = 25, SO_ATTACH_FILTER = 26, SO_PEEK_OFF = 42, SO_ACCEPTCONN = 30, SO_SNDBUFFORCE = 32,
        SO_RCVBUFFORCE = 33, SO_PASSSEC = 34, SO_MARK = 36, SO_PROTOCOL = 38, SO_DOMAIN = 39;

    internal const int SCM_RIGHTS = 1, SCM_CREDENTIALS = 2;

    /// <summary>The most descriptors one SCM_RIGHTS message carries (include/net/scm.h).</summary>
    internal const int SCM_MAX_FD = 253;

    internal const int MSG_OOB = 1, MSG_PEEK = 2, MSG_DONTROUTE = 4, MSG_CTRUNC = 8, MSG_TRUNC = 0x20,
        MSG_DONTWAIT = 0x40, MSG_EOR = 0x80, MSG_WAITALL = 0x100, MSG_NOSIGNAL = 0x4000,
        MSG_CMSG_CLOEXEC = 0x40000000;

    internal const int SHUT_RD = 0, SHUT_WR = 1, SHUT_RDWR = 2;

    /// <summary>socket(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int socket(int domain, int type, int protocol);

    /// <summary>socketpair(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int socketpair(int domain, int type, int protocol, int* sv);

    /// <summary>bind(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int bind(int sockfd, byte* addr, uint addrlen);

    /// <summary>connect(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int connect(int sockfd, byte* addr, uint addrlen);

    /// <summary>listen(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int listen(int sockfd, int backlog);

    /// <summary>accept4(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int accept4(int sockfd, byte* addr, uint* addrlen, int flags);

    /// <summary>sendmsg(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial nint sendmsg(int sockfd, msghdr* msg, int flags);

    /// <summary>recvmsg(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial nint recvmsg(int sockfd, msghdr* msg, int flags);

    /// <summary>sendto(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial nint sendto(int sockfd, byte* buf, nuint len, int flags, byte* dest_addr, uint addrlen);

    /// <summary>recvfrom(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial nint recvfrom(int sockfd, byte* buf, nuint len, int flags, byte* src_addr, uint* addrlen);

    /// <summary>getsockopt(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int getsockopt(int sockfd, int level, int optname, byte* optval, uint* optlen);

    /// <summary>setsockopt(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int setsockopt(int sockfd, int level, int optname, byte* optval, uint optlen);

    /// <summary>getsockname(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int getsockname(int sockfd, byte* addr, uint* addrlen);

    /// <summary>getpeername(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int getpeername(int sockfd, byte* addr, uint* addrlen);

    /// <summary>shutdown(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int shutdown(int sockfd, int how);

    /// <summary>CMSG_ALIGN: control messages are aligned to sizeof(size_t).</summary>
    internal static nuint CMSG_ALIGN(nuint len) => (len + 7) & ~(nuint)7;

    /// <summary>CMSG_SPACE: room one control message with len bytes of data takes.</summary>
    internal static nuint CMSG_SPACE(nuint len) => CMSG_ALIGN((nuint)sizeof(cmsghdr)) + CMSG_ALIGN(len);

    /// <summary>CMSG_LEN: the cmsg_len of a control message with len bytes of data.</summary>
    internal static nuint CMSG_LEN(nuint len) => CMSG_ALIGN((nuint)sizeof(cmsghdr)) + len;
}

#pragma warning disable CS8981 // kernel struct names are lower case, as in C
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

/// <summary>struct cmsghdr (x86_64: 16 bytes, data follows aligned to 8).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct cmsghdr
{
    public nuint cmsg_len;
    public int cmsg_level;
    public int cmsg_type;
}
