using System.Net;
using System.Text;
using Crest.Kernel.Files;
using Crest.Kernel.Interop;
using Crest.Kernel.Sockets;

namespace Crest.Kernel.Tests.Sockets;

public class KernelSocketTests
{
    [Fact]
    public void TcpOnLoopbackConnectsAcceptsAndTalks()
    {
        using FileDescriptor listener = KernelSocket.Create(SocketFamily.Inet, SocketKind.Stream);
        KernelSocket.SetOptionInt32(listener, Libc.SOL_SOCKET, Libc.SO_REUSEADDR, 1);
        KernelSocket.Bind(listener, SockAddr.Inet(IPAddress.Loopback, 0));
        KernelSocket.Listen(listener, 8);
        var (address, port) = SockAddr.ParseInet(KernelSocket.GetSockName(listener));
        Assert.Equal(IPAddress.Loopback, address);
        Assert.NotEqual(0, port);
        Assert.Equal(1, KernelSocket.GetOptionInt32(listener, Libc.SOL_SOCKET, Libc.SO_ACCEPTCONN));
        Assert.Equal(Libc.SOCK_STREAM, KernelSocket.GetOptionInt32(listener, Libc.SOL_SOCKET, Libc.SO_TYPE));
        Assert.Equal(1, KernelSocket.GetOptionInt32(listener, Libc.SOL_SOCKET, Libc.SO_REUSEADDR));

        using FileDescriptor client = KernelSocket.Create(SocketFamily.Inet, SocketKind.Stream);
        KernelSocket.Connect(client, SockAddr.Inet(IPAddress.Loopback, port));
        using FileDescriptor server = KernelSocket.Accept(listener);
        Assert.True(server.CloseOnExec);
        Assert.Equal(SockAddr.ParseInet(KernelSocket.GetSockName(client)), SockAddr.ParseInet(KernelSocket.GetPeerName(server)));

        client.WriteAll("ping"u8);
        var buffer = new byte[4];
        Assert.Equal(4, server.ReadFull(buffer));
        Assert.Equal("ping", Encoding.ASCII.GetString(buffer));

        var e = Assert.Throws<KernelException>(() => KernelSocket.Bind(client, SockAddr.Inet(IPAddress.Loopback, port)));
        Assert.Equal(Errno.EINVAL, e.Errno.Value); // already bound by connect
    }

    [Fact]
    public void UnixAddressesRoundTripThroughTheKernel()
    {
        string name = $"crest-test-{Environment.ProcessId}-{Guid.NewGuid():N}";
        using FileDescriptor s = KernelSocket.Create(SocketFamily.Unix, SocketKind.Stream);
        KernelSocket.Bind(s, SockAddr.UnixAbstract(name));
        byte[] bound = SockAddr.ParseUnix(KernelSocket.GetSockName(s));
        Assert.Equal(0, bound[0]);
        Assert.Equal(name, Encoding.UTF8.GetString(bound, 1, bound.Length - 1));

        string dir = Directory.CreateTempSubdirectory("crest-sock-").FullName;
        try
        {
            string path = Path.Combine(dir, "s");
            using FileDescriptor p = KernelSocket.Create(SocketFamily.Unix, SocketKind.Datagram);
            KernelSocket.Bind(p, SockAddr.Unix(path));
            Assert.Equal(path, Encoding.UTF8.GetString(SockAddr.ParseUnix(KernelSocket.GetSockName(p))));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Ipv6AddressesRoundTrip()
    {
        using FileDescriptor s = KernelSocket.Create(SocketFamily.Inet6, SocketKind.Datagram);
        KernelSocket.Bind(s, SockAddr.Inet(IPAddress.IPv6Loopback, 0));
        var (address, port) = SockAddr.ParseInet(KernelSocket.GetSockName(s));
        Assert.Equal(IPAddress.IPv6Loopback, address);
        Assert.NotEqual(0, port);
    }
}
