using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;

namespace Crest.Transport.Streams;

/// <summary>One event read from an image stream.</summary>
public abstract record StreamEvent;
public sealed record HelloEvent(uint Version) : StreamEvent;
/// <summary>An image starts; its data must be read with <see cref="FrameReader.ReadImageAsync"/> before the next event.</summary>
public sealed record ImageBeginEvent(string Snapshot, string Name, Codec Codec) : StreamEvent;
/// <summary>An image arrived whole and its length and checksum matched (<see cref="FrameReader.ReadWholeAsync"/>).</summary>
public sealed record ImageEvent(string Snapshot, string Name, byte[] Content) : StreamEvent;
public sealed record DumpEndEvent(string Snapshot) : StreamEvent;
public sealed record AckEvent(string Snapshot) : StreamEvent;
public sealed record ErrorEvent(string Message) : StreamEvent;
public sealed record GetEvent(string Snapshot, string Name) : StreamEvent;
public sealed record GetSnapshotEvent(string Snapshot) : StreamEvent;
public sealed record NotFoundEvent(string Snapshot, string Name, string Reason) : StreamEvent;
public sealed record RestoreEvent(string Snapshot) : StreamEvent;
/// <summary>Drop every snapshot whose id starts with <paramref name="Prefix"/> (a migration that failed).</summary>
public sealed record ForgetEvent(string Prefix) : StreamEvent;
/// <summary>A dump asks the image-proxy for its connection to the image-cache, to write <paramref name="Snapshot"/> into it itself.</summary>
public sealed record BorrowEvent(string Snapshot) : StreamEvent;
/// <summary>The image-proxy's answer to Borrow: the codec for page images, and whether the connection came with it.</summary>
public sealed record LendEvent(Codec Codec, bool Attached) : StreamEvent;
/// <summary>The dump is done with the lent connection: it wrote <paramref name="Raw"/> bytes of images as <paramref name="Sent"/> bytes of frames.</summary>
public sealed record ReturnedEvent(long Raw, long Sent) : StreamEvent;
/// <summary>The destination restored <paramref name="Snapshot"/>: its root runs as <paramref name="Pid"/>.</summary>
public sealed record RestoredEvent(string Snapshot, int Pid, TimeSpan Took) : StreamEvent;

/// <summary>
/// Reads frames and checks images: order, lengths, checksums, decompression. A stream that ends inside a
/// frame or an image is an error naming the image, never a short image. Holds one frame in memory at a time.
/// </summary>
public sealed class FrameReader(Stream input, long maxImageSize = 64L << 30)
{
    private readonly byte[] _header = new byte[FrameFormat.HeaderSize];
    private byte[] _payload = new byte[4096];
    private byte[]? _raw;
    // The other half of each pair: data frames alternate between them, so that a consumer may still write out one
    // chunk while the next is read (ReadImageAsync).
    private byte[] _otherPayload = new byte[4096];
    private byte[]? _otherRaw;
    private long _offset;
    private ImageBeginEvent? _open;

    /// <summary>Bytes of frames read so far.</summary>
    public long BytesRead => _offset;

    /// <summary>
    /// The next event, or null at a clean end of stream (between frames, outside an image). An image comes as
    /// <see cref="ImageBeginEvent"/>, and its data must be consumed with <see cref="ReadImageAsync"/>.
    /// </summary>
    public async Task<StreamEvent?> ReadAsync(CancellationToken cancel = default)
    {
        if (_open is not null) throw new InvalidOperationException($"image {_open.Snapshot}/{_open.Name} was not read");
        var frame = await ReadFrameAsync(cancel, inside: null).ConfigureAwait(false);
        if (frame is null) return null;
        var (type, length, at) = frame.Value;
        var payload = _payload.AsSpan(0, length);
        switch (type)
        {
            case FrameType.Hello:
                if (length != 4) throw Bad(at, "hello frame of wrong size");
                return new HelloEvent(BinaryPrimitives.ReadUInt32LittleEndian(payload));
            case FrameType.ImageBegin:
            {
                if (length < 1) throw Bad(at, "image frame cut short");
                var codec = (Codec)payload[0];
                var s = ReadStrings(payload[1..], 2, at);
                if (!Enum.IsDefined(codec)) throw Bad(at, $"image {s[0]}/{s[1]} has unknown codec {(byte)codec}");
                _open = new ImageBeginEvent(s[0], s[1], codec);
                return _open;
            }
            case FrameType.DumpEnd:
                return new DumpEndEvent(ReadStrings(payload, 1, at)[0]);
            case FrameType.Ack:
                return new AckEvent(ReadStrings(payload, 1, at)[0]);
            case FrameType.Error:
                return new ErrorEvent(ReadStrings(payload, 1, at)[0]);
            case FrameType.Get:
            {
                var s = ReadStrings(payload, 2, at);
                return new GetEvent(s[0], s[1]);
            }
            case FrameType.GetSnapshot:
                return new GetSnapshotEvent(ReadStrings(payload, 1, at)[0]);
            case FrameType.NotFound:
            {
                var s = ReadStrings(payload, 3, at);
                return new NotFoundEvent(s[0], s[1], s[2]);
            }
            case FrameType.Restore:
                return new RestoreEvent(ReadStrings(payload, 1, at)[0]);
            case FrameType.Forget:
                return new ForgetEvent(ReadStrings(payload, 1, at)[0]);
            case FrameType.Borrow:
                return new BorrowEvent(ReadStrings(payload, 1, at)[0]);
            case FrameType.Lend:
            {
                if (length != 2 || payload[1] > 1 || !Enum.IsDefined((Codec)payload[0])) throw Bad(at, "malformed lend frame");
                return new LendEvent((Codec)payload[0], payload[1] == 1);
            }
            case FrameType.Returned:
            {
                if (length != 16) throw Bad(at, "returned frame of wrong size");
                ulong raw = BinaryPrimitives.ReadUInt64LittleEndian(payload);
                ulong sent = BinaryPrimitives.ReadUInt64LittleEndian(payload[8..]);
                if (raw > long.MaxValue || sent > long.MaxValue) throw Bad(at, $"returned frame with {raw} raw, {sent} sent bytes");
                return new ReturnedEvent((long)raw, (long)sent);
            }
            case FrameType.Restored:
            {
                if (length < 12) throw Bad(at, "restored frame cut short");
                int pid = BinaryPrimitives.ReadInt32LittleEndian(payload);
                ulong micros = BinaryPrimitives.ReadUInt64LittleEndian(payload[4..]);
                if (pid <= 0 || micros > (ulong)TimeSpan.MaxValue.TotalMicroseconds) throw Bad(at, $"restored frame with pid {pid}, {micros} µs");
                return new RestoredEvent(ReadStrings(payload[12..], 1, at)[0], pid, TimeSpan.FromMicroseconds(micros));
            }
            default:
                throw Bad(at, $"{type} frame outside an image");
        }
    }

    /// <summary>Like <see cref="ReadAsync"/>, but an image is read whole into memory (for small images and tests).</summary>
    public async Task<StreamEvent?> ReadWholeAsync(CancellationToken cancel = default)
    {
        var e = await ReadAsync(cancel).ConfigureAwait(false);
        if (e is not ImageBeginEvent begin) return e;
        var content = new MemoryStream();
        await ReadImageAsync((chunk, _) =>
        {
            content.Write(chunk.Span);
            return ValueTask.CompletedTask;
        }, cancel).ConfigureAwait(false);
        return new ImageEvent(begin.Snapshot, begin.Name, content.ToArray());
    }

    /// <summary>
    /// The data of the image just begun, decompressed, handed to <paramref name="onChunk"/> chunk by chunk; then its
    /// length and checksum are checked. Returns its length. The memory of a chunk stays valid until the next call of
    /// <paramref name="onChunk"/> returned (or this returns): a consumer may hand it to another thread to write out
    /// while the next chunk is read and hashed, and wait for that write in the next call. The consumer must treat
    /// what it got as void when this throws.
    /// </summary>
    public async Task<long> ReadImageAsync(Func<ReadOnlyMemory<byte>, CancellationToken, ValueTask> onChunk, CancellationToken cancel = default)
    {
        var image = _open ?? throw new InvalidOperationException("no image has begun");
        string what = $"image {image.Snapshot}/{image.Name}";
        var hash = new XxHash3();
        long total = 0;
        while (true)
        {
            (_payload, _otherPayload) = (_otherPayload, _payload);
            (_raw, _otherRaw) = (_otherRaw, _raw);
            var frame = await ReadFrameAsync(cancel, inside: what).ConfigureAwait(false)
                ?? throw new StreamProtocolException($"stream ended inside {what} after {total} bytes");
            var (type, length, at) = frame;
            if (type == FrameType.ImageData)
            {
                ReadOnlyMemory<byte> raw = Unpack(image.Codec, length, at, what);
                if (total + raw.Length > maxImageSize)
                    throw Bad(at, $"{what} exceeds {maxImageSize} bytes");
                hash.Append(raw.Span);
                total += raw.Length;
                await onChunk(raw, cancel).ConfigureAwait(false);
                continue;
            }
            if (type != FrameType.ImageEnd) throw Bad(at, $"{type} frame inside {what}");
            if (length != 16) throw Bad(at, $"end frame of {what} has wrong size");
            ulong sent = BinaryPrimitives.ReadUInt64LittleEndian(_payload);
            ulong sum = BinaryPrimitives.ReadUInt64LittleEndian(_payload.AsSpan(8));
            if (sent != (ulong)total)
                throw Bad(at, $"{what}: sender wrote {sent} bytes, {total} arrived");
            if (sum != hash.GetCurrentHashAsUInt64())
                throw Bad(at, $"{what}: checksum mismatch (data corrupted in transit)");
            _open = null;
            return total;
        }
    }

    /// <summary>
    /// Forwarding (image-proxy): the data frames of the image just begun, raw (codec none only), each read straight
    /// into a buffer from <paramref name="rent"/> (at least HeaderSize + MaxChunk bytes) at offset HeaderSize, so that
    /// the forwarder can put its own header in front and send the frame with one write. Lengths are checked here;
    /// the checksum is not: it is returned with the length from the end frame, for the forwarder to pass on to
    /// the receiver, which checks it against what arrived there (end to end, with no hashing on the way).
    /// </summary>
    public async Task<(ulong Length, ulong Checksum)> ForwardImageAsync(Func<CancellationToken, ValueTask<byte[]>> rent,
        Func<byte[], int, CancellationToken, ValueTask> onFrame, CancellationToken cancel = default)
    {
        var image = _open ?? throw new InvalidOperationException("no image has begun");
        string what = $"image {image.Snapshot}/{image.Name}";
        if (image.Codec != Codec.None) throw new StreamProtocolException($"{what} arrived compressed ({Codecs.Name(image.Codec)}); only raw images are forwarded");
        long total = 0;
        while (true)
        {
            var (type, length, at) = await ReadHeaderAsync(cancel, inside: what).ConfigureAwait(false)
                ?? throw new StreamProtocolException($"stream ended inside {what} after {total} bytes");
            if (type == FrameType.ImageData)
            {
                if (length > FrameFormat.MaxChunk) throw Bad(at, $"{what}: chunk of {length} bytes exceeds {FrameFormat.MaxChunk}");
                if (total + length > maxImageSize) throw Bad(at, $"{what} exceeds {maxImageSize} bytes");
                byte[] buffer = await rent(cancel).ConfigureAwait(false);
                await ReadPayloadAsync(buffer.AsMemory(FrameFormat.HeaderSize, length), type, at, what, cancel).ConfigureAwait(false);
                total += length;
                await onFrame(buffer, length, cancel).ConfigureAwait(false);
                continue;
            }
            if (type != FrameType.ImageEnd) throw Bad(at, $"{type} frame inside {what}");
            if (length != 16) throw Bad(at, $"end frame of {what} has wrong size");
            await ReadPayloadAsync(_payload.AsMemory(0, 16), type, at, what, cancel).ConfigureAwait(false);
            ulong sent = BinaryPrimitives.ReadUInt64LittleEndian(_payload);
            ulong sum = BinaryPrimitives.ReadUInt64LittleEndian(_payload.AsSpan(8));
            if (sent != (ulong)total)
                throw Bad(at, $"{what}: sender wrote {sent} bytes, {total} arrived");
            _open = null;
            return (sent, sum);
        }
    }

    private ReadOnlyMemory<byte> Unpack(Codec codec, int length, long at, string what)
    {
        if (codec == Codec.None)
        {
            if (length > FrameFormat.MaxChunk) throw Bad(at, $"{what}: chunk of {length} bytes exceeds {FrameFormat.MaxChunk}");
            return _payload.AsMemory(0, length);
        }
        if (length < 4) throw Bad(at, $"{what}: compressed chunk cut short");
        uint word = BinaryPrimitives.ReadUInt32LittleEndian(_payload);
        bool stored = (word & FrameFormat.StoredFlag) != 0;
        uint rawLength = word & ~FrameFormat.StoredFlag;
        if (rawLength > FrameFormat.MaxChunk) throw Bad(at, $"{what}: chunk of {rawLength} bytes exceeds {FrameFormat.MaxChunk}");
        if (stored)
        {
            if (rawLength != length - 4) throw Bad(at, $"{what}: stored chunk says {rawLength} bytes, the frame holds {length - 4}");
            return _payload.AsMemory(4, length - 4);
        }
        _raw ??= new byte[FrameFormat.MaxChunk];
        try
        {
            Codecs.Decompress(codec, _payload.AsSpan(4, length - 4), _raw.AsSpan(0, (int)rawLength), what);
        }
        catch (StreamProtocolException e)
        {
            throw Bad(at, e.Message);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or IndexOutOfRangeException)
        {
            throw Bad(at, $"{what}: {Codecs.Name(codec)} data is corrupt ({e.Message})");
        }
        return _raw.AsMemory(0, (int)rawLength);
    }

    private async Task<(FrameType Type, int Length, long Offset)?> ReadFrameAsync(CancellationToken cancel, string? inside)
    {
        var header = await ReadHeaderAsync(cancel, inside).ConfigureAwait(false);
        if (header is not { } h) return null;
        if (_payload.Length < h.Length) _payload = new byte[FrameFormat.MaxPayload];
        await ReadPayloadAsync(_payload.AsMemory(0, h.Length), h.Type, h.Offset, inside, cancel).ConfigureAwait(false);
        return h;
    }

    private async Task ReadPayloadAsync(Memory<byte> into, FrameType type, long at, string? inside, CancellationToken cancel)
    {
        if (await FillAsync(into, cancel).ConfigureAwait(false) < into.Length)
            throw Bad(at, $"stream ended inside a {type} frame{(inside is null ? "" : $" of {inside}")}");
    }

    /// <summary>The next frame's header, checked, or null at a clean end of stream; its payload is still to be read.</summary>
    private async Task<(FrameType Type, int Length, long Offset)?> ReadHeaderAsync(CancellationToken cancel, string? inside)
    {
        long at = _offset;
        int got = await FillAsync(_header, cancel).ConfigureAwait(false);
        if (got == 0) return null;
        if (got < _header.Length)
            throw Bad(at, $"stream ended inside a frame header{(inside is null ? "" : $" of {inside}")}");
        if (BinaryPrimitives.ReadUInt32LittleEndian(_header) != FrameFormat.Magic)
            throw Bad(at, $"bad frame magic 0x{BinaryPrimitives.ReadUInt32LittleEndian(_header):x8}");
        var type = (FrameType)_header[4];
        if (!Enum.IsDefined(type) || _header[5] != 0 || _header[6] != 0 || _header[7] != 0)
            throw Bad(at, $"unknown frame type {_header[4]}");
        ulong length = BinaryPrimitives.ReadUInt64LittleEndian(_header.AsSpan(8));
        if (length > FrameFormat.MaxPayload)
            throw Bad(at, $"frame payload length {length} exceeds {FrameFormat.MaxPayload}");
        return (type, (int)length, at);
    }

    private async Task<int> FillAsync(Memory<byte> buffer, CancellationToken cancel)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = await input.ReadAsync(buffer[total..], cancel).ConfigureAwait(false);
            if (n == 0) break;
            total += n;
        }
        _offset += total;
        return total;
    }

    private static string[] ReadStrings(ReadOnlySpan<byte> payload, int count, long at)
    {
        var result = new string[count];
        int pos = 0;
        for (int i = 0; i < count; i++)
        {
            if (payload.Length - pos < 2) throw Bad(at, "string field cut short");
            int len = BinaryPrimitives.ReadUInt16LittleEndian(payload[pos..]);
            pos += 2;
            if (payload.Length - pos < len) throw Bad(at, "string field cut short");
            result[i] = Encoding.UTF8.GetString(payload.Slice(pos, len));
            pos += len;
        }
        if (pos != payload.Length) throw Bad(at, "trailing bytes after string fields");
        return result;
    }

    private static StreamProtocolException Bad(long offset, string what) =>
        new($"image stream, frame at offset {offset}: {what}");
}
