// The lazy-pages daemon's connection to the dump that kept the lazy pages (LazyPageServer.cs has the protocol).
// Requests of one Fetch go out together and their answers are read in order: one round trip for a fault window
// or for a background step of many scattered runs.
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Authentication;
using Crest.Images.Pages;
using Crest.Transport.Tls;
using static Crest.Transport.PageServer.PageServerProtocol;

namespace Crest.Transport.PageServer;

public sealed class LazyPageClient : IRemotePageSource
{
    /// <summary>How long an answer may take before the source counts as gone.</summary>
    public static TimeSpan IoTimeout { get; set; } = TimeSpan.FromSeconds(60);

    private readonly Socket _socket;
    private readonly Stream _connection;
    private readonly BufferedStream _out;
    private readonly byte[] _header = new byte[PageServerIov.Size];
    private bool _finished, _broken;

    private LazyPageClient(string name, Socket socket, Stream connection)
    {
        Name = name;
        _socket = socket;
        _connection = connection;
        _out = new BufferedStream(connection, 1 << 16);
    }

    public string Name { get; }

    public int PollFd => (int)_socket.Handle;

    /// <summary>Bytes received as page data.</summary>
    public long BytesReceived { get; private set; }

    public static LazyPageClient Connect(string address, int port, TlsOptions? tls, TimeSpan timeout)
    {
        var (name, socket, stream) = PageServerConnection.Connect(address, port, tls, timeout, IoTimeout, receiveBufferSize: 4 << 20);
        return new LazyPageClient(name, socket, stream);
    }

    public void Fetch(IReadOnlyList<(ulong PagemapId, ulong Vaddr, uint NrPages)> requests, Span<byte> into)
    {
        if (_broken) throw new PageServerException($"the connection to the {Name} broke earlier");
        var todo = new List<(ulong Id, ulong Vaddr, uint NrPages, int Offset)>(requests.Count);
        int offset = 0;
        foreach (var (id, vaddr, n) in requests)
        {
            todo.Add((id, vaddr, n, offset));
            offset += checked((int)n * PageSize);
        }
        if (offset > into.Length) throw new ArgumentException($"{offset} bytes requested into a buffer of {into.Length}");
        try
        {
            while (todo.Count > 0)
            {
                foreach (var (id, vaddr, n, _) in todo)
                {
                    new PageServerIov(PS_IOV_GET, n, vaddr, EncodeDstId(PagemapType.Task, id)).Write(_header);
                    _out.Write(_header);
                }
                _out.Flush();
                var rest = new List<(ulong, ulong, uint, int)>();
                foreach (var (id, vaddr, n, at) in todo)
                {
                    ReadExactly(_header, $"the answer for {n} pages at 0x{vaddr:x} of task {id}");
                    var answer = PageServerIov.Read(_header);
                    if (answer.Command != PS_IOV_ADD_F || answer.Vaddr != vaddr || answer.DstId != EncodeDstId(PagemapType.Task, id)
                        || answer.NrPages == 0 || answer.NrPages > n)
                        throw new PageServerException($"the {Name} answered {answer} to PS_IOV_GET of {n} pages at 0x{vaddr:x} of task {id}");
                    int bytes = (int)answer.NrPages * PageSize;
                    ReadExactly(into.Slice(at, bytes), $"the data of {answer.NrPages} pages at 0x{vaddr:x} of task {id}");
                    BytesReceived += bytes;
                    if (answer.NrPages < n) rest.Add((id, vaddr + (ulong)bytes, n - answer.NrPages, at + bytes));
                }
                todo = rest;
            }
        }
        catch (Exception e) when (e is IOException and not PageServerException or ObjectDisposedException or SocketException or AuthenticationException)
        {
            _broken = true;
            throw new PageServerException($"the connection to the {Name} broke: {e.InnerException?.Message ?? e.Message}{RefusalHint()}", e);
        }
        catch (PageServerException e)
        {
            _broken = true;
            if (RefusalHint() is { Length: > 0 } hint) throw new PageServerException(e.Message + hint, e);
            throw;
        }
    }

    /// <summary>Over TLS 1.3 a server that refuses the client's certificate does so after the client's handshake is
    /// done: the client sees only that its first request gets no answer.</summary>
    private string RefusalHint() => _connection is System.Net.Security.SslStream && BytesReceived == 0
        ? " (over TLS, a dump that refuses this daemon's certificate closes the connection so: the dump's log says why)"
        : "";

    public void Finish()
    {
        try
        {
            new PageServerIov(PS_IOV_CLOSE, 0, 0, 0).Write(_header);
            _out.Write(_header);
            _out.Flush();
            Span<byte> status = stackalloc byte[4];
            ReadExactly(status, "the answer to PS_IOV_CLOSE");
            int code = BinaryPrimitives.ReadInt32LittleEndian(status);
            if (code != 0) throw new PageServerException($"the {Name} answered PS_IOV_CLOSE with status {code}");
            _finished = true;
            _socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception e) when (e is IOException and not PageServerException or ObjectDisposedException or SocketException or AuthenticationException)
        {
            throw new PageServerException($"the connection to the {Name} broke at its end: {e.InnerException?.Message ?? e.Message}", e);
        }
    }

    private void ReadExactly(Span<byte> buffer, string what) => PageServerConnection.ReadExactly(_connection, buffer, Name, what);

    public void Dispose()
    {
        try
        {
            if (!_finished) _socket.Close(0);
        }
        finally
        {
            _connection.Dispose();
            _socket.Dispose();
        }
    }
}
