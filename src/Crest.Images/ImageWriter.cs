// Writes CRIU-format images (CRIU images v1.1, as crit 3.17 reads them). All integers little-endian:
//
//   offset 0            4             8 (4 for inventory.img)
//   +-------------------+-------------+-------------+---------------------+-----------------+------
//   | prefix magic      | own magic   | length L0   | entry 0: L0 bytes,  | extra payload   | L1 ...
//   | 0x54564319 common | (CORE:      | (u32)       | serialized protobuf | (pipes-data:    |
//   | 0x55105940 service|  0x55053847)|             | message of the kind |  `bytes` bytes) |
//   +-------------------+-------------+-------------+---------------------+-----------------+------
//
//   - the prefix is the common magic for almost every image, the service magic for stats-* and
//     irmap-cache, and absent for inventory.img, which starts with its own magic;
//   - entries run to the end of the file; pagemap-N.img's first entry is a pagemap_head;
//   - the payload after an entry is as long as the entry's own length fields say (pipes-data and
//     fifo-data `bytes`, sk-queues `length`, tcp-stream `inq_len` + `outq_len`, bpfmap-data
//     `keys_bytes` + `values_bytes`); ghost-file and ipcns-* images have their own layouts (CritTool.cs);
//   - pages-N.img is raw page data without magic or framing (Pages/PageImageWriter.cs).
//
// Google.Protobuf serialises fields in field-number order, the order protobuf-c (CRIU) writes, so crit
// reads our entries as CRIU's. Each entry is checked against its schema before it is written.
using System.Buffers.Binary;
using Crest.Images.Wire;
using Google.Protobuf;

namespace Crest.Images;

/// <summary>Writes one protobuf image to a stream or a file.</summary>
public sealed class ImageWriter : IDisposable
{
    private readonly Stream _stream;
    private readonly bool _leaveOpen;
    private readonly bool _syncOnClose;
    private long _payloadOwed;
    private bool _disposed;

    /// <summary>Writes the magic of <paramref name="kind"/> to <paramref name="stream"/> at once.</summary>
    public ImageWriter(Stream stream, ImageKind kind, bool leaveOpen = false)
        : this(stream, kind, leaveOpen, syncOnClose: false)
    {
    }

    private ImageWriter(Stream stream, ImageKind kind, bool leaveOpen, bool syncOnClose)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(kind);
        if (kind.IsRaw)
            throw new ArgumentException($"{kind.Name} images are raw data without entries", nameof(kind));
        _stream = stream;
        _leaveOpen = leaveOpen;
        _syncOnClose = syncOnClose;
        Kind = kind;
        Span<byte> header = stackalloc byte[8];
        int length = 0;
        if (kind.Prefix != MagicPrefix.None)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(header,
                kind.Prefix == MagicPrefix.Service ? ImageKinds.ServiceMagic : ImageKinds.CommonMagic);
            length = 4;
        }
        BinaryPrimitives.WriteUInt32LittleEndian(header[length..], kind.Magic);
        _stream.Write(header[..(length + 4)]);
    }

    /// <summary>
    /// Creates (or truncates) the image file at <paramref name="path"/>. With <paramref name="syncOnClose"/>
    /// the data reaches the disk (fsync) before <see cref="Dispose"/> returns, so a dump that reports
    /// success leaves complete images even if the machine fails right after.
    /// </summary>
    public static ImageWriter Create(string path, ImageKind kind, bool syncOnClose = true)
    {
        var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
        try
        {
            return new ImageWriter(stream, kind, leaveOpen: false, syncOnClose);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    public ImageKind Kind { get; }

    /// <summary>Entries written so far.</summary>
    public int EntryCount { get; private set; }

    /// <summary>Writes one entry. For kinds with an extra payload, the payload must follow
    /// (<see cref="WritePayload"/>) before the next entry.</summary>
    public void WriteEntry(IMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        // Kinds that name their messages are checked against the embedded schema (no descriptor is built); the
        // message must then be the kind's entry (or head entry) type, as every regular image holds.
        if (Kind.EntrySchema(EntryCount) is { } schema)
            WriteChecked(message.ToByteArray(), schema);
        else
            WriteEntry(message.ToByteArray(), message.Descriptor);
    }

    /// <summary>Writes one already serialised entry, checked against the kind's entry message (for the
    /// irregular kinds, ghost-file chunks and ipcns-msg messages, use the overload with a descriptor).</summary>
    public void WriteEntry(ReadOnlySpan<byte> serialized) =>
        WriteEntry(serialized, (EntryCount == 0 ? Kind.HeadEntry : null) ?? Kind.Entry!);

    /// <summary>Writes one already serialised entry, checked against <paramref name="descriptor"/>.</summary>
    public void WriteEntry(ReadOnlySpan<byte> serialized, Google.Protobuf.Reflection.MessageDescriptor descriptor)
    {
        ArgumentNullException.ThrowIfNull(descriptor);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_payloadOwed != 0)
            throw new InvalidOperationException($"{Kind.Name} entry {EntryCount - 1} still owes {_payloadOwed} payload bytes");
        // Check the entry against its schema before it reaches the file: Google.Protobuf omits unset proto2
        // fields even when they are required, and CRIU refuses such an entry at restore time.
        WireMessage entry;
        try
        {
            entry = ProtoWire.Parse(descriptor, serialized);
        }
        catch (WireFormatException e)
        {
            throw new ArgumentException($"{Kind.Name} entry {EntryCount}: {e.Message}", nameof(serialized), e);
        }
        WriteFramed(serialized);
        if (Kind.ExtraPayloadFields.Count > 0 && !Kind.HasIrregularLayout)
        {
            foreach (string name in Kind.ExtraPayloadFields)
                _payloadOwed += (long)(entry.Scalar(name) ?? 0);
        }
        EntryCount++;
    }

    private void WriteChecked(ReadOnlySpan<byte> serialized, MessageSchema schema)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_payloadOwed != 0)
            throw new InvalidOperationException($"{Kind.Name} entry {EntryCount - 1} still owes {_payloadOwed} payload bytes");
        try
        {
            ProtoWire.Check(schema, serialized);
        }
        catch (WireFormatException e)
        {
            throw new ArgumentException($"{Kind.Name} entry {EntryCount}: {e.Message}", nameof(serialized), e);
        }
        WriteFramed(serialized);
        foreach (string name in Kind.ExtraPayloadFields)
            _payloadOwed += (long)(ProtoWire.Scalar(schema, serialized, name) ?? 0);
        EntryCount++;
    }

    private void WriteFramed(ReadOnlySpan<byte> serialized)
    {
        Span<byte> length = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(length, checked((uint)serialized.Length));
        _stream.Write(length);
        _stream.Write(serialized);
    }

    /// <summary>Writes extra payload bytes of the entry written last (may be called several times).</summary>
    public void WritePayload(ReadOnlySpan<byte> data)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!Kind.HasIrregularLayout)
        {
            if (data.Length > _payloadOwed)
                throw new InvalidOperationException($"{Kind.Name} entry {EntryCount - 1}: payload of {data.Length} bytes but only {_payloadOwed} declared");
            _payloadOwed -= data.Length;
        }
        _stream.Write(data);
    }

    public void Flush() => _stream.Flush();

    /// <summary>Checks that the last entry got all its extra payload; call it before Dispose when the
    /// image is meant to be whole (Dispose does not throw, so it cannot hide an earlier error).</summary>
    public void Complete()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_payloadOwed != 0)
            throw new InvalidOperationException($"{Kind.Name} entry {EntryCount - 1} still owes {_payloadOwed} payload bytes");
    }

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        try
        {
            if (_stream is FileStream file)
                file.Flush(flushToDisk: _syncOnClose);
            else
                _stream.Flush();
        }
        finally
        {
            if (!_leaveOpen)
                _stream.Dispose();
        }
    }
}
