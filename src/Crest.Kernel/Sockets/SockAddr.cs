// Socket addresses in their kernel byte layout, as bind(2)/connect(2) take them and
// getsockname(2)/getpeername(2) return them: sockaddr_un (unix(7); an abstract name starts with a
// NUL byte), sockaddr_in (ip(7)), sockaddr_in6 (ipv6(7)). Ports and IPv4/IPv6 addresses are in
// network byte order, the family in host order.
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Crest.Kernel.Sockets;

public static class SockAddr
{
    /// <summary>Room for sun_path in sockaddr_un.</summary>
    public const int UnixPathMax = 108;

    /// <summary>The largest address getsockname and friends return (sockaddr_storage).</summary>
    public const int StorageSize = 128;

    /// <summary>A sockaddr_un for a filesystem path (with its terminating NUL).</summary>
    public static byte[] Unix(string path)
    {
        byte[] name = Encoding.UTF8.GetBytes(path);
        if (name.Length == 0 || name.Length >= UnixPathMax || name.Contains((byte)0))
            throw new ArgumentException($"a unix socket path has 1 to {UnixPathMax - 1} bytes and no NUL: \"{path}\"", nameof(path));
        var a = new byte[2 + name.Length + 1];
        BinaryPrimitives.WriteUInt16LittleEndian(a, (ushort)SocketFamily.Unix);
        name.CopyTo(a, 2);
        return a;
    }

    /// <summary>A sockaddr_un for an abstract name (sun_path[0] = NUL, then name, no terminator).</summary>
    public static byte[] UnixAbstract(string name)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(name);
        if (bytes.Length >= UnixPathMax)
            throw new ArgumentException($"an abstract unix name has at most {UnixPathMax - 1} bytes", nameof(name));
        var a = new byte[2 + 1 + bytes.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(a, (ushort)SocketFamily.Unix);
        bytes.CopyTo(a, 3);
        return a;
    }

    /// <summary>A sockaddr_in (IPv4) or sockaddr_in6 (IPv6).</summary>
    public static byte[] Inet(IPAddress address, ushort port)
    {
        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            var a = new byte[16];
            BinaryPrimitives.WriteUInt16LittleEndian(a, (ushort)SocketFamily.Inet);
            BinaryPrimitives.WriteUInt16BigEndian(a.AsSpan(2), port);
            address.TryWriteBytes(a.AsSpan(4, 4), out _);
            return a;
        }
        if (address.AddressFamily == AddressFamily.InterNetworkV6)
        {
            var a = new byte[28];
            BinaryPrimitives.WriteUInt16LittleEndian(a, (ushort)SocketFamily.Inet6);
            BinaryPrimitives.WriteUInt16BigEndian(a.AsSpan(2), port);
            address.TryWriteBytes(a.AsSpan(8, 16), out _);
            BinaryPrimitives.WriteUInt32LittleEndian(a.AsSpan(24), (uint)address.ScopeId);
            return a;
        }
        throw new ArgumentException($"not an IPv4 or IPv6 address: {address}", nameof(address));
    }

    /// <summary>The sa_family of an address.</summary>
    public static SocketFamily Family(ReadOnlySpan<byte> sockaddr)
    {
        if (sockaddr.Length < 2) throw new ArgumentException($"a socket address has at least 2 bytes, not {sockaddr.Length}", nameof(sockaddr));
        return (SocketFamily)BinaryPrimitives.ReadUInt16LittleEndian(sockaddr);
    }

    /// <summary>Address and port of a sockaddr_in / sockaddr_in6.</summary>
    public static (IPAddress Address, ushort Port) ParseInet(ReadOnlySpan<byte> sockaddr)
    {
        switch (Family(sockaddr))
        {
            case SocketFamily.Inet when sockaddr.Length >= 8:
                return (new IPAddress(sockaddr.Slice(4, 4)), BinaryPrimitives.ReadUInt16BigEndian(sockaddr[2..]));
            case SocketFamily.Inet6 when sockaddr.Length >= 28:
                return (new IPAddress(sockaddr.Slice(8, 16), BinaryPrimitives.ReadUInt32LittleEndian(sockaddr[24..])),
                    BinaryPrimitives.ReadUInt16BigEndian(sockaddr[2..]));
            default:
                throw new ArgumentException($"not a complete sockaddr_in/sockaddr_in6: family {Family(sockaddr)}, {sockaddr.Length} bytes", nameof(sockaddr));
        }
    }

    /// <summary>The sun_path bytes of a sockaddr_un as the kernel reported them: empty for an unbound
    /// socket, a leading NUL for an abstract name, a path without its terminator otherwise.</summary>
    public static byte[] ParseUnix(ReadOnlySpan<byte> sockaddr)
    {
        if (Family(sockaddr) != SocketFamily.Unix)
            throw new ArgumentException($"not a sockaddr_un: family {Family(sockaddr)}", nameof(sockaddr));
        ReadOnlySpan<byte> path = sockaddr[2..];
        if (path.Length > 0 && path[0] != 0)
        {
            int end = path.IndexOf((byte)0);
            if (end >= 0) path = path[..end];
        }
        return path.ToArray();
    }
}
