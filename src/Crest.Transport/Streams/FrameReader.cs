using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;

namespace Crest.Transport.Streams;

/// <summary>One event read from an image stream.</summary>
public abstract record StreamEvent;
public sealed record HelloEvent(uint Version) : StreamEvent;
/// <summary>An image arrived whole and its length and checksum matched.</summary>
public sealed record ImageEvent(string Snapshot, string Name, byte[] Content) : StreamEvent;
public sealed record DumpEndEvent(string Snapshot) : StreamEvent;
public sealed record AckEvent(string Snapshot) : StreamEvent;
public sealed record ErrorEvent(string Message) : StreamEvent;

/// <summary>
/// Reads frames and reassembles images, checking order, lengths and checksums. A stream that
/// ends inside a frame or an image is an error naming the image, never a short image.
/// </summary>
public sealed class FrameReader(Stream input, long maxImageSize = 64L << 30)
{
    private readonly byte[] _header = new byte[FrameFormat.HeaderSize];
    private long _offset;

    /// <summary>The next event, or null at a clean end of stream (between frames, outside an image).</summary>
    public async Task<StreamEvent?> ReadAsync(CancellationToken cancel = default)
    {
        var frame = await ReadFrameAsync(cancel, inside: null).ConfigureAwait(false);
        if (frame is null) return null;
        var (type, payload, at) = frame.Value;
        switch (type)
        {
            case FrameType.Hello:
                if (payload.Length != 4) throw Bad(at, "hello frame of wrong size");
                return new HelloEvent(BinaryPrimitives.ReadUInt32LittleEndian(payload));
            case FrameType.ImageBegin:
            {
                var s = ReadStrings(payload, 2, at);
                return await ReadImageAsync(s[0], s[1], cancel).ConfigureAwait(false);
            }
            case FrameType.DumpEnd:
                return new DumpEndEvent(ReadStrings(payload, 1, at)[0]);
            case FrameType.Ack:
                return new AckEvent(ReadStrings(payload, 1, at)[0]);
            case FrameType.Error:
                return new ErrorEvent(ReadStrings(payload, 1, at)[0]);
            default:
                throw Bad(at, $"{type} frame outside an image");
        }
    }

    private async Task<ImageEvent> ReadImageAsync(string snapshot, string name, CancellationToken cancel)
    {
        string what = $"image {snapshot}/{name}";
        var content = new MemoryStream();
        var hash = new XxHash3();
        while (true)
        {
            var frame = await ReadFrameAsync(cancel, inside: what).ConfigureAwait(false)
                ?? throw new StreamProtocolException($"stream ended inside {what} after {content.Length} bytes");
            var (type, payload, at) = frame;
            if (type == FrameType.ImageData)
            {
                if (content.Length + payload.Length > maxImageSize)
                    throw Bad(at, $"{what} exceeds {maxImageSize} bytes");
                hash.Append(payload);
                content.Write(payload);
                continue;
            }
            if (type != FrameType.ImageEnd) throw Bad(at, $"{type} frame inside {what}");
            if (payload.Length != 16) throw Bad(at, $"end frame of {what} has wrong size");
            ulong length = BinaryPrimitives.ReadUInt64LittleEndian(payload);
            ulong sum = BinaryPrimitives.ReadUInt64LittleEndian(payload.AsSpan(8));
            if (length != (ulong)content.Length)
                throw Bad(at, $"{what}: sender wrote {length} bytes, {content.Length} arrived");
            if (sum != hash.GetCurrentHashAsUInt64())
                throw Bad(at, $"{what}: checksum mismatch (data corrupted in transit)");
            return new ImageEvent(snapshot, name, content.ToArray());
        }
    }

    private async Task<(FrameType Type, byte[] Payload, long Offset)?> ReadFrameAsync(CancellationToken cancel, string? inside)
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
        var payload = new byte[length];
        if (await FillAsync(payload, cancel).ConfigureAwait(false) < payload.Length)
            throw Bad(at, $"stream ended inside a {type} frame{(inside is null ? "" : $" of {inside}")}");
        return (type, payload, at);
    }

    private async Task<int> FillAsync(byte[] buffer, CancellationToken cancel)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = await input.ReadAsync(buffer.AsMemory(total), cancel).ConfigureAwait(false);
            if (n == 0) break;
            total += n;
        }
        _offset += total;
        return total;
    }

    private static string[] ReadStrings(byte[] payload, int count, long at)
    {
        var result = new string[count];
        int pos = 0;
        for (int i = 0; i < count; i++)
        {
            if (payload.Length - pos < 2) throw Bad(at, "string field cut short");
            int len = BinaryPrimitives.ReadUInt16LittleEndian(payload.AsSpan(pos));
            pos += 2;
            if (payload.Length - pos < len) throw Bad(at, "string field cut short");
            result[i] = Encoding.UTF8.GetString(payload, pos, len);
            pos += len;
        }
        if (pos != payload.Length) throw Bad(at, "trailing bytes after string fields");
        return result;
    }

    private static StreamProtocolException Bad(long offset, string what) =>
        new($"image stream, frame at offset {offset}: {what}");
}
