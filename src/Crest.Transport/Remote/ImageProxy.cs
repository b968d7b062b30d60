// image-proxy: the source's end. Dumps on this machine connect to the unix socket in the work directory and
// hand over their images; the proxy forwards them over one TCP connection to the image-cache, compressing
// page data (pages-*.img) on the way, and passes the cache's answer to the end of a dump (Ack or Error) back.
//
//   dump --unix--> [Hello] [image...] [DumpEnd s]  --> proxy --TCP--> cache
//   dump <-------- Ack s | Error                  <-- proxy <-------- Ack s | Error
//
// Dumps take turns (one at a time on the TCP connection). When a dump or the connection fails half-way the
// TCP connection is dropped, so that the cache marks what it was receiving as broken, and the next dump
// connects again: a cut never leaves a short image that looks whole.
//
// Lending. A dump that says Borrow (SnapshotUpload does) gets, when its turn comes and the connection is plain
// TCP, the connection itself: the proxy passes the connected socket's descriptor over the unix socket (SCM_RIGHTS)
// with the codec for page images, and the dump writes its image frames straight into TCP, compressing them itself
// (LentConnection). The bytes then leave the dump's memory once, into the socket, instead of going through the
// unix socket and this process (two copies and a hop each way fewer). The proxy writes nothing meanwhile and stays
// the only reader of the connection: the dump says Returned{raw, sent} once it closed its copy, then DumpEnd as
// usual, which the proxy sends on and whose answer it relays. A dump whose unix connection ends before Returned (it
// died half-way), or that says Error (its write failed), costs the connection: the proxy shuts it down (shutdown(2),
// which the dump's copy cannot keep alive) and the cache marks the partial snapshot broken. Over TLS the stream's
// state lives in this process, so nothing is lent: the answer says so and the dump's images are relayed as below.
//
// Relaying does as little as it can: each data frame from the dump is read straight into a pooled buffer
// behind room for a header, and goes out of the same buffer in one write (codec none) or is compressed into
// another by the thread pool (lz4, zstd: chunks are independent, so up to QueuedChunks of them are compressed
// in parallel while the sender writes them in order). Nothing is hashed here: the dump's length and checksum
// of each image are passed on in its end frame, and the cache checks them against what arrived (end to end).
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Crest.Transport.Streams;

namespace Crest.Transport.Remote;

public sealed class ImageProxy : IDisposable
{
    private readonly Socket _unix;
    private readonly EndPoint _cache;
    private readonly Codec _codec;
    private readonly Action<string> _log;
    private readonly SemaphoreSlim _turn = new(1, 1);
    /// <summary>Chunks between reading from a dump and sending to the cache: the bound on what the proxy holds.</summary>
    private const int QueuedChunks = 16;
    /// <summary>Frame buffers, reused: frames as read from the dump, and compressed frames (a pool each, so that
    /// compressions waiting for an output buffer never hold every input buffer). Each has two more than the queue
    /// holds (one being filled, one being sent). A dump that fails leaves the buffers it held to the collector and
    /// the next one gets new pools.</summary>
    private BufferPools _pools = new();
    private readonly TlsSettings? _tls;
    private readonly string _host;
    private Socket? _connection;
    private Stream? _stream;
    private FrameWriter? _writer;
    private FrameReader? _reader;

    private ImageProxy(Socket unix, EndPoint cache, Codec codec, Action<string> log, string socketPath, TlsSettings? tls, string host)
    {
        _tls = tls;
        _host = host;
        _unix = unix;
        _cache = cache;
        _codec = codec;
        _log = log;
        UnixSocketPath = socketPath;
    }

    /// <summary>Connects to the cache (an absent cache is an error now, not at the first dump), then listens.</summary>
    /// <param name="host">The cache's name as given, which its certificate must carry (TLS).</param>
    public static async Task<ImageProxy> StartAsync(string unixSocketPath, EndPoint cache, Codec codec, Action<string> log, CancellationToken cancel,
        TlsSettings? tls = null, string? host = null)
    {
        var unix = ImageSockets.Listen(unixSocketPath);
        var proxy = new ImageProxy(unix, cache, codec, log, unixSocketPath, tls, host ?? cache.ToString()!);
        try
        {
            await proxy.ConnectAsync(cancel).ConfigureAwait(false);
        }
        catch
        {
            proxy.Dispose();
            throw;
        }
        return proxy;
    }

    public string UnixSocketPath { get; }

    /// <summary>Raw bytes of images forwarded, and bytes sent on the TCP connection (after compression), in all; lent
    /// connections count what their dumps said they wrote.</summary>
    public long RawBytes { get; private set; }
    public long SentBytes { get; private set; }
    /// <summary>The same for the dump being served.</summary>
    private long _dumpRaw, _dumpSent;

    public async Task RunAsync(CancellationToken cancel)
    {
        while (!cancel.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _unix.AcceptAsync(cancel).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException
                                      || e is SocketException { SocketErrorCode: SocketError.OperationAborted or SocketError.Interrupted })
            {
                return;
            }
            _ = Task.Run(async () =>
            {
                using (client)
                {
                    await _turn.WaitAsync(cancel).ConfigureAwait(false);
                    try
                    {
                        await ServeDumpAsync(client, cancel).ConfigureAwait(false);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        _log($"image-proxy: {e.Message}");
                    }
                    finally
                    {
                        _turn.Release();
                    }
                }
            }, CancellationToken.None);
        }
    }

    public void Dispose()
    {
        _unix.Dispose();
        Disconnect();
        try
        {
            File.Delete(UnixSocketPath);
        }
        catch (IOException)
        {
            // gone already
        }
    }

    private async Task ConnectAsync(CancellationToken cancel)
    {
        var socket = await ImageSockets.ConnectTcpAsync(_cache, cancel).ConfigureAwait(false);
        _connection = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        if (_tls is not null)
        {
            try
            {
                _stream = await _tls.ConnectAsync(_stream, _host, cancel).ConfigureAwait(false);
            }
            catch
            {
                Disconnect();
                throw;
            }
        }
        _writer = new FrameWriter(_stream);
        _reader = new FrameReader(_stream);
        await _writer.WriteHelloAsync(cancel).ConfigureAwait(false);
        _log($"image-proxy: connected to the image-cache at {_cache}{(_tls is null ? "" : " over TLS")}");
    }

    private void Disconnect()
    {
        try
        {
            // Down for every copy of the descriptor, a dump's that still holds it lent included.
            _connection?.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // not connected any more
        }
        _stream?.Dispose();
        _connection?.Dispose();
        _stream = null;
        _connection = null;
        _writer = null;
        _reader = null;
    }

    /// <summary>
    /// One dump. Frames from the dump are read on this task and queued (a bounded queue of chunks), the TCP
    /// side compresses and sends them on another, so that reading, compressing and sending overlap.
    /// </summary>
    private async Task ServeDumpAsync(Socket client, CancellationToken cancel)
    {
        using var local = new NetworkStream(client, ownsSocket: false);
        var fromDump = new FrameReader(local);
        var toDump = new FrameWriter(local);
        try
        {
            if (_writer is null) await ConnectAsync(cancel).ConfigureAwait(false);
        }
        catch (RemoteImageException e)
        {
            await TellAsync(toDump, $"image-proxy: {e.Message}").ConfigureAwait(false);
            return;
        }

        _dumpRaw = _dumpSent = 0;
        var queue = Channel.CreateBounded<Forward>(new BoundedChannelOptions(QueuedChunks) { SingleReader = true, SingleWriter = true });
        using var failed = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        var pools = _pools;
        var sender = SendAsync(queue.Reader, pools, failed);
        string? snapshot = null;
        try
        {
            if (await fromDump.ReadAsync(cancel).ConfigureAwait(false) is not HelloEvent)
                throw new StreamProtocolException("the dump did not say hello");
            while (await fromDump.ReadAsync(cancel).ConfigureAwait(false) is { } e)
            {
                if (e is BorrowEvent borrow)
                {
                    snapshot = borrow.Snapshot;
                    await LendAsync(client, local, fromDump, borrow.Snapshot, cancel).ConfigureAwait(false);
                }
                else if (e is ImageBeginEvent begin)
                {
                    snapshot = begin.Snapshot;
                    var codec = begin.Name.StartsWith("pages-", StringComparison.Ordinal) ? _codec : Codec.None;
                    await queue.Writer.WriteAsync(new Forward(Begin: begin with { Codec = codec }), failed.Token).ConfigureAwait(false);
                    var (length, checksum) = await fromDump.ForwardImageAsync(
                        pools.Inputs.Reader.ReadAsync,
                        (frame, payload, c) => queue.Writer.WriteAsync(new Forward(Data: Pack(codec, frame, payload, pools, failed.Token)), c),
                        failed.Token).ConfigureAwait(false);
                    await queue.Writer.WriteAsync(new Forward(End: (length, checksum)), failed.Token).ConfigureAwait(false);
                }
                else if (e is DumpEndEvent end)
                {
                    snapshot = end.Snapshot;
                    await queue.Writer.WriteAsync(new Forward(DumpEnd: end.Snapshot), failed.Token).ConfigureAwait(false);
                    queue.Writer.Complete();
                    var answer = await sender.ConfigureAwait(false);
                    await RelayAsync(toDump, answer, end.Snapshot, cancel).ConfigureAwait(false);
                    return;
                }
                else
                {
                    throw new StreamProtocolException($"unexpected {e.GetType().Name} from the dump");
                }
            }
            throw new StreamProtocolException($"the dump closed its connection before the end{(snapshot is null ? "" : $" of {snapshot}")}");
        }
        catch (Exception e) when (e is IOException or SocketException or StreamProtocolException or RemoteImageException or OperationCanceledException)
        {
            queue.Writer.TryComplete();
            await failed.CancelAsync().ConfigureAwait(false);
            string why = e is OperationCanceledException && sender.IsFaulted ? sender.Exception!.InnerException!.Message : e.Message;
            try
            {
                await sender.ConfigureAwait(false);
            }
            catch (Exception s) when (s is IOException or SocketException or StreamProtocolException or RemoteImageException or OperationCanceledException)
            {
                why = s is OperationCanceledException ? why : s.Message;
            }
            // Whatever the cache got of this dump must not look whole: drop the connection.
            Disconnect();
            // Buffers still queued, or held by compressions or a side that stopped, are left behind: fresh pools.
            _pools = new BufferPools();
            _log($"image-proxy: dump{(snapshot is null ? "" : $" of {snapshot}")} failed: {why}; the connection to the image-cache is dropped");
            await TellAsync(toDump, $"image-proxy: {why}").ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Borrow: lends the connection (plain TCP) and waits until the dump returns it; or says it relays (TLS). A dump
    /// that fails meanwhile is an exception, which drops the connection.
    /// </summary>
    private async Task LendAsync(Socket client, Stream local, FrameReader fromDump, string snapshot, CancellationToken cancel)
    {
        if (_tls is not null || _connection is not { } connection)
        {
            await local.WriteAsync(FrameWriter.LendFrame(_codec, attached: false), cancel).ConfigureAwait(false);
            return;
        }
        DescriptorPassing.Send(client, FrameWriter.LendFrame(_codec, attached: true), connection.SafeHandle);
        _log($"image-proxy: the connection to the image-cache is lent to the dump of {snapshot}");
        switch (await fromDump.ReadAsync(cancel).ConfigureAwait(false))
        {
            case ReturnedEvent back:
                _dumpRaw += back.Raw;
                _dumpSent += back.Sent;
                RawBytes += back.Raw;
                SentBytes += back.Sent;
                return;
            case ErrorEvent error:
                throw new RemoteImageException(await CacheLastWordsAsync().ConfigureAwait(false) ?? error.Message);
            case null:
                throw new StreamProtocolException($"the dump of {snapshot} ended while it held the connection to the image-cache");
            case var other:
                throw new StreamProtocolException($"unexpected {other.GetType().Name} from the dump of {snapshot} while it held the connection to the image-cache");
        }
    }

    /// <summary>What the cache said before it broke the connection a dump was writing into (an Error frame), if anything.</summary>
    private async Task<string?> CacheLastWordsAsync()
    {
        try
        {
            using var soon = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            return await _reader!.ReadAsync(soon.Token).ConfigureAwait(false) is ErrorEvent error ? error.Message : null;
        }
        catch (Exception e) when (e is IOException or SocketException or StreamProtocolException or OperationCanceledException or ObjectDisposedException)
        {
            return null;
        }
    }

    /// <summary>
    /// The frame to send for a raw frame read from the dump: the same buffer (codec none), or a compression of it
    /// into an output buffer, started on the thread pool now so that several run at once (the sender awaits them
    /// in order). The input buffer goes back to its pool once compressed.
    /// </summary>
    private static ValueTask<PackedFrame> Pack(Codec codec, byte[] input, int length, BufferPools pools, CancellationToken cancel)
    {
        if (codec == Codec.None) return ValueTask.FromResult(new PackedFrame(input, length, length, pools.Inputs));
        return new ValueTask<PackedFrame>(Task.Run(async () =>
        {
            byte[] output = await pools.Outputs.Reader.ReadAsync(cancel).ConfigureAwait(false);
            int payload = FrameWriter.PackChunk(codec, input.AsSpan(FrameFormat.HeaderSize, length), output);
            pools.Inputs.Writer.TryWrite(input);
            return new PackedFrame(output, payload, length, pools.Outputs);
        }, cancel));
    }

    /// <summary>Sends what the dump side queued; at DumpEnd waits for the cache's answer and returns it.</summary>
    private async Task<StreamEvent> SendAsync(ChannelReader<Forward> queue, BufferPools pools, CancellationTokenSource failed)
    {
        var writer = _writer!;
        var cancel = failed.Token;
        long raw0 = writer.RawBytes, sent0 = writer.SentBytes;
        try
        {
            await foreach (var f in queue.ReadAllAsync(cancel).ConfigureAwait(false))
            {
                if (f.Begin is { } b) await writer.BeginForwardedImageAsync(b.Snapshot, b.Name, b.Codec, cancel).ConfigureAwait(false);
                else if (f.Data is { } data)
                {
                    var packed = await data.ConfigureAwait(false);
                    await writer.WriteForwardedDataAsync(packed.Frame, packed.PayloadLength, packed.RawLength, cancel).ConfigureAwait(false);
                    packed.Pool.Writer.TryWrite(packed.Frame);
                }
                else if (f.End is { } end) await writer.EndForwardedImageAsync(end.Length, end.Checksum, cancel).ConfigureAwait(false);
                else if (f.DumpEnd is { } s)
                {
                    await writer.WriteDumpEndAsync(s, cancel).ConfigureAwait(false);
                    await writer.FlushAsync(cancel).ConfigureAwait(false);
                    var answer = await _reader!.ReadAsync(cancel).ConfigureAwait(false)
                        ?? throw new RemoteImageException($"the image-cache at {_cache} closed the connection before acknowledging {s}");
                    return answer;
                }
            }
        }
        catch (IOException e)
        {
            await failed.CancelAsync().ConfigureAwait(false); // the dump side must stop queueing
            throw new RemoteImageException($"the connection to the image-cache at {_cache} broke: {e.InnerException?.Message ?? e.Message}", e);
        }
        catch (Exception e) when (e is SocketException or StreamProtocolException or RemoteImageException)
        {
            await failed.CancelAsync().ConfigureAwait(false);
            throw;
        }
        finally
        {
            _dumpRaw += writer.RawBytes - raw0;
            _dumpSent += writer.SentBytes - sent0;
            RawBytes += writer.RawBytes - raw0;
            SentBytes += writer.SentBytes - sent0;
        }
        throw new OperationCanceledException();
    }

    private async Task RelayAsync(FrameWriter toDump, StreamEvent answer, string snapshot, CancellationToken cancel)
    {
        switch (answer)
        {
            case AckEvent ack when ack.Snapshot == snapshot:
                _log($"image-proxy: snapshot {snapshot} acknowledged by the image-cache ({_dumpRaw} bytes of images, {_dumpSent} sent)");
                await toDump.WriteAckAsync(snapshot, cancel).ConfigureAwait(false);
                break;
            case ErrorEvent error:
                _log($"image-proxy: the image-cache refused {snapshot}: {error.Message}");
                // The cache drops the snapshot and reads on: the connection stays usable.
                await toDump.WriteErrorAsync(error.Message, cancel).ConfigureAwait(false);
                break;
            default:
                Disconnect();
                await toDump.WriteErrorAsync($"image-proxy: the image-cache answered {answer} to the end of {snapshot}", cancel).ConfigureAwait(false);
                break;
        }
    }

    private static async Task TellAsync(FrameWriter toDump, string message)
    {
        try
        {
            await toDump.WriteErrorAsync(message).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            // the dump is gone: it knows
        }
    }

    private sealed record Forward(ImageBeginEvent? Begin = null, ValueTask<PackedFrame>? Data = null, (ulong Length, ulong Checksum)? End = null, string? DumpEnd = null);

    /// <summary>A data frame ready to send: its payload at Frame[HeaderSize..], and the pool the buffer goes back to.</summary>
    private readonly record struct PackedFrame(byte[] Frame, int PayloadLength, int RawLength, Channel<byte[]> Pool);

    private sealed class BufferPools
    {
        public Channel<byte[]> Inputs { get; } = Filled();
        public Channel<byte[]> Outputs { get; } = Filled();

        private static Channel<byte[]> Filled()
        {
            var pool = Channel.CreateUnbounded<byte[]>();
            for (int i = 0; i < QueuedChunks + 2; i++) pool.Writer.TryWrite(GC.AllocateUninitializedArray<byte>(FrameWriter.FrameBufferSize));
            return pool;
        }
    }
}
