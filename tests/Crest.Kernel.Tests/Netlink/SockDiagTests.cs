using System.Net;
using System.Text;
using Crest.Kernel.Files;
using Crest.Kernel.Interop;
using Crest.Kernel.Netlink;
using Crest.Kernel.Sockets;

namespace Crest.Kernel.Tests.Netlink;

public class SockDiagTests
{
    [Fact]
    public void UnixDumpFindsOurSocketpairWithItsPeer()
    {
        var (left, right) = KernelSocket.CreatePair(SocketKind.Stream);
        using (left)
        using (right)
        {
            right.WriteAll("queued"u8);
            KernelSocket.Shutdown(right, Libc.SHUT_WR);
            uint leftInode = (uint)left.Stat().Inode, rightInode = (uint)right.Stat().Inode;

            List<UnixSocketInfo> all = SockDiag.DumpUnix();
            UnixSocketInfo l = Assert.Single(all, s => s.Inode == leftInode);
            UnixSocketInfo r = Assert.Single(all, s => s.Inode == rightInode);
            Assert.Equal(SocketKind.Stream, l.Kind);
            Assert.Equal(SocketState.Established, l.State);
            Assert.Equal(rightInode, l.PeerInode);
            Assert.Equal(leftInode, r.PeerInode);
            Assert.Null(l.Name);
            Assert.Equal(6u, l.ReceiveQueue);     // bytes waiting to be read on the left
            Assert.Equal(2, r.Shutdown);          // SEND_SHUTDOWN
            Assert.Equal(0u, l.Uid);
            Assert.NotEqual(0ul, l.Cookie);
        }
    }

    [Fact]
    public void UnixDumpShowsAListenersNameAndPendingConnections()
    {
        string dir = Directory.CreateTempSubdirectory("crest-diag-").FullName;
        try
        {
            string path = Path.Combine(dir, "listener");
            using FileDescriptor listener = KernelSocket.Create(SocketFamily.Unix, SocketKind.Stream);
            KernelSocket.Bind(listener, SockAddr.Unix(path));
            KernelSocket.Listen(listener, 5);
            using FileDescriptor client = KernelSocket.Create(SocketFamily.Unix, SocketKind.Stream);
            KernelSocket.Connect(client, SockAddr.Unix(path));
            using FileDescriptor onDisk = FileDescriptor.Open(path, OpenFlags.Path);

            UnixSocketInfo info = Assert.Single(SockDiag.DumpUnix(), s => s.Inode == (uint)listener.Stat().Inode);
            Assert.Equal(SocketState.Listen, info.State);
            Assert.Equal(path, info.DisplayName);
            Assert.Equal(path + "\0", Encoding.UTF8.GetString(info.Name!));
            Assert.Equal((uint)onDisk.Stat().Inode, info.VfsInode);
            Assert.Equal(onDisk.Stat().Device, info.VfsStatDevice);
            Assert.Equal((uint)client.Stat().Inode, Assert.Single(info.PendingConnections));
            Assert.Equal(1u, info.ReceiveQueue);  // one connection waiting in accept
            Assert.Equal(5u, info.SendQueue);     // the backlog maximum

            UnixSocketInfo c = Assert.Single(SockDiag.DumpUnix(), s => s.Inode == (uint)client.Stat().Inode);
            Assert.Equal(SocketState.Established, c.State);
            // Until accept, the client's peer is the embryo socket in the listener's queue, which has no inode yet.
            Assert.Equal(0u, c.PeerInode);

            using FileDescriptor accepted = KernelSocket.Accept(listener);
            List<UnixSocketInfo> after = SockDiag.DumpUnix();
            Assert.Equal((uint)accepted.Stat().Inode, Assert.Single(after, s => s.Inode == (uint)client.Stat().Inode).PeerInode);
            Assert.Equal((uint)client.Stat().Inode, Assert.Single(after, s => s.Inode == (uint)accepted.Stat().Inode).PeerInode);
            Assert.Empty(Assert.Single(after, s => s.Inode == (uint)listener.Stat().Inode).PendingConnections);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void InetDumpFindsATcpListenerAndItsConnection()
    {
        using FileDescriptor listener = KernelSocket.Create(SocketFamily.Inet, SocketKind.Stream);
        KernelSocket.Bind(listener, SockAddr.Inet(IPAddress.Loopback, 0));
        KernelSocket.Listen(listener, 4);
        ushort port = SockAddr.ParseInet(KernelSocket.GetSockName(listener)).Port;
        using FileDescriptor client = KernelSocket.Create(SocketFamily.Inet, SocketKind.Stream);
        KernelSocket.Connect(client, SockAddr.Inet(IPAddress.Loopback, port));
        ushort clientPort = SockAddr.ParseInet(KernelSocket.GetSockName(client)).Port;

        List<InetSocketInfo> tcp = SockDiag.DumpInet(SocketFamily.Inet, Libc.IPPROTO_TCP);
        InetSocketInfo l = Assert.Single(tcp, s => s.Inode == (uint)listener.Stat().Inode);
        Assert.Equal(SocketState.Listen, l.State);
        Assert.Equal(IPAddress.Loopback, l.SourceAddress);
        Assert.Equal(port, l.SourcePort);
        Assert.Equal(SocketFamily.Inet, l.Family);
        Assert.Equal(1u, l.ReceiveQueue);   // the connection not yet accepted
        Assert.Equal(4u, l.SendQueue);

        InetSocketInfo c = Assert.Single(tcp, s => s.Inode == (uint)client.Stat().Inode);
        Assert.Equal(SocketState.Established, c.State);
        Assert.Equal(clientPort, c.SourcePort);
        Assert.Equal(port, c.DestinationPort);
        Assert.Equal(IPAddress.Loopback, c.DestinationAddress);
        Assert.Equal((byte)0, c.Shutdown);

        // Only listeners, by state mask.
        Assert.All(SockDiag.DumpInet(SocketFamily.Inet, Libc.IPPROTO_TCP, 1u << (int)SocketState.Listen),
            s => Assert.Equal(SocketState.Listen, s.State));
    }

    [Fact]
    public void InetDumpFindsUdpAndIpv6Sockets()
    {
        using FileDescriptor udp = KernelSocket.Create(SocketFamily.Inet, SocketKind.Datagram);
        KernelSocket.Bind(udp, SockAddr.Inet(IPAddress.Loopback, 0));
        ushort port = SockAddr.ParseInet(KernelSocket.GetSockName(udp)).Port;
        InetSocketInfo u = Assert.Single(SockDiag.DumpInet(SocketFamily.Inet, Libc.IPPROTO_UDP), s => s.Inode == (uint)udp.Stat().Inode);
        Assert.Equal(port, u.SourcePort);
        Assert.Equal(17, u.Protocol);
        Assert.Equal(SocketState.Close, u.State);

        using FileDescriptor v6 = KernelSocket.Create(SocketFamily.Inet6, SocketKind.Stream);
        KernelSocket.Bind(v6, SockAddr.Inet(IPAddress.IPv6Loopback, 0));
        KernelSocket.Listen(v6, 1);
        InetSocketInfo l6 = Assert.Single(SockDiag.DumpInet(SocketFamily.Inet6, Libc.IPPROTO_TCP), s => s.Inode == (uint)v6.Stat().Inode);
        Assert.Equal(IPAddress.IPv6Loopback, l6.SourceAddress);
        Assert.Equal(SockAddr.ParseInet(KernelSocket.GetSockName(v6)).Port, l6.SourcePort);
    }

    [Fact]
    public void InetDumpRefusesOtherFamilies()
    {
        Assert.Throws<ArgumentException>(() => SockDiag.DumpInet(SocketFamily.Unix, Libc.IPPROTO_TCP));
    }
}
