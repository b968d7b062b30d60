// Socket state from the kernel's sock_diag netlink interface (sock_diag(7), NETLINK_SOCK_DIAG,
// Linux 3.3): one SOCK_DIAG_BY_FAMILY dump request, answered by a stream of messages that ends
// with NLMSG_DONE. UNIX_DIAG (CONFIG_UNIX_DIAG) lists unix sockets with the attributes asked for
// in udiag_show; INET_DIAG (CONFIG_INET_DIAG, tcp_diag/udp_diag) lists TCP or UDP sockets of one
// family with inet_diag_req_v2. A message with NLM_F_DUMP_INTR means the socket tables changed
// during the dump; the dump is then repeated (a few times) so the caller sees one consistent set.
using System.Buffers.Binary;
using System.Net;
using System.Runtime.InteropServices;
using Crest.Kernel.Files;
using Crest.Kernel.Interop;
using Crest.Kernel.Sockets;
using static Crest.Kernel.Interop.NetlinkConstants;

namespace Crest.Kernel.Netlink;

public static class SockDiag
{
    /// <summary>All TCP states (idiag_states / udiag_states is a bit per state).</summary>
    public const uint AllStates = 0xFFFFFFFF;

    private const int ReceiveBufferSize = 64 * 1024;   // the kernel fills at most 32 KiB per dump round
    private const int DumpAttempts = 4;
    private static int _sequence;

    private delegate void PayloadHandler(ReadOnlySpan<byte> payload);

    /// <summary>Every unix socket in Crest's network namespace, with name, vfs, peer, icons, queue
    /// lengths, shutdown and uid.</summary>
    public static unsafe List<UnixSocketInfo> DumpUnix(uint states = AllStates)
    {
        var request = new unix_diag_req
        {
            sdiag_family = Libc.AF_UNIX,
            udiag_states = states,
            udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS |
                         UDIAG_SHOW_RQLEN | UDIAG_SHOW_UID,
        };
        var result = new List<UnixSocketInfo>();
        Dump("sock_diag(UNIX_DIAG)", MemoryMarshal.AsBytes(new ReadOnlySpan<unix_diag_req>(in request)),
            result.Clear, payload => result.Add(ParseUnix(payload)));
        return result;
    }

    /// <summary>Every TCP or UDP socket of one family (Inet or Inet6; protocol 6 or 17) in Crest's
    /// network namespace whose state bit is in states.</summary>
    public static List<InetSocketInfo> DumpInet(SocketFamily family, int protocol, uint states = AllStates)
    {
        if (family is not (SocketFamily.Inet or SocketFamily.Inet6))
            throw new ArgumentException($"INET_DIAG dumps Inet or Inet6 sockets, not {family}", nameof(family));
        var request = new inet_diag_req_v2
        {
            sdiag_family = (byte)family,
            sdiag_protocol = checked((byte)protocol),
            idiag_states = states,
        };
        string op = $"sock_diag(INET_DIAG, {family}, {(protocol == Libc.IPPROTO_TCP ? "TCP" : protocol == Libc.IPPROTO_UDP ? "UDP" : protocol.ToString())})";
        var result = new List<InetSocketInfo>();
        Dump(op, MemoryMarshal.AsBytes(new ReadOnlySpan<inet_diag_req_v2>(in request)),
            result.Clear, payload => result.Add(ParseInet(payload, protocol)));
        return result;
    }

    private static unsafe void Dump(string operation, ReadOnlySpan<byte> body, Action restart, PayloadHandler handler)
    {
        using FileDescriptor socket = KernelSocket.Create(SocketFamily.Netlink, SocketKind.Datagram, NETLINK_SOCK_DIAG);
        byte[] buffer = new byte[ReceiveBufferSize];
        for (int attempt = 1; ; attempt++)
        {
            restart();
            uint sequence = (uint)Interlocked.Increment(ref _sequence);
            SendRequest(socket, operation, body, sequence);
            bool interrupted = ReceiveDump(socket, operation, buffer, sequence, handler);
            if (!interrupted) return;
            if (attempt == DumpAttempts)
                throw new KernelException(operation, new Errno(Errno.EAGAIN),
                    $"the socket tables kept changing: {DumpAttempts} dumps were interrupted (NLM_F_DUMP_INTR)");
        }
    }

    private static unsafe void SendRequest(FileDescriptor socket, string operation, ReadOnlySpan<byte> body, uint sequence)
    {
        int length = NLMSG_HDRLEN + body.Length;
        byte* message = stackalloc byte[length];
        var header = (nlmsghdr*)message;
        header->nlmsg_len = (uint)length;
        header->nlmsg_type = SOCK_DIAG_BY_FAMILY;
        header->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
        header->nlmsg_seq = sequence;
        header->nlmsg_pid = 0;
        body.CopyTo(new Span<byte>(message + NLMSG_HDRLEN, body.Length));
        var kernel = new sockaddr_nl { nl_family = Libc.AF_NETLINK };

        using var fd = socket.Use();
        nint n;
        while (FileDescriptor.Interrupted(n = Libc.sendto(fd.Fd, message, (nuint)length, 0, (byte*)&kernel, (uint)sizeof(sockaddr_nl)))) { }
        if (n < 0) throw new KernelException(operation, Errno.Last, "sending the dump request");
        if (n != length) throw new KernelException(operation, new Errno(Errno.EMSGSIZE), $"sent {n} of {length} request bytes");
    }

    /// <summary>Reads the reply up to NLMSG_DONE; true when some message said the dump was interrupted.</summary>
    private static unsafe bool ReceiveDump(FileDescriptor socket, string operation, byte[] buffer, uint sequence, PayloadHandler handler)
    {
        using var fd = socket.Use();
        bool interrupted = false;
        while (true)
        {
            nint n;
            fixed (byte* p = buffer)
            {
                // MSG_TRUNC makes recvfrom return the datagram's real length, so a cut one is noticed.
                while (FileDescriptor.Interrupted(n = Libc.recvfrom(fd.Fd, p, (nuint)buffer.Length, Libc.MSG_TRUNC, null, null))) { }
            }
            if (n < 0) throw new KernelException(operation, Errno.Last, "receiving the dump");
            if (n > buffer.Length)
                throw new NetlinkFormatException($"{operation}: a {n}-byte reply does not fit the {buffer.Length}-byte buffer");
            if (n == 0) throw new NetlinkFormatException($"{operation}: empty reply before NLMSG_DONE");

            var reader = new NetlinkMessageReader(buffer.AsSpan(0, (int)n));
            while (reader.TryRead(out NetlinkMessage message))
            {
                if (message.Sequence != sequence)
                    throw new NetlinkFormatException($"{operation}: reply for request {message.Sequence}, expected {sequence}");
                if ((message.Flags & NLM_F_DUMP_INTR) != 0) interrupted = true;
                switch (message.Type)
                {
                    case NLMSG_DONE:
                        // The payload is an int: 0, or a negative errno if the dump failed midway.
                        if (message.Payload.Length >= 4)
                        {
                            int status = BinaryPrimitives.ReadInt32LittleEndian(message.Payload);
                            if (status < 0) throw new KernelException(operation, new Errno(-status), "dump ended with an error");
                        }
                        return interrupted;
                    case NLMSG_ERROR:
                        if (message.Payload.Length < 4)
                            throw new NetlinkFormatException($"{operation}: NLMSG_ERROR with a {message.Payload.Length}-byte payload");
                        int error = BinaryPrimitives.ReadInt32LittleEndian(message.Payload);
                        if (error == 0) return interrupted; // an acknowledgement ends the exchange too
                        throw new KernelException(operation, new Errno(-error));
                    case NLMSG_NOOP:
                        break;
                    case SOCK_DIAG_BY_FAMILY:
                        handler(message.Payload);
                        break;
                    default:
                        throw new NetlinkFormatException($"{operation}: unexpected message type {message.Type}");
                }
            }
        }
    }

    /// <summary>Decodes one UNIX_DIAG reply payload: struct unix_diag_msg, then attributes.</summary>
    internal static unsafe UnixSocketInfo ParseUnix(ReadOnlySpan<byte> payload)
    {
        int fixedSize = sizeof(unix_diag_msg);
        if (payload.Length < fixedSize)
            throw new NetlinkFormatException($"UNIX_DIAG: a {payload.Length}-byte message is shorter than unix_diag_msg ({fixedSize})");
        unix_diag_msg m = MemoryMarshal.Read<unix_diag_msg>(payload);
        byte[]? name = null;
        uint vfsInode = 0, vfsDevice = 0, peer = 0, rq = 0, wq = 0;
        uint? uid = null;
        byte shutdown = 0;
        uint[] icons = [];

        var attributes = new NetlinkAttributeReader(payload[NetlinkConstants.NLMSG_ALIGN(fixedSize)..]);
        while (attributes.TryRead(out ushort type, out ReadOnlySpan<byte> value))
        {
            switch (type)
            {
                case UNIX_DIAG_NAME:
                    name = value.ToArray();
                    break;
                case UNIX_DIAG_VFS:
                    Need(value, 8, "UNIX_DIAG_VFS");
                    vfsInode = BinaryPrimitives.ReadUInt32LittleEndian(value);
                    vfsDevice = BinaryPrimitives.ReadUInt32LittleEndian(value[4..]);
                    break;
                case UNIX_DIAG_PEER:
                    Need(value, 4, "UNIX_DIAG_PEER");
                    peer = BinaryPrimitives.ReadUInt32LittleEndian(value);
                    break;
                case UNIX_DIAG_ICONS:
                    if (value.Length % 4 != 0)
                        throw new NetlinkFormatException($"UNIX_DIAG_ICONS: {value.Length} bytes is not a whole number of inodes");
                    icons = MemoryMarshal.Cast<byte, uint>(value).ToArray();
                    break;
                case UNIX_DIAG_RQLEN:
                    Need(value, 8, "UNIX_DIAG_RQLEN");
                    rq = BinaryPrimitives.ReadUInt32LittleEndian(value);
                    wq = BinaryPrimitives.ReadUInt32LittleEndian(value[4..]);
                    break;
                case UNIX_DIAG_SHUTDOWN:
                    Need(value, 1, "UNIX_DIAG_SHUTDOWN");
                    shutdown = value[0];
                    break;
                case UNIX_DIAG_UID:
                    Need(value, 4, "UNIX_DIAG_UID");
                    uid = BinaryPrimitives.ReadUInt32LittleEndian(value);
                    break;
            }
        }

        return new UnixSocketInfo
        {
            Inode = m.udiag_ino,
            Kind = (SocketKind)m.udiag_type,
            State = (SocketState)m.udiag_state,
            Cookie = m.udiag_cookie0 | (ulong)m.udiag_cookie1 << 32,
            Name = name,
            VfsInode = vfsInode,
            VfsDevice = vfsDevice,
            PeerInode = peer,
            PendingConnections = icons,
            ReceiveQueue = rq,
            SendQueue = wq,
            Shutdown = shutdown,
            Uid = uid,
        };
    }

    /// <summary>Decodes one INET_DIAG reply payload: struct inet_diag_msg, then attributes.</summary>
    internal static unsafe InetSocketInfo ParseInet(ReadOnlySpan<byte> payload, int protocol)
    {
        int fixedSize = sizeof(inet_diag_msg);
        if (payload.Length < fixedSize)
            throw new NetlinkFormatException($"INET_DIAG: a {payload.Length}-byte message is shorter than inet_diag_msg ({fixedSize})");
        inet_diag_msg m = MemoryMarshal.Read<inet_diag_msg>(payload);
        var family = (SocketFamily)m.idiag_family;
        int addressLength = family switch
        {
            SocketFamily.Inet => 4,
            SocketFamily.Inet6 => 16,
            _ => throw new NetlinkFormatException($"INET_DIAG: socket family {m.idiag_family} is neither AF_INET nor AF_INET6"),
        };
        byte? shutdown = null;
        var attributes = new NetlinkAttributeReader(payload[NetlinkConstants.NLMSG_ALIGN(fixedSize)..]);
        while (attributes.TryRead(out ushort type, out ReadOnlySpan<byte> value))
        {
            if (type == INET_DIAG_SHUTDOWN)
            {
                Need(value, 1, "INET_DIAG_SHUTDOWN");
                shutdown = value[0];
            }
        }

        return new InetSocketInfo
        {
            Family = family,
            Protocol = protocol,
            State = (SocketState)m.idiag_state,
            Timer = m.idiag_timer,
            Retransmits = m.idiag_retrans,
            SourceAddress = new IPAddress(new ReadOnlySpan<byte>(m.id.idiag_src, addressLength)),
            SourcePort = BinaryPrimitives.ReverseEndianness(m.id.idiag_sport),
            DestinationAddress = new IPAddress(new ReadOnlySpan<byte>(m.id.idiag_dst, addressLength)),
            DestinationPort = BinaryPrimitives.ReverseEndianness(m.id.idiag_dport),
            Interface = m.id.idiag_if,
            Cookie = m.id.idiag_cookie0 | (ulong)m.id.idiag_cookie1 << 32,
            Expires = m.idiag_expires,
            ReceiveQueue = m.idiag_rqueue,
            SendQueue = m.idiag_wqueue,
            Uid = m.idiag_uid,
            Inode = m.idiag_inode,
            Shutdown = shutdown,
        };
    }

    private static void Need(ReadOnlySpan<byte> value, int length, string attribute)
    {
        if (value.Length < length)
            throw new NetlinkFormatException($"{attribute}: {value.Length} bytes, need {length}");
    }
}
