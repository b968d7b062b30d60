using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;

namespace Crest.Transport.Streams;

/// <summary>Writes frames to a stream (a socket, a pipe, a file). Not thread-safe: one writer per stream.</summary>
public sealed class FrameWriter(Stream output)
{
    private readonly byte[] _header = new byte[FrameFormat.HeaderSize];

    public Task WriteHelloAsync(CancellationToken cancel = default)
    {
        var payload = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(payload, FrameFormat.ProtocolVersion);
        return WriteFrameAsync(FrameType.Hello, payload, cancel);
    }

    /// <summary>Sends one whole image: begin, its bytes in bounded chunks, then length and checksum.</summary>
    public async Task WriteImageAsync(string snapshot, string name, Stream content, CancellationToken cancel = default)
    {
        await WriteFrameAsync(FrameType.ImageBegin, Strings(snapshot, name), cancel).ConfigureAwait(false);
        var hash = new XxHash3();
        var buffer = new byte[FrameFormat.MaxPayload];
        ulong total = 0;
        int n;
        while ((n = await content.ReadAsync(buffer, cancel).ConfigureAwait(false)) > 0)
        {
            hash.Append(buffer.AsSpan(0, n));
            total += (ulong)n;
            await WriteFrameAsync(FrameType.ImageData, buffer.AsMemory(0, n), cancel).ConfigureAwait(false);
        }
        var end = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(end, total);
        BinaryPrimitives.WriteUInt64LittleEndian(end.AsSpan(8), hash.GetCurrentHashAsUInt64());
        await WriteFrameAsync(FrameType.ImageEnd, end, cancel).ConfigureAwait(false);
    }

    public Task WriteDumpEndAsync(string snapshot, CancellationToken cancel = default) =>
        WriteFrameAsync(FrameType.DumpEnd, Strings(snapshot), cancel);

    public Task WriteAckAsync(string snapshot, CancellationToken cancel = default) =>
        WriteFrameAsync(FrameType.Ack, Strings(snapshot), cancel);

    public Task WriteErrorAsync(string message, CancellationToken cancel = default) =>
        WriteFrameAsync(FrameType.Error, Strings(message.Length > 4096 ? message[..4096] : message), cancel);

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
