// Netlink and sock_diag wire structures: netlink(7), sock_diag(7) (Linux 3.3), unix_diag
// (include/uapi/linux/unix_diag.h, Linux 3.3) and inet_diag (include/uapi/linux/inet_diag.h,
// inet_diag_req_v2 since Linux 3.3). Byte layouts are fixed by the kernel ABI; multi-byte fields
// are host order except the ports and addresses in inet_diag_sockid, which are network order.
using System.Runtime.InteropServices;

namespace Crest.Kernel.Interop;

#pragma warning disable CS8981 // kernel struct names are lower case, as in C
internal static class NetlinkConstants
{
    internal const int NETLINK_ROUTE = 0, NETLINK_SOCK_DIAG = 4;

    internal const ushort NLMSG_NOOP = 1, NLMSG_ERROR = 2, NLMSG_DONE = 3, NLMSG_OVERRUN = 4;
    internal const ushort SOCK_DIAG_BY_FAMILY = 20;

    internal const ushort NLM_F_REQUEST = 0x1, NLM_F_MULTI = 0x2, NLM_F_ACK = 0x4, NLM_F_DUMP_INTR = 0x10,
        NLM_F_ROOT = 0x100, NLM_F_MATCH = 0x200, NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;

    internal const int NLMSG_ALIGNTO = 4;
    internal static int NLMSG_ALIGN(int len) => (len + NLMSG_ALIGNTO - 1) & ~(NLMSG_ALIGNTO - 1);
    internal const int NLMSG_HDRLEN = 16;
    internal const int NLA_HDRLEN = 4;

    internal const uint UDIAG_SHOW_NAME = 0x1, UDIAG_SHOW_VFS = 0x2, UDIAG_SHOW_PEER = 0x4,
        UDIAG_SHOW_ICONS = 0x8, UDIAG_SHOW_RQLEN = 0x10, UDIAG_SHOW_MEMINFO = 0x20, UDIAG_SHOW_UID = 0x40;

    internal const ushort UNIX_DIAG_NAME = 0, UNIX_DIAG_VFS = 1, UNIX_DIAG_PEER = 2, UNIX_DIAG_ICONS = 3,
        UNIX_DIAG_RQLEN = 4, UNIX_DIAG_MEMINFO = 5, UNIX_DIAG_SHUTDOWN = 6, UNIX_DIAG_UID = 7;

    internal const ushort INET_DIAG_NONE = 0, INET_DIAG_MEMINFO = 1, INET_DIAG_INFO = 2, INET_DIAG_VEGASINFO = 3,
        INET_DIAG_CONG = 4, INET_DIAG_TOS = 5, INET_DIAG_TCLASS = 6, INET_DIAG_SKMEMINFO = 7,
        INET_DIAG_SHUTDOWN = 8, INET_DIAG_MARK = 15, INET_DIAG_CLASS_ID = 17, INET_DIAG_CGROUP_ID = 21,
        INET_DIAG_SOCKOPT = 22;

    /// <summary>Attribute types with the top bits as flags (NLA_F_NESTED, NLA_F_NET_BYTEORDER).</summary>
    internal const ushort NLA_TYPE_MASK = 0x3FFF;
}

/// <summary>struct nlmsghdr, 16 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct nlmsghdr
{
    public uint nlmsg_len;
    public ushort nlmsg_type;
    public ushort nlmsg_flags;
    public uint nlmsg_seq;
    public uint nlmsg_pid;
}

/// <summary>struct unix_diag_req, 24 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct unix_diag_req
{
    public byte sdiag_family;
    public byte sdiag_protocol;
    public ushort pad;
    public uint udiag_states;
    public uint udiag_ino;
    public uint udiag_show;
    public uint udiag_cookie0, udiag_cookie1;
}

/// <summary>struct unix_diag_msg, 16 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct unix_diag_msg
{
    public byte udiag_family;
    public byte udiag_type;
    public byte udiag_state;
    public byte pad;
    public uint udiag_ino;
    public uint udiag_cookie0, udiag_cookie1;
}

/// <summary>struct inet_diag_sockid, 48 bytes. Ports and addresses in network byte order.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct inet_diag_sockid
{
    public ushort idiag_sport;
    public ushort idiag_dport;
    public fixed byte idiag_src[16];
    public fixed byte idiag_dst[16];
    public uint idiag_if;
    public uint idiag_cookie0, idiag_cookie1;
}

/// <summary>struct inet_diag_req_v2, 56 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct inet_diag_req_v2
{
    public byte sdiag_family;
    public byte sdiag_protocol;
    public byte idiag_ext;
    public byte pad;
    public uint idiag_states;
    public inet_diag_sockid id;
}

/// <summary>struct inet_diag_msg, 72 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct inet_diag_msg
{
    public byte idiag_family;
    public byte idiag_state;
    public byte idiag_timer;
    public byte idiag_retrans;
    public inet_diag_sockid id;
    public uint idiag_expires;
    public uint idiag_rqueue;
    public uint idiag_wqueue;
    public uint idiag_uid;
    public uint idiag_inode;
}

/// <summary>struct sockaddr_nl, 12 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct sockaddr_nl
{
    public ushort nl_family;
    public ushort nl_pad;
    public uint nl_pid;
    public uint nl_groups;
}
