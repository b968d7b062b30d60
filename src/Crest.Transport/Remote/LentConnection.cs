// A dump's images written straight into the image-proxy's TCP connection to the image-cache, lent to it for the
// dump (ImageProxy.cs says when and how). The frames are the ones the proxy would have sent: the cache cannot tell.
//
// Codec none: each write goes out at once from the caller's memory (LentSocketStream: header and data in one
// sendmsg), hashed on the way; nothing is copied in user space. lz4, zstd: the caller's bytes are gathered into
// MaxChunk input buffers (one copy, which also turns small writes into whole chunks), each chunk is compressed on
// the thread pool as soon as it is full (up to QueuedChunks at once, the way the proxy does it), and a sender
// thread writes them in order. Page images (pages-*.img) take the codec; the others go raw, in the same order.
//
// A write that fails stops everything: the failure is the IOException of every later call, and the connection
// must not be returned (the proxy drops it, so that the cache marks the partial snapshot broken).
using System.Collections.Concurrent;
using System.IO.Hashing;
using Crest.Transport.Streams;

namespace Crest.Transport.Remote;

internal sealed class LentConnection : IDisposable
{
    /// <summary>Chunks between the caller and the socket when compressing: the bound on what this holds.</summary>
    private const int QueuedChunks = 8;
    private readonly LentSocketStream _stream;
    private readonly FrameWriter _writer;
    private readonly Codec _codec;
    private readonly CancellationTokenSource _failed = new();
    private readonly BlockingCollection<Item>? _queue;
    private readonly BlockingCollection<byte[]>? _inputs;
    private readonly BlockingCollection<byte[]>? _outputs;
    private readonly Thread? _sender;
    private Exception? _failure;
    // The image being written (compressing only: the writer's own state otherwise).
    private XxHash3? _hash;
    private ulong _length;
    private Codec _imageCodec;
    private byte[]? _chunk;
    private int _filled;
    private bool _returned;

    public LentConnection(int descriptor, Codec codec)
    {
        _stream = new LentSocketStream(descriptor);
        _writer = new FrameWriter(_stream);
        _codec = codec;
        if (codec == Codec.None) return;
        _queue = new BlockingCollection<Item>(QueuedChunks);
        _inputs = Filled(QueuedChunks + 2);
        _outputs = Filled(QueuedChunks + 2);
        _sender = new Thread(Send) { IsBackground = true, Name = "crest lent connection" };
        _sender.Start();
    }

    public Codec Codec => _codec;

    /// <summary>Raw bytes of images written, and bytes of frames sent (final once returned).</summary>
    public long RawBytes => _writer.RawBytes;
    public long SentBytes => _writer.SentBytes;

    public void BeginImage(string snapshot, string name)
    {
        ThrowIfFailed();
        var codec = name.StartsWith("pages-", StringComparison.Ordinal) ? _codec : Codec.None;
        if (_queue is null)
        {
            Run(() => _writer.BeginImageAsync(snapshot, name, Codec.None).GetAwaiter().GetResult());
            return;
        }
        if (_hash is not null) throw new InvalidOperationException("an image is already being written");
        _hash = new XxHash3();
        _length = 0;
        _imageCodec = codec;
        Add(new Item(Begin: new ImageBeginEvent(snapshot, name, codec)));
    }

    public void Write(ReadOnlySpan<byte> data)
    {
        ThrowIfFailed();
        if (_queue is null)
        {
            // Not a lambda: the span cannot be captured.
            try
            {
                _writer.WriteImageData(data);
            }
            catch (IOException e)
            {
                throw Fail(e);
            }
            return;
        }
        var hash = _hash ?? throw new InvalidOperationException("no image is being written");
        hash.Append(data);
        _length += (ulong)data.Length;
        while (!data.IsEmpty)
        {
            _chunk ??= Take(_inputs!);
            int n = Math.Min(data.Length, FrameFormat.MaxChunk - _filled);
            data[..n].CopyTo(_chunk.AsSpan(FrameFormat.HeaderSize + _filled));
            _filled += n;
            data = data[n..];
            if (_filled == FrameFormat.MaxChunk) Dispatch();
        }
    }

    /// <summary>
    /// The rest of the image's data, read from <paramref name="content"/> to its end. Compressing, it is read straight
    /// into the chunk buffers: no copy between the read and the compression (Write's copy cost a pass over every byte
    /// on the thread that also reads and hashes, the one no other core can help with).
    /// </summary>
    public void WriteFrom(Stream content, byte[] buffer, CancellationToken cancel)
    {
        int n;
        if (_queue is null)
        {
            while ((n = content.Read(buffer)) > 0)
            {
                cancel.ThrowIfCancellationRequested();
                Write(buffer.AsSpan(0, n));
            }
            return;
        }
        ThrowIfFailed();
        var hash = _hash ?? throw new InvalidOperationException("no image is being written");
        while (true)
        {
            cancel.ThrowIfCancellationRequested();
            _chunk ??= Take(_inputs!);
            var room = _chunk.AsSpan(FrameFormat.HeaderSize + _filled, FrameFormat.MaxChunk - _filled);
            n = content.Read(room);
            if (n <= 0) return;
            hash.Append(room[..n]);
            _length += (ulong)n;
            _filled += n;
            if (_filled == FrameFormat.MaxChunk) Dispatch();
        }
    }

    public void EndImage()
    {
        ThrowIfFailed();
        if (_queue is null)
        {
            Run(() => _writer.EndImageAsync().GetAwaiter().GetResult());
            return;
        }
        var hash = _hash ?? throw new InvalidOperationException("no image is being written");
        if (_filled > 0) Dispatch();
        Add(new Item(End: (_length, hash.GetCurrentHashAsUInt64())));
        _hash = null;
    }

    /// <summary>Waits until every frame is in the socket and closes this copy of it: the connection is the proxy's again.</summary>
    public (long Raw, long Sent) Return()
    {
        ThrowIfFailed();
        if (_hash is not null) throw new InvalidOperationException("an image is still being written");
        if (_queue is not null)
        {
            _queue.CompleteAdding();
            _sender!.Join();
            ThrowIfFailed();
        }
        _returned = true;
        _stream.Dispose();
        return (_writer.RawBytes, _writer.SentBytes);
    }

    /// <summary>The proxy went away (or spoke) while this was lent: every later write fails, saying <paramref name="why"/>. Thread-safe.</summary>
    public void Abort(string why) => _stream.Abort(why);

    /// <summary>Stops (a dump that fails or gives up): whatever was not sent is dropped, and this copy of the connection closed.</summary>
    public void Dispose()
    {
        if (!_returned && _sender is not null)
        {
            _failed.Cancel();
            _stream.Abort("the dump gave up the lent connection to the image-cache");
            _queue!.CompleteAdding();
            _sender.Join();
        }
        _stream.Dispose();
        _failed.Dispose();
    }

    /// <summary>The chunk filled so far leaves: as it is (raw), or compressed on the thread pool into an output buffer.</summary>
    private void Dispatch()
    {
        byte[] input = _chunk!;
        int length = _filled;
        _chunk = null;
        _filled = 0;
        if (_imageCodec == Codec.None)
        {
            Add(new Item(Data: Task.FromResult(new Packed(input, length, length, _inputs!))));
            return;
        }
        byte[] output = Take(_outputs!);
        var codec = _imageCodec;
        var inputs = _inputs!;
        var outputs = _outputs!;
        Add(new Item(Data: Task.Run(() =>
        {
            int payload = FrameWriter.PackChunk(codec, input.AsSpan(FrameFormat.HeaderSize, length), output);
            inputs.Add(input);
            return new Packed(output, payload, length, outputs);
        })));
    }

    /// <summary>The sender thread: frames in the order they were queued.</summary>
    private void Send()
    {
        try
        {
            foreach (var item in _queue!.GetConsumingEnumerable(_failed.Token))
            {
                if (item.Begin is { } b) _writer.BeginForwardedImageAsync(b.Snapshot, b.Name, b.Codec).GetAwaiter().GetResult();
                else if (item.Data is { } data)
                {
                    var packed = data.GetAwaiter().GetResult();
                    _writer.WriteForwardedDataAsync(packed.Frame, packed.PayloadLength, packed.RawLength).GetAwaiter().GetResult();
                    packed.Pool.Add(packed.Frame);
                }
                else if (item.End is { } end) _writer.EndForwardedImageAsync(end.Length, end.Checksum).GetAwaiter().GetResult();
            }
        }
        catch (OperationCanceledException)
        {
            // stopped by Dispose
        }
        catch (Exception e)
        {
            _failure ??= e;
            _failed.Cancel();
        }
    }

    private void Add(Item item)
    {
        try
        {
            _queue!.Add(item, _failed.Token);
        }
        catch (OperationCanceledException)
        {
            ThrowIfFailed();
            throw new ObjectDisposedException(nameof(LentConnection));
        }
    }

    private byte[] Take(BlockingCollection<byte[]> pool)
    {
        try
        {
            return pool.Take(_failed.Token);
        }
        catch (OperationCanceledException)
        {
            ThrowIfFailed();
            throw new ObjectDisposedException(nameof(LentConnection));
        }
    }

    private void Run(Action write)
    {
        try
        {
            write();
        }
        catch (IOException e)
        {
            throw Fail(e);
        }
    }

    private IOException Fail(Exception e)
    {
        _failure ??= e;
        _failed.Cancel();
        return Failure();
    }

    private void ThrowIfFailed()
    {
        if (_failure is not null) throw Failure();
    }

    private IOException Failure() => new($"the connection to the image-cache broke: {_failure!.Message}", _failure);

    private static BlockingCollection<byte[]> Filled(int count)
    {
        var pool = new BlockingCollection<byte[]>(new ConcurrentBag<byte[]>());
        for (int i = 0; i < count; i++) pool.Add(GC.AllocateUninitializedArray<byte>(FrameWriter.FrameBufferSize));
        return pool;
    }

    private sealed record Item(ImageBeginEvent? Begin = null, Task<Packed>? Data = null, (ulong Length, ulong Checksum)? End = null);

    /// <summary>A data frame ready to send: its payload at Frame[HeaderSize..], and the pool its buffer goes back to.</summary>
    private readonly record struct Packed(byte[] Frame, int PayloadLength, int RawLength, BlockingCollection<byte[]> Pool);
}
