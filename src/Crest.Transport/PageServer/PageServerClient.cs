// The dump side of CRIU's page-server protocol (PageServerProtocol.cs): one TCP connection (optionally TLS)
// to a page server, over which every task's pagemap entries and page data go. Commands and data go out
// through one buffer; the connection is flushed only where an answer is awaited (PS_IOV_OPEN2, PS_IOV_CLOSE).
using System.Buffers.Binary;
using System.Net.Sockets;
using Crest.Images.Pages;
using Crest.Transport.Tls;
using static Crest.Transport.PageServer.PageServerProtocol;

namespace Crest.Transport.PageServer;

public sealed class PageServerClient : IPageDestination, IDisposable
{
    private const int SendBufferSize = 256 << 10;

    /// <summary>How long an answer or a blocked send may take before the server counts as gone.</summary>
    public static TimeSpan IoTimeout { get; set; } = TimeSpan.FromSeconds(120);

    private readonly Socket _socket;
    private readonly Stream _connection;
    private readonly BufferedStream _out;
    private readonly byte[] _header = new byte[PageServerIov.Size];
    private bool _finished;

    private PageServerClient(string name, Socket socket, Stream connection)
    {
        Name = name;
        _socket = socket;
        _connection = connection;
        _out = new BufferedStream(connection, SendBufferSize);
    }

    public string Name { get; }

    /// <summary>Connects to the page server (and makes the TLS handshake when <paramref name="tls"/> is given).</summary>
    public static PageServerClient Connect(string address, int port, TlsOptions? tls, TimeSpan timeout)
    {
        var (name, socket, stream) = PageServerConnection.Connect(address, port, tls, timeout, IoTimeout);
        return new PageServerClient(name, socket, stream);
    }

    public IPageSink Open(ulong pagemapId, out bool parentHeld)
    {
        ulong dstId = EncodeDstId(PagemapType.Task, pagemapId);
        Send(new PageServerIov(PS_IOV_OPEN2, 0, 0, dstId));
        Flush();
        Span<byte> answer = stackalloc byte[1];
        Receive(answer, $"the answer to opening pagemap-{pagemapId}.img");
        parentHeld = answer[0] != 0;
        return new Sink(this, pagemapId, dstId);
    }

    public void Finish()
    {
        Send(new PageServerIov(PS_IOV_CLOSE, 0, 0, 0));
        Flush();
        Span<byte> status = stackalloc byte[4];
        Receive(status, "the confirmation that every page was stored");
        int code = BinaryPrimitives.ReadInt32LittleEndian(status);
        if (code != 0)
            throw new PageServerException($"the {Name} reported status {code} instead of storing the pages");
        _finished = true;
        try
        {
            if (_connection is System.Net.Security.SslStream ssl) ssl.ShutdownAsync().Wait(IoTimeout);
            _socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception e) when (e is SocketException or IOException or AggregateException)
        {
            // The pages are confirmed; the server only waits for the end of the stream.
        }
    }

    public void Dispose()
    {
        try
        {
            if (!_finished) _socket.Close(0); // an abortive close (RST): the server must not take it for a finished dump
        }
        finally
        {
            _connection.Dispose();
            _socket.Dispose();
        }
    }

    private void Send(PageServerIov iov)
    {
        iov.Write(_header);
        Write(_header);
    }

    private void Write(ReadOnlySpan<byte> data)
    {
        try
        {
            _out.Write(data);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            throw new PageServerException($"the connection to the {Name} broke: {e.InnerException?.Message ?? e.Message}", e);
        }
    }

    private void Flush()
    {
        try
        {
            _out.Flush();
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            throw new PageServerException($"the connection to the {Name} broke: {e.InnerException?.Message ?? e.Message}", e);
        }
    }

    private void Receive(Span<byte> buffer, string what)
    {
        try
        {
            PageServerConnection.ReadExactly(_connection, buffer, Name, what);
        }
        catch (Exception e) when (e is IOException and not PageServerException or ObjectDisposedException)
        {
            throw new PageServerException($"the connection to the {Name} broke while waiting for {what}: {e.InnerException?.Message ?? e.Message}", e);
        }
    }

    /// <summary>One task's pagemap entries, as PS_IOV_ADD_F commands.</summary>
    private sealed class Sink(PageServerClient client, ulong id, ulong dstId) : IPageSink
    {
        private long _owed;
        private ulong _previousEnd;

        public void BeginPresent(ulong vaddr, uint nrPages, PagemapFlags extraFlags = PagemapFlags.None)
        {
            if ((extraFlags & PagemapFlags.Parent) != 0)
                throw new ArgumentException("pages in the parent have no data here", nameof(extraFlags));
            Entry(vaddr, nrPages, PagemapFlags.Present | extraFlags);
            _owed = (long)nrPages * PageSize;
        }

        public void WritePageData(ReadOnlySpan<byte> data)
        {
            if (data.Length > _owed)
                throw new InvalidOperationException($"{data.Length} bytes of page data but only {_owed} are left in the entry");
            client.Write(data);
            _owed -= data.Length;
        }

        public void AddWithoutData(ulong vaddr, uint nrPages, PagemapFlags flags)
        {
            if ((flags & PagemapFlags.Present) != 0 || flags == PagemapFlags.None)
                throw new ArgumentException($"flags {flags} do not describe pages kept elsewhere", nameof(flags));
            Entry(vaddr, nrPages, flags);
        }

        private void Entry(ulong vaddr, uint nrPages, PagemapFlags flags)
        {
            if (_owed != 0)
                throw new InvalidOperationException($"the previous entry of pagemap-{id}.img still lacks {_owed} bytes of page data");
            if (vaddr % PageSize != 0 || nrPages == 0 || vaddr < _previousEnd)
                throw new ArgumentException($"{nrPages} pages at 0x{vaddr:x} do not follow the previous entry (ending at 0x{_previousEnd:x})");
            _previousEnd = vaddr + (ulong)nrPages * PageSize;
            client.Send(new PageServerIov(EncodeCommand(PS_IOV_ADD_F, (uint)flags), nrPages, vaddr, dstId));
        }

        public void Complete()
        {
            if (_owed != 0)
                throw new InvalidOperationException($"the last entry of pagemap-{id}.img lacks {_owed} bytes of page data");
        }

        public void Dispose()
        {
        }
    }
}
