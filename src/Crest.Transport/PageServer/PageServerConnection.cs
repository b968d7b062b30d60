// The TCP connection (optionally TLS) a dump (PageServerClient) or a lazy-pages daemon (LazyPageClient) opens to
// a page server: the address resolved, the connect and the TLS handshake bounded by one timeout, and the
// connection given the peer timeout of every transport socket (TcpPeerTimeout).
using System.Net;
using System.Net.Sockets;
using Crest.Transport.Tls;

namespace Crest.Transport.PageServer;

internal static class PageServerConnection
{
    /// <summary>Connects to <paramref name="address"/>:<paramref name="port"/>. Sends and receives time out after
    /// <paramref name="ioTimeout"/>; <paramref name="receiveBufferSize"/> 0 keeps the system's default. The caller owns
    /// both the socket and the stream (which does not own the socket).</summary>
    /// <exception cref="PageServerException">The address does not resolve, the connect or handshake failed or took too long.</exception>
    public static (string Name, Socket Socket, Stream Stream) Connect(string address, int port, TlsOptions? tls, TimeSpan timeout,
        TimeSpan ioTimeout, int receiveBufferSize = 0)
    {
        string name = $"page server {address}:{port}";
        IPAddress ip;
        try
        {
            ip = IPAddress.TryParse(address, out var parsed) ? parsed : Dns.GetHostAddresses(address)[0];
        }
        catch (Exception e) when (e is SocketException or IndexOutOfRangeException or ArgumentException)
        {
            throw new PageServerException($"Can't resolve the address of the {name}: {e.Message}", e);
        }
        var socket = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp)
        {
            NoDelay = true,
            SendTimeout = (int)ioTimeout.TotalMilliseconds,
            ReceiveTimeout = (int)ioTimeout.TotalMilliseconds,
        };
        try
        {
            if (receiveBufferSize > 0) socket.ReceiveBufferSize = receiveBufferSize;
            TcpPeerTimeout.Apply(socket);
            var connecting = socket.ConnectAsync(new IPEndPoint(ip, port));
            if (!connecting.Wait(timeout))
                throw new PageServerException($"Can't connect to the {name}: no answer within {timeout.TotalSeconds:0.#} s");
            Stream stream = new NetworkStream(socket, ownsSocket: false);
            if (tls is not null)
            {
                try
                {
                    stream = TlsChannel.Connect(stream, address, tls, timeout);
                }
                catch (TlsException e)
                {
                    throw new PageServerException($"Can't connect to the {name}: {e.Message}", e);
                }
            }
            return (name, socket, stream);
        }
        catch (AggregateException e) when (e.InnerException is SocketException s)
        {
            socket.Dispose();
            throw new PageServerException($"Can't connect to the {name}: {s.Message}", s);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Fills <paramref name="buffer"/> from <paramref name="connection"/>; the end of the stream is a
    /// PageServerException that says the peer closed instead of sending <paramref name="what"/>.</summary>
    public static void ReadExactly(Stream connection, Span<byte> buffer, string name, string what)
    {
        try
        {
            connection.ReadExactly(buffer);
        }
        catch (EndOfStreamException e)
        {
            throw new PageServerException($"the {name} closed the connection instead of sending {what}", e);
        }
    }
}
