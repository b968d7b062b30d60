using System.Text;
using Crest.Kernel.Sockets;

namespace Crest.Kernel.Netlink;

/// <summary>One unix socket as UNIX_DIAG describes it (struct unix_diag_msg and its attributes).</summary>
public sealed record UnixSocketInfo
{
    /// <summary>The socket's inode: st_ino of fstat on a descriptor for it, "socket:[N]" in /proc/PID/fd.</summary>
    public uint Inode { get; init; }

    public SocketKind Kind { get; init; }

    public SocketState State { get; init; }

    public ulong Cookie { get; init; }

    /// <summary>UNIX_DIAG_NAME: the sun_path bytes as the kernel keeps them, null when unbound. An
    /// abstract name starts with a NUL; a path ends with the NUL the kernel counts in its length.</summary>
    public byte[]? Name { get; init; }

    /// <summary>UNIX_DIAG_VFS: for a socket bound to a path, the inode and device of that file.</summary>
    public uint VfsInode { get; init; }

    /// <summary>The kernel's internal dev_t (major &lt;&lt; 20 | minor), not the form stat(2) reports:
    /// compare with FileStatus.Device through VfsStatDevice.</summary>
    public uint VfsDevice { get; init; }

    /// <summary>VfsDevice encoded as stat(2) reports st_dev (the kernel's new_encode_dev).</summary>
    public ulong VfsStatDevice
    {
        get
        {
            uint major = VfsDevice >> 20, minor = VfsDevice & 0xFFFFF;
            return (minor & 0xFF) | (major << 8) | ((ulong)(minor & ~0xFFu) << 12);
        }
    }

    /// <summary>UNIX_DIAG_PEER: the peer socket's inode, 0 when not connected.</summary>
    public uint PeerInode { get; init; }

    /// <summary>UNIX_DIAG_ICONS: for a listener, the peer inodes of connections waiting in accept.</summary>
    public uint[] PendingConnections { get; init; } = [];

    /// <summary>UNIX_DIAG_RQLEN: for a listener the accept backlog length and its maximum; otherwise
    /// the bytes queued to read and the bytes of send buffer in use.</summary>
    public uint ReceiveQueue { get; init; }

    public uint SendQueue { get; init; }

    /// <summary>UNIX_DIAG_SHUTDOWN: sk_shutdown bits (1 RCV_SHUTDOWN, 2 SEND_SHUTDOWN).</summary>
    public byte Shutdown { get; init; }

    /// <summary>UNIX_DIAG_UID (Linux 5.3): the socket owner's uid, null when the kernel did not send it.</summary>
    public uint? Uid { get; init; }

    /// <summary>Name for people: the path, or "@name" for an abstract name, or null.</summary>
    public string? DisplayName => Name is null ? null
        : Name.Length > 0 && Name[0] == 0 ? "@" + Encoding.UTF8.GetString(Name, 1, Name.Length - 1)
        : Encoding.UTF8.GetString(Name).TrimEnd('\0');
}
