using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;

namespace Crest.Transport.Streams;

/// <summary>
/// Writes frames to a stream (a socket, a pipe, a file). Not thread-safe: one writer per stream, and an
/// image is written begin, chunks, end without other frames between (the reader refuses them).
/// </summary>
public sealed class FrameWriter(Stream output)
{
    private readonly byte[] _header = new byte[FrameFormat.HeaderSize];
    private byte[]? _packed;
    // One read buffer for every image this writer sends: a fresh MaxChunk array per image is a large-object
    // allocation each time, and a dump of a dozen small images paid a garbage collection for most of them.
    private byte[]? _chunk;
    private XxHash64? _hash;
    private ulong _imageLength;
    private Codec _codec;

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
        var buffer = _chunk ??= GC.AllocateUninitializedArray<byte>(FrameFormat.MaxChunk);
        while (true)
        {
            int n = await ReadFullChunkAsync(content, buffer, cancel).ConfigureAwait(false);
            if (n == 0) break;
            await WriteImageDataAsync(buffer.AsMemory(0, n), cancel).ConfigureAwait(false);
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
        _hash = new XxHash64();
        _imageLength = 0;
        _codec = codec;
    }

    /// <summary>Raw image bytes of the current image, cut into chunks of at most MaxChunk and compressed with its codec.</summary>
    public async Task WriteImageDataAsync(ReadOnlyMemory<byte> data, CancellationToken cancel = default)
    {
        var hash = _hash ?? throw new InvalidOperationException("no image is being written");
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
            _packed ??= new byte[FrameFormat.MaxPayload];
            int n = Codecs.Compress(_codec, chunk.Span, _packed.AsSpan(4));
            if (n == 0)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(_packed, (uint)chunk.Length | FrameFormat.StoredFlag);
                chunk.Span.CopyTo(_packed.AsSpan(4));
                n = chunk.Length;
            }
            else
            {
                BinaryPrimitives.WriteUInt32LittleEndian(_packed, (uint)chunk.Length);
            }
            await WriteFrameAsync(FrameType.ImageData, _packed.AsMemory(0, 4 + n), cancel).ConfigureAwait(false);
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

    private static async Task<int> ReadFullChunkAsync(Stream content, byte[] buffer, CancellationToken cancel)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = await content.ReadAsync(buffer.AsMemory(total), cancel).ConfigureAwait(false);
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
