// Where the daemons listen on the local machine. Both live in the work directory (-W), never in an
// images directory (with --remote there is none): image-proxy.sock where a dump hands its images over,
// image-cache.sock where a restore asks for them. Defaults to /run/crest when -W is not given.
using System.Net;
using System.Net.Sockets;

namespace Crest.Transport.Remote;

public static class ImageSockets
{
    public const string DefaultWorkDir = "/run/crest";
    public const string ProxySocketName = "image-proxy.sock";
    public const string CacheSocketName = "image-cache.sock";

    public static string ProxySocket(string workDir) => Path.Combine(workDir, ProxySocketName);
    public static string CacheSocket(string workDir) => Path.Combine(workDir, CacheSocketName);

    /// <summary>A listening unix socket at <paramref name="path"/>; a stale socket file left by a dead daemon is replaced,
    /// one a live daemon answers on is an error.</summary>
    public static Socket Listen(string path)
    {
        if (File.Exists(path))
        {
            using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                probe.Connect(new UnixDomainSocketEndPoint(path));
                throw new RemoteImageException($"{path} is in use by a running daemon");
            }
            catch (SocketException)
            {
                File.Delete(path);
            }
        }
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        WidenBuffers(socket);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(path));
            socket.Listen(16);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new RemoteImageException($"cannot listen on {path}: {e.Message}", e);
        }
        return socket;
    }

    public static async Task<Socket> ConnectUnixAsync(string path, string daemon, CancellationToken cancel)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        WidenBuffers(socket);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancel).ConfigureAwait(false);
            return socket;
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new RemoteImageException($"no {daemon} answers on {path} ({e.SocketErrorCode}): start `crest {daemon}` first, with the same -W", e);
        }
    }

    public static async Task<Socket> ConnectTcpAsync(EndPoint endPoint, CancellationToken cancel)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            WatchPeer(socket);
            await socket.ConnectAsync(endPoint, cancel).ConfigureAwait(false);
            return socket;
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new RemoteImageException($"cannot connect to the image-cache at {endPoint}: {e.Message}", e);
        }
    }

    /// <summary>How long a TCP peer may leave data unacknowledged, or an idle connection unanswered, before it counts as gone.</summary>
    public static readonly TimeSpan PeerTimeout = TimeSpan.FromSeconds(30);

    private const int IPPROTO_TCP = 6, TCP_USER_TIMEOUT = 18;

    /// <summary>
    /// A peer that vanishes without a word (a cable pulled, a host powered off) fails the connection within PeerTimeout:
    /// otherwise a sender retransmits for about 15 minutes (tcp_retries2) while a dump holds its tree frozen, and a
    /// reader waits for ever. TCP_USER_TIMEOUT (Linux 2.6.37) bounds data left unacknowledged; keepalive probes an
    /// idle connection. A slow but live peer is not affected: its kernel acknowledges (zero-window probes too).
    /// </summary>
    public static void WatchPeer(Socket socket)
    {
        Span<byte> timeout = stackalloc byte[sizeof(int)];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(timeout, (int)PeerTimeout.TotalMilliseconds);
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
            socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime, 10);
            socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval, 5);
            socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount, 4);
            socket.SetRawSocketOption(IPPROTO_TCP, TCP_USER_TIMEOUT, timeout);
        }
        catch (SocketException)
        {
            // Only an accepted connection that was reset already refuses options: its first read reports that.
        }
    }

    /// <summary>Unix socket buffers of the default size (208 KiB) wake the reader five times per MiB chunk: ask for
    /// 4 MiB (net.core.wmem_max caps it; a smaller one only costs speed). TCP sockets keep the kernel's autotuning.</summary>
    public const int UnixBufferSize = 4 << 20;

    private static void WidenBuffers(Socket socket)
    {
        try
        {
            socket.SendBufferSize = UnixBufferSize;
            socket.ReceiveBufferSize = UnixBufferSize;
        }
        catch (SocketException)
        {
            // capped or refused: the default works, slower
        }
    }

    /// <summary>An address and port as given on the command line (a name is resolved).</summary>
    public static EndPoint Resolve(string address, int port)
    {
        if (IPAddress.TryParse(address, out var ip)) return new IPEndPoint(ip, port);
        try
        {
            var found = Dns.GetHostAddresses(address);
            if (found.Length == 0) throw new RemoteImageException($"address {address} resolves to nothing");
            return new IPEndPoint(found[0], port);
        }
        catch (SocketException e)
        {
            throw new RemoteImageException($"cannot resolve {address}: {e.Message}", e);
        }
    }
}
