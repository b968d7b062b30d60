// A TCP peer that vanishes without a word (a cable pulled, a host powered off) sends no reset: a sender retransmits
// for about 15 minutes (net.ipv4.tcp_retries2) and a reader waits for ever. Every TCP connection of image-proxy,
// image-cache and page-server bounds that instead: TCP_USER_TIMEOUT (tcp(7), Linux 2.6.37) for data left
// unacknowledged, keepalive probes for an idle connection. A slow but live peer is not affected: its kernel
// acknowledges what arrives (and answers zero-window probes while its application does not read).
using System.Net.Sockets;

namespace Crest.Transport;

public static class TcpPeerTimeout
{
    /// <summary>How long a peer may leave data unacknowledged, or an idle connection unanswered, before it counts as gone.</summary>
    public static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    private const int IPPROTO_TCP = 6, TCP_USER_TIMEOUT = 18;

    public static void Apply(Socket socket)
    {
        Span<byte> timeout = stackalloc byte[sizeof(int)];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(timeout, (int)Limit.TotalMilliseconds);
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
}
