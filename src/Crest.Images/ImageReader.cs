// Reads CRIU-format images one entry at a time (layout drawn in ImageWriter.cs). Nothing is loaded whole:
// the header, then per entry a u32 length and that many bytes, then the entry's extra payload if its kind
// has one. Every length read from the file is bounded before anything is allocated (an entry larger than
// MaxEntrySize or than what is left of the file is corruption), and every failure is an
// ImageFormatException naming the file, the entry index and the byte offset.
using System.Buffers.Binary;
using System.Globalization;
using Crest.Images.Wire;
using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace Crest.Images;

/// <summary>Streams the entries of one protobuf image (not raw images such as pages-N.img).</summary>
public sealed class ImageReader : IDisposable
{
    /// <summary>Default bound on one entry: CRIU's largest entries (core, mm with saved auxv) are kilobytes.</summary>
    public const int DefaultMaxEntrySize = 64 << 20;

    /// <summary>Default bound on one extra payload held in memory (pipe and socket queue contents).</summary>
    public const int DefaultMaxPayloadSize = 1 << 30;

    private readonly Stream _stream;
    private readonly bool _leaveOpen;
    private long _offset;
    private long _pendingPayload;
    private long _lastEntryOffset;

    /// <summary>
    /// Reads the header of the image in <paramref name="stream"/>. With <paramref name="expected"/> the magic
    /// must be that kind's (prefix included); without it the kind is found from the magic.
    /// </summary>
    /// <param name="name">The image's name for error messages, usually its file name ("core-42.img").</param>
    /// <exception cref="ImageFormatException">The header is truncated or the magic is wrong or unknown.</exception>
    public ImageReader(Stream stream, string name, ImageKind? expected = null, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(name);
        if (expected is { IsRaw: true })
            throw new ArgumentException($"{expected.Name} images are raw data without entries", nameof(expected));
        _stream = stream;
        _leaveOpen = leaveOpen;
        Name = name;
        Kind = ReadHeader(expected);
    }

    /// <summary>Opens the image file at <paramref name="path"/> for sequential reading.</summary>
    public static ImageReader Open(string path, ImageKind? expected = null)
    {
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, System.IO.FileOptions.SequentialScan);
        try
        {
            return new ImageReader(stream, Path.GetFileName(path), expected);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>The kind named by the image's magic.</summary>
    public ImageKind Kind { get; }

    /// <summary>The name used in error messages.</summary>
    public string Name { get; }

    /// <summary>Index of the entry the next read returns.</summary>
    public int EntryIndex { get; private set; }

    /// <summary>Bytes consumed from the start of the image.</summary>
    public long Offset => _offset;

    /// <summary>Entries longer than this are reported as corruption.</summary>
    public int MaxEntrySize { get; init; } = DefaultMaxEntrySize;

    /// <summary>Extra payloads longer than this are reported as corruption.</summary>
    public long MaxPayloadSize { get; init; } = DefaultMaxPayloadSize;

    /// <summary>Bytes of extra payload that follow the entry read last and have not been read yet.</summary>
    public long PendingPayloadLength => _pendingPayload;

    /// <summary>The message type of entry <paramref name="index"/> (pagemap: the head first).</summary>
    public MessageDescriptor EntryDescriptor(int index) =>
        (index == 0 ? Kind.HeadEntry : null) ?? Kind.Entry
        ?? throw new InvalidOperationException($"{Kind.Name} images have no protobuf entries");

    /// <summary>
    /// Reads the next entry's bytes (an unread extra payload of the previous entry is skipped first).
    /// False at the clean end of the image. For kinds with an extra payload the entry is parsed to learn
    /// the payload's length, which <see cref="PendingPayloadLength"/> then reports.
    /// </summary>
    public bool TryReadEntry(out byte[] entry)
    {
        SkipPendingPayload();
        if (Kind.HasIrregularLayout && EntryIndex > 0)
            throw Error(EntryIndex, _offset, $"{Kind.Name} images are not a plain sequence of entries after the first");
        return TryReadEntryBytes(out entry);
    }

    /// <summary>Reads and parses the next entry; null at the clean end of the image.</summary>
    /// <exception cref="ImageFormatException">The entry is truncated, too long, malformed, or lacks a required field.</exception>
    public T? ReadEntry<T>(MessageParser<T> parser) where T : class, IMessage<T>
    {
        ArgumentNullException.ThrowIfNull(parser);
        if (!TryReadEntry(out byte[] bytes))
            return null;
        return ParseEntry(parser, bytes, EntryIndex - 1, _lastEntryOffset);
    }

    /// <summary>Reads the remaining entries one at a time (extra payloads are skipped).</summary>
    public IEnumerable<T> ReadEntries<T>(MessageParser<T> parser) where T : class, IMessage<T>
    {
        ArgumentNullException.ThrowIfNull(parser);
        while (ReadEntry(parser) is T entry)
            yield return entry;
    }

    /// <summary>Reads the next entry as a wire-level message of its schema type (validated).</summary>
    internal WireMessage? ReadWireEntry()
    {
        if (!TryReadEntry(out byte[] bytes))
            return null;
        return ParseWire(EntryDescriptor(EntryIndex - 1), bytes, EntryIndex - 1, _lastEntryOffset);
    }

    /// <summary>Reads the pending extra payload of the entry read last into memory.</summary>
    public byte[] ReadPayload()
    {
        byte[] payload = new byte[_pendingPayload];
        ReadExactly(payload, EntryIndex - 1, "extra payload", _offset);
        _pendingPayload = 0;
        return payload;
    }

    /// <summary>Copies the pending extra payload of the entry read last to <paramref name="destination"/>.</summary>
    public void CopyPayloadTo(Stream destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        byte[] buffer = new byte[(int)Math.Min(_pendingPayload, 1 << 20)];
        while (_pendingPayload > 0)
        {
            int chunk = (int)Math.Min(_pendingPayload, buffer.Length);
            ReadExactly(buffer.AsSpan(0, chunk), EntryIndex - 1, "extra payload", _offset);
            destination.Write(buffer, 0, chunk);
            _pendingPayload -= chunk;
        }
    }

    public void Dispose()
    {
        if (!_leaveOpen)
            _stream.Dispose();
    }

    // ---- pieces for the layouts crit decodes with dedicated handlers (ghost-file, ipcns-*) ----

    /// <summary>Reads the next length-prefixed entry without any kind-specific handling.</summary>
    internal bool TryReadEntryBytes(out byte[] entry)
    {
        _lastEntryOffset = _offset;
        Span<byte> lengthBytes = stackalloc byte[4];
        int got = ReadAtMost(lengthBytes);
        if (got == 0)
        {
            entry = [];
            return false;
        }
        if (got < 4)
            throw Error(EntryIndex, _lastEntryOffset, $"truncated: {got} of 4 length bytes");

        uint length = BinaryPrimitives.ReadUInt32LittleEndian(lengthBytes);
        long remaining = Remaining();
        if (length > (uint)MaxEntrySize)
            throw Error(EntryIndex, _lastEntryOffset, $"length {length} exceeds the limit of {MaxEntrySize} bytes");
        if (remaining >= 0 && length > remaining)
            throw Error(EntryIndex, _lastEntryOffset, $"truncated: length {length} but only {remaining} bytes remain");

        entry = new byte[length];
        ReadExactly(entry, EntryIndex, "entry", _lastEntryOffset);
        int index = EntryIndex++;
        if (Kind.ExtraPayloadFields.Count > 0)
        {
            _pendingPayload = Kind.EntrySchema(index) is { } schema
                ? PayloadLength(CheckWire(schema, entry, index, _lastEntryOffset), entry, index)
                : PayloadLength(ParseWire(EntryDescriptor(index), entry, index, _lastEntryOffset), index);
        }
        return true;
    }

    /// <summary>Declares that <paramref name="length"/> raw bytes follow the entry read last.</summary>
    internal void ExpectPayload(long length, int entryIndex)
    {
        long remaining = Remaining();
        if (length < 0 || length > MaxPayloadSize || (remaining >= 0 && length > remaining))
            throw Error(entryIndex, _offset, $"truncated: payload of {length} bytes but only {remaining} bytes remain");
        _pendingPayload = length;
    }

    /// <summary>Reads everything up to the end of the image (bounded by <see cref="MaxPayloadSize"/>).</summary>
    internal byte[] ReadToEnd(int entryIndex)
    {
        var output = new MemoryStream();
        byte[] buffer = new byte[1 << 16];
        int got;
        while ((got = ReadAtMost(buffer)) > 0)
        {
            if (output.Length + got > MaxPayloadSize)
                throw Error(entryIndex, _offset, $"trailing data longer than {MaxPayloadSize} bytes");
            output.Write(buffer, 0, got);
        }
        return output.ToArray();
    }

    internal ImageFormatException Error(int entryIndex, long offset, string reason, Exception? inner = null) =>
        new(Name, entryIndex, offset, reason, inner);

    internal WireMessage ParseWire(MessageDescriptor descriptor, byte[] bytes, int index, long entryOffset)
    {
        try
        {
            return ProtoWire.Parse(descriptor, bytes);
        }
        catch (WireFormatException e)
        {
            throw Error(index, entryOffset,
                string.Create(CultureInfo.InvariantCulture, $"{descriptor.Name}: {e.Message} (byte {e.Offset} of the entry)"), e);
        }
    }

    /// <summary>The check of <see cref="ParseWire"/> against a descriptor-free schema (the dump and restore paths).</summary>
    private MessageSchema CheckWire(MessageSchema schema, byte[] bytes, int index, long entryOffset)
    {
        try
        {
            ProtoWire.Check(schema, bytes);
            return schema;
        }
        catch (WireFormatException e)
        {
            throw Error(index, entryOffset,
                string.Create(CultureInfo.InvariantCulture, $"{schema.Name}: {e.Message} (byte {e.Offset} of the entry)"), e);
        }
    }

    private T ParseEntry<T>(MessageParser<T> parser, byte[] bytes, int index, long entryOffset) where T : class, IMessage<T>
    {
        // Our wire walk first: it names the field and byte that are wrong, and it enforces proto2
        // `required`, which Google.Protobuf does not (CRIU's protobuf-c does).
        if (Kind.EntrySchema(index) is { } schema)
            CheckWire(schema, bytes, index, entryOffset);
        else
            ParseWire(EntryDescriptor(index), bytes, index, entryOffset);
        try
        {
            return parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw Error(index, entryOffset, $"{typeof(T).Name}: {e.Message}", e);
        }
    }

    private long PayloadLength(WireMessage entry, int index) => PayloadLength(name => entry.Scalar(name), index);

    private long PayloadLength(MessageSchema schema, byte[] entry, int index) =>
        PayloadLength(name => ProtoWire.Scalar(schema, entry, name), index);

    private long PayloadLength(Func<string, ulong?> scalar, int index)
    {
        long total = 0;
        foreach (string name in Kind.ExtraPayloadFields)
        {
            ulong value = scalar(name) ?? 0;
            if (value > (ulong)MaxPayloadSize)
                throw Error(index, _lastEntryOffset, $"payload length {name}={value} exceeds the limit of {MaxPayloadSize} bytes");
            total += (long)value;
        }
        long remaining = Remaining();
        if (total > MaxPayloadSize || (remaining >= 0 && total > remaining))
            throw Error(index, _lastEntryOffset, $"truncated: payload of {total} bytes but only {remaining} bytes remain");
        return total;
    }

    private void SkipPendingPayload()
    {
        if (_pendingPayload == 0)
            return;
        if (_stream.CanSeek)
        {
            _stream.Seek(_pendingPayload, SeekOrigin.Current);
            _offset += _pendingPayload;
            _pendingPayload = 0;
            return;
        }
        CopyPayloadTo(Stream.Null);
    }

    private ImageKind ReadHeader(ImageKind? expected)
    {
        Span<byte> word = stackalloc byte[4];
        uint first = ReadHeaderWord(word);
        uint magic = first;
        MagicPrefix prefix = MagicPrefix.None;
        if (first is ImageKinds.CommonMagic or ImageKinds.ServiceMagic)
        {
            prefix = first == ImageKinds.CommonMagic ? MagicPrefix.Common : MagicPrefix.Service;
            magic = ReadHeaderWord(word);
        }

        ImageKind? kind = expected ?? ImageKinds.ByMagic(magic);
        if (kind is null)
        {
            string hint = ImageKinds.ForFileName(Name) is { IsRaw: true } raw
                ? $" ({Name} is a {raw.Name} image: raw data without magic or entries)"
                : "";
            throw Error(ImageFormatException.HeaderEntry, _offset - 4, $"unknown magic 0x{magic:x8}{hint}");
        }
        if (kind.Magic != magic)
            throw Error(ImageFormatException.HeaderEntry, _offset - 4,
                $"bad magic 0x{magic:x8}, expected {kind.Name} 0x{kind.Magic:x8}");
        if (kind.Prefix != prefix)
            throw Error(ImageFormatException.HeaderEntry, 0,
                $"{kind.Name} magic 0x{magic:x8} behind {Describe(prefix)}, expected {Describe(kind.Prefix)}");
        return kind;
    }

    private static string Describe(MagicPrefix prefix) => prefix switch
    {
        MagicPrefix.Common => "the common magic 0x54564319",
        MagicPrefix.Service => "the service magic 0x55105940",
        _ => "no prefix magic",
    };

    private uint ReadHeaderWord(Span<byte> word)
    {
        long at = _offset;
        int got = ReadAtMost(word);
        if (got < 4)
            throw Error(ImageFormatException.HeaderEntry, at, $"truncated header: {got} of 4 magic bytes");
        return BinaryPrimitives.ReadUInt32LittleEndian(word);
    }

    // Bytes left in the stream when that can be known (seekable streams), else -1.
    private long Remaining() => _stream.CanSeek ? Math.Max(0, _stream.Length - _stream.Position) : -1;

    private int ReadAtMost(Span<byte> buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int got = _stream.Read(buffer[total..]);
            if (got == 0)
                break;
            total += got;
        }
        _offset += total;
        return total;
    }

    private void ReadExactly(Span<byte> buffer, int index, string what, long errorOffset)
    {
        int got = ReadAtMost(buffer);
        if (got < buffer.Length)
            throw Error(index, errorOffset, $"truncated {what}: {got} of {buffer.Length} bytes");
    }
}
