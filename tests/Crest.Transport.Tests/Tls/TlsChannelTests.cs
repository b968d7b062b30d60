using System.Net;
using System.Net.Sockets;
using Crest.Transport.Tls;

namespace Crest.Transport.Tests.Tls;

public sealed class TlsChannelTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly TestPki _pki = new();

    public void Dispose() => _pki.Dispose();

    /// <summary>Runs a server handshake and a client handshake over loopback; returns each side's failure (null: it worked).</summary>
    private static (Exception? Server, Exception? Client) Handshake(TlsOptions server, TlsOptions client, string clientAddress = "127.0.0.1", string? serverAddress = null)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        Exception? serverError = null, clientError = null;
        var serverTask = Task.Run(() =>
        {
            using var socket = listener.AcceptSocket();
            try
            {
                using var ssl = TlsChannel.Accept(new NetworkStream(socket, ownsSocket: false), serverAddress, server, Timeout);
                var buffer = new byte[5];
                ssl.ReadExactly(buffer);
                ssl.Write(buffer);
                ssl.Flush();
            }
            catch (Exception e) { serverError = e; }
        });
        using (var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            socket.Connect(IPAddress.Loopback, port);
            try
            {
                using var ssl = TlsChannel.Connect(new NetworkStream(socket, ownsSocket: false), clientAddress, client, Timeout);
                ssl.Write("hello"u8);
                ssl.Flush();
                var echo = new byte[5];
                ssl.ReadExactly(echo);
                Assert.Equal("hello"u8.ToArray(), echo);
            }
            catch (Exception e) { clientError = e; }
        }
        serverTask.Wait(Timeout);
        return (serverError, clientError);
    }

    private TlsOptions Options(string name, string file, string? crl = null, bool noCn = false)
    {
        var (cert, key) = _pki.Issue(name, file);
        return new TlsOptions { CaCert = _pki.CaCert, Cert = cert, Key = key, CaCrl = crl, NoCnVerify = noCn };
    }

    [Fact]
    public void BothEndsTrustTheTestCaAndDataFlows()
    {
        var (server, client) = Handshake(Options("127.0.0.1", "server"), Options("127.0.0.1", "client"));
        Assert.Null(server);
        Assert.Null(client);
    }

    [Fact]
    public void ServerCertificateNamingAnotherAddressIsRefusedUnlessNoCnVerify()
    {
        var (_, client) = Handshake(Options("10.99.0.1", "server"), Options("127.0.0.1", "client"));
        var e = Assert.IsType<TlsException>(client);
        Assert.Contains("does not name 127.0.0.1", e.Message);

        var (server2, client2) = Handshake(Options("10.99.0.1", "server2"), Options("127.0.0.1", "client2", noCn: true));
        Assert.Null(server2);
        Assert.Null(client2);
    }

    [Fact]
    public void ServerWithAnAddressChecksTheClientCertificateAgainstIt()
    {
        var (server, _) = Handshake(Options("127.0.0.1", "server"), Options("10.99.0.2", "client"), serverAddress: "127.0.0.1");
        Assert.IsType<TlsException>(server);
        var (server2, client2) = Handshake(Options("127.0.0.1", "server2", noCn: true), Options("10.99.0.2", "client2"), serverAddress: "127.0.0.1");
        Assert.Null(server2);
        Assert.Null(client2);
    }

    [Fact]
    public void CertificateFromAnotherCaIsRefused()
    {
        using var other = new TestPki("Another CA");
        var (cert, key) = other.Issue("127.0.0.1", "stranger");
        var stranger = new TlsOptions { CaCert = other.CaCert, Cert = cert, Key = key };
        var (_, client) = Handshake(stranger, Options("127.0.0.1", "client"));
        var e = Assert.IsType<TlsException>(client);
        Assert.Contains("not trusted", e.Message);
    }

    [Fact]
    public void RevokedClientCertificateIsRefusedByTheServer()
    {
        var (cert, key) = _pki.Issue("127.0.0.1", "revoked", revoke: true);
        string crl = _pki.WriteCrl();
        var (server, _) = Handshake(Options("127.0.0.1", "server", crl: crl), new TlsOptions { CaCert = _pki.CaCert, Cert = cert, Key = key });
        var e = Assert.IsType<TlsException>(server);
        Assert.Contains("revoked", e.Message);
    }

    [Fact]
    public void MissingKeyFileIsAClearError()
    {
        var options = new TlsOptions { CaCert = _pki.CaCert, Cert = "/nonexistent/cert.pem", Key = "/nonexistent/key.pem" };
        var e = Assert.Throws<TlsException>(() => TlsChannel.Connect(Stream.Null, "127.0.0.1", options, Timeout));
        Assert.Contains("/nonexistent/cert.pem", e.Message);
    }
}
