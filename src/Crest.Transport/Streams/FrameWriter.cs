using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;

namespace Crest.Transport.Streams;

/// <summary>A stream that writes two pieces with one system call (writev-like): a frame header and the caller's data, in place.</summary>
public interface IGatherStream
{
    void Write(ReadOnlySpan<byte> first, ReadOnlySpan<byte> second);
}

/// <summary>
/// Writes frames to a stream (a socket, a pipe, a file). Not thread-safe: one writer per stream, and an
/// image is written begin, chunks, end without other frames between (the reader refuses them).
/// </summary>
public sealed class FrameWriter(Stream output)
{
    private readonly byte[] _header = new byte[FrameFormat.HeaderSize];
    /// <summary>A frame being built: header, then payload (compressed chunks are packed here).</summary>
    private byte[]? _packed;
    // One read buffer for every image this writer sends: a fresh MaxChunk array per image is a large-object
    // allocation each time, and a dump of a dozen small images paid a garbage collection for most of them.
    private byte[]? _chunk;
    private XxHash3? _hash;
    private ulong _imageLength;
    private Codec _codec;
    /// <summary>The current image is forwarded: its data comes packed, its length and checksum from its sender.</summary>
    private bool _forwarding;

    /// <summary>Size of a buffer that holds any frame of image data with its header (ForwardImage, PackChunk).</summary>
    public const int FrameBufferSize = FrameFormat.HeaderSize + FrameFormat.MaxPayload;

    /// <summary>Raw bytes of image data handed to this writer, and bytes of it that went out after compression.</summary>
    public long RawBytes { get; private set; }
    public long SentBytes { get; private set; }

    public Task WriteHelloAsync(CancellationToken cancel = default)
    {
        var payload = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(payload, FrameFormat.ProtocolVersion);
        return WriteFrameAsync(FrameType.Hello, payload, cancel);
    }

    /// <summary>Sends one whole image read from <paramref name="content"/>: begin, its bytes in bounded chunks, then length and checksum.</summary>
    public async Task WriteImageAsync(string snapshot, string name, Stream content, Codec codec = Codec.None, CancellationToken cancel = default)
    {
        await BeginImageAsync(snapshot, name, codec, cancel).ConfigureAwait(false);
        // Raw chunks are read behind room for their header, so that each frame goes out in one write.
        var buffer = _chunk ??= GC.AllocateUninitializedArray<byte>(FrameFormat.HeaderSize + FrameFormat.MaxChunk);
        while (true)
        {
            int n = await ReadFullChunkAsync(content, buffer.AsMemory(FrameFormat.HeaderSize), cancel).ConfigureAwait(false);
            if (n == 0) break;
            if (codec != Codec.None)
            {
                await WriteImageDataAsync(buffer.AsMemory(FrameFormat.HeaderSize, n), cancel).ConfigureAwait(false);
                continue;
            }
            _hash!.Append(buffer.AsSpan(FrameFormat.HeaderSize, n));
            _imageLength += (ulong)n;
            RawBytes += n;
            await WriteFrameInPlaceAsync(FrameType.ImageData, buffer, n, cancel).ConfigureAwait(false);
        }
        await EndImageAsync(cancel).ConfigureAwait(false);
    }

    public async Task BeginImageAsync(string snapshot, string name, Codec codec, CancellationToken cancel = default)
    {
        if (_hash is not null) throw new InvalidOperationException("an image is already being written");
        if (!Enum.IsDefined(codec)) throw new ArgumentOutOfRangeException(nameof(codec));
        var strings = Strings(snapshot, name);
        var payload = new byte[1 + strings.Length];
        payload[0] = (byte)codec;
        strings.CopyTo(payload, 1);
        await WriteFrameAsync(FrameType.ImageBegin, payload, cancel).ConfigureAwait(false);
        _hash = new XxHash3();
        _imageLength = 0;
        _codec = codec;
        _forwarding = false;
    }

    /// <summary>
    /// Forwarding (image-proxy): begins an image whose data comes as frames packed with <see cref="PackChunk"/> (or read
    /// raw by FrameReader.ForwardImageAsync) and whose length and checksum its sender computed: nothing is hashed again.
    /// </summary>
    public async Task BeginForwardedImageAsync(string snapshot, string name, Codec codec, CancellationToken cancel = default)
    {
        await BeginImageAsync(snapshot, name, codec, cancel).ConfigureAwait(false);
        _forwarding = true;
    }

    /// <summary>
    /// Packs <paramref name="raw"/> (at most MaxChunk bytes) as the payload of a data frame of an image in
    /// <paramref name="codec"/>, into <paramref name="frame"/> (FrameBufferSize bytes) after room for the header;
    /// returns the payload's length. Thread-safe: forwarders compress chunks in parallel with it.
    /// </summary>
    public static int PackChunk(Codec codec, ReadOnlySpan<byte> raw, byte[] frame)
    {
        if (raw.Length > FrameFormat.MaxChunk) throw new ArgumentOutOfRangeException(nameof(raw), $"chunk of {raw.Length} bytes exceeds {FrameFormat.MaxChunk}");
        var payload = frame.AsSpan(FrameFormat.HeaderSize);
        if (codec == Codec.None)
        {
            raw.CopyTo(payload);
            return raw.Length;
        }
        int n = Codecs.Compress(codec, raw, payload[4..]);
        if (n == 0)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(payload, (uint)raw.Length | FrameFormat.StoredFlag);
            raw.CopyTo(payload[4..]);
            return 4 + raw.Length;
        }
        BinaryPrimitives.WriteUInt32LittleEndian(payload, (uint)raw.Length);
        return 4 + n;
    }

    /// <summary>
    /// Forwarding: one data frame whose payload (<paramref name="payloadLength"/> bytes, holding
    /// <paramref name="rawLength"/> raw bytes) is in <paramref name="frame"/> after room for the header: sent in one write.
    /// </summary>
    public Task WriteForwardedDataAsync(byte[] frame, int payloadLength, int rawLength, CancellationToken cancel = default)
    {
        if (_hash is null || !_forwarding) throw new InvalidOperationException("no forwarded image is being written");
        _imageLength += (ulong)rawLength;
        RawBytes += rawLength;
        return WriteFrameInPlaceAsync(FrameType.ImageData, frame, payloadLength, cancel);
    }

    /// <summary>Forwarding: ends the image with the length and checksum its sender computed (the receiver checks them).</summary>
    public async Task EndForwardedImageAsync(ulong length, ulong checksum, CancellationToken cancel = default)
    {
        if (_hash is null || !_forwarding) throw new InvalidOperationException("no forwarded image is being written");
        if (length != _imageLength) throw new InvalidOperationException($"the forwarded image ends at {length} bytes, {_imageLength} were forwarded");
        var end = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(end, length);
        BinaryPrimitives.WriteUInt64LittleEndian(end.AsSpan(8), checksum);
        _hash = null;
        _forwarding = false;
        await WriteFrameAsync(FrameType.ImageEnd, end, cancel).ConfigureAwait(false);
    }

    /// <summary>Raw image bytes of the current image, cut into chunks of at most MaxChunk and compressed with its codec.</summary>
    public async Task WriteImageDataAsync(ReadOnlyMemory<byte> data, CancellationToken cancel = default)
    {
        var hash = _hash ?? throw new InvalidOperationException("no image is being written");
        if (_forwarding) throw new InvalidOperationException("a forwarded image takes packed frames");
        while (!data.IsEmpty)
        {
            var chunk = data[..Math.Min(data.Length, FrameFormat.MaxChunk)];
            data = data[chunk.Length..];
            hash.Append(chunk.Span);
            _imageLength += (ulong)chunk.Length;
            RawBytes += chunk.Length;
            if (_codec == Codec.None)
            {
                await WriteFrameAsync(FrameType.ImageData, chunk, cancel).ConfigureAwait(false);
                continue;
            }
            _packed ??= GC.AllocateUninitializedArray<byte>(FrameBufferSize);
            int n = PackChunk(_codec, chunk.Span, _packed);
            await WriteFrameInPlaceAsync(FrameType.ImageData, _packed, n, cancel).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Raw image bytes of the current image (codec none), written synchronously straight from the caller's memory:
    /// for a producer that is not async (a dump's page writer streaming pages-N.img as it reads them).
    /// </summary>
    public void WriteImageData(ReadOnlySpan<byte> data)
    {
        var hash = _hash ?? throw new InvalidOperationException("no image is being written");
        if (_forwarding || _codec != Codec.None) throw new InvalidOperationException("synchronous image data is raw only");
        while (!data.IsEmpty)
        {
            var chunk = data[..Math.Min(data.Length, FrameFormat.MaxChunk)];
            data = data[chunk.Length..];
            hash.Append(chunk);
            _imageLength += (ulong)chunk.Length;
            RawBytes += chunk.Length;
            BinaryPrimitives.WriteUInt32LittleEndian(_header, FrameFormat.Magic);
            _header[4] = (byte)FrameType.ImageData;
            _header[5] = _header[6] = _header[7] = 0;
            BinaryPrimitives.WriteUInt64LittleEndian(_header.AsSpan(8), (ulong)chunk.Length);
            if (output is IGatherStream gather)
            {
                gather.Write(_header, chunk);
            }
            else
            {
                output.Write(_header);
                output.Write(chunk);
            }
            SentBytes += FrameFormat.HeaderSize + chunk.Length;
        }
    }

    public async Task EndImageAsync(CancellationToken cancel = default)
    {
        var hash = _hash ?? throw new InvalidOperationException("no image is being written");
        var end = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(end, _imageLength);
        BinaryPrimitives.WriteUInt64LittleEndian(end.AsSpan(8), hash.GetCurrentHashAsUInt64());
        _hash = null;
        await WriteFrameAsync(FrameType.ImageEnd, end, cancel).ConfigureAwait(false);
    }

    public Task WriteDumpEndAsync(string snapshot, CancellationToken cancel = default) =>
        WriteFrameAsync(FrameType.DumpEnd, Strings(snapshot), cancel);

    public Task WriteAckAsync(string snapshot, CancellationToken cancel = default) =>
        WriteFrameAsync(FrameType.Ack, Strings(snapshot), cancel);

    public Task WriteErrorAsync(string message, CancellationToken cancel = default) =>
        WriteFrameAsync(FrameType.Error, Strings(message.Length > 4096 ? message[..4096] : message), cancel);

    public Task WriteGetAsync(string snapshot, string name, CancellationToken cancel = default) =>
        WriteFrameAsync(FrameType.Get, Strings(snapshot, name), cancel);

    public Task WriteGetSnapshotAsync(string snapshot, CancellationToken cancel = default) =>
        WriteFrameAsync(FrameType.GetSnapshot, Strings(snapshot), cancel);

    public Task WriteNotFoundAsync(string snapshot, string name, string reason, CancellationToken cancel = default) =>
        WriteFrameAsync(FrameType.NotFound, Strings(snapshot, name, reason.Length > 4096 ? reason[..4096] : reason), cancel);

    public Task WriteRestoreAsync(string snapshot, CancellationToken cancel = default) =>
        WriteFrameAsync(FrameType.Restore, Strings(snapshot), cancel);

    public Task WriteForgetAsync(string prefix, CancellationToken cancel = default) =>
        WriteFrameAsync(FrameType.Forget, Strings(prefix), cancel);

    public Task WriteBorrowAsync(string snapshot, CancellationToken cancel = default) =>
        WriteFrameAsync(FrameType.Borrow, Strings(snapshot), cancel);

    public Task WriteReturnedAsync(long raw, long sent, CancellationToken cancel = default)
    {
        var payload = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(payload, (ulong)raw);
        BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(8), (ulong)sent);
        return WriteFrameAsync(FrameType.Returned, payload, cancel);
    }

    /// <summary>The bytes of a Lend frame, for the proxy to send with the connection's descriptor attached (or without).</summary>
    public static byte[] LendFrame(Codec codec, bool attached)
    {
        var frame = new byte[FrameFormat.HeaderSize + 2];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, FrameFormat.Magic);
        frame[4] = (byte)FrameType.Lend;
        BinaryPrimitives.WriteUInt64LittleEndian(frame.AsSpan(8), 2);
        frame[FrameFormat.HeaderSize] = (byte)codec;
        frame[FrameFormat.HeaderSize + 1] = attached ? (byte)1 : (byte)0;
        return frame;
    }

    public Task WriteRestoredAsync(string snapshot, int pid, TimeSpan took, CancellationToken cancel = default)
    {
        byte[] name = Strings(snapshot);
        var payload = new byte[12 + name.Length];
        BinaryPrimitives.WriteInt32LittleEndian(payload, pid);
        BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(4), (ulong)Math.Max(0, took.Ticks / TimeSpan.TicksPerMicrosecond));
        name.CopyTo(payload, 12);
        return WriteFrameAsync(FrameType.Restored, payload, cancel);
    }

    public Task FlushAsync(CancellationToken cancel = default) => output.FlushAsync(cancel);

    private async Task WriteFrameAsync(FrameType type, ReadOnlyMemory<byte> payload, CancellationToken cancel)
    {
        if (payload.Length > FrameFormat.MaxPayload)
            throw new ArgumentOutOfRangeException(nameof(payload), $"frame payload of {payload.Length} bytes exceeds {FrameFormat.MaxPayload}");
        BinaryPrimitives.WriteUInt32LittleEndian(_header, FrameFormat.Magic);
        _header[4] = (byte)type;
        _header[5] = _header[6] = _header[7] = 0;
        BinaryPrimitives.WriteUInt64LittleEndian(_header.AsSpan(8), (ulong)payload.Length);
        await output.WriteAsync(_header, cancel).ConfigureAwait(false);
        if (!payload.IsEmpty) await output.WriteAsync(payload, cancel).ConfigureAwait(false);
        SentBytes += FrameFormat.HeaderSize + payload.Length;
    }

    /// <summary>A frame whose payload is at frame[HeaderSize..]: the header goes in front and both out in one write.</summary>
    private async Task WriteFrameInPlaceAsync(FrameType type, byte[] frame, int payloadLength, CancellationToken cancel)
    {
        if (payloadLength > FrameFormat.MaxPayload)
            throw new ArgumentOutOfRangeException(nameof(payloadLength), $"frame payload of {payloadLength} bytes exceeds {FrameFormat.MaxPayload}");
        BinaryPrimitives.WriteUInt32LittleEndian(frame, FrameFormat.Magic);
        frame[4] = (byte)type;
        frame[5] = frame[6] = frame[7] = 0;
        BinaryPrimitives.WriteUInt64LittleEndian(frame.AsSpan(8), (ulong)payloadLength);
        await output.WriteAsync(frame.AsMemory(0, FrameFormat.HeaderSize + payloadLength), cancel).ConfigureAwait(false);
        SentBytes += FrameFormat.HeaderSize + payloadLength;
    }

    private static async Task<int> ReadFullChunkAsync(Stream content, Memory<byte> buffer, CancellationToken cancel)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = await content.ReadAsync(buffer[total..], cancel).ConfigureAwait(false);
            if (n == 0) break;
            total += n;
        }
        return total;
    }

    private static byte[] Strings(params string[] values)
    {
        var bytes = values.Select(Encoding.UTF8.GetBytes).ToArray();
        var payload = new byte[bytes.Sum(b => 2 + b.Length)];
        int at = 0;
        foreach (var b in bytes)
        {
            if (b.Length > ushort.MaxValue) throw new ArgumentException($"string of {b.Length} bytes is too long for a frame");
            BinaryPrimitives.WriteUInt16LittleEndian(payload.AsSpan(at), (ushort)b.Length);
            b.CopyTo(payload, at + 2);
            at += 2 + b.Length;
        }
        return payload;
    }
}
