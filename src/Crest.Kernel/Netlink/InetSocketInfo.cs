using System.Net;
using Crest.Kernel.Sockets;

namespace Crest.Kernel.Netlink;

/// <summary>One TCP or UDP socket as INET_DIAG describes it (struct inet_diag_msg and its attributes).</summary>
public sealed record InetSocketInfo
{
    public SocketFamily Family { get; init; }

    /// <summary>IPPROTO_TCP (6) or IPPROTO_UDP (17), as asked for.</summary>
    public int Protocol { get; init; }

    public SocketState State { get; init; }

    /// <summary>idiag_timer: 0 none, 1 retransmit, 2 keepalive, 3 TIME_WAIT, 4 zero window probe.</summary>
    public byte Timer { get; init; }

    public byte Retransmits { get; init; }

    public IPAddress SourceAddress { get; init; } = IPAddress.None;

    public ushort SourcePort { get; init; }

    public IPAddress DestinationAddress { get; init; } = IPAddress.None;

    public ushort DestinationPort { get; init; }

    /// <summary>The interface the socket is bound to, 0 when none.</summary>
    public uint Interface { get; init; }

    public ulong Cookie { get; init; }

    /// <summary>Milliseconds until the timer fires.</summary>
    public uint Expires { get; init; }

    /// <summary>For a listener the accept backlog length and its maximum; otherwise bytes queued to
    /// read (TCP: unread) and to send (TCP: unacknowledged).</summary>
    public uint ReceiveQueue { get; init; }

    public uint SendQueue { get; init; }

    public uint Uid { get; init; }

    /// <summary>The socket's inode; 0 for a TIME_WAIT or request socket that has no file.</summary>
    public uint Inode { get; init; }

    /// <summary>INET_DIAG_SHUTDOWN: sk_shutdown bits, null when the kernel did not send it.</summary>
    public byte? Shutdown { get; init; }
}
