// One kind of CRIU image file: how it starts (magics), what its entries are, how it is named.
// The on-disk shape every protobuf image shares (CRIU images v1.1):
//
//   +--------------------+----------------+--------------------------------------------+
//   | prefix magic (u32) | own magic (u32)| entries: { u32 length | message bytes       |
//   | 0x54564319 common, |                |            [| extra payload bytes] }*      |
//   | 0x55105940 service,|                |                                            |
//   | absent: inventory  |                |                                            |
//   +--------------------+----------------+--------------------------------------------+
//
// All integers little-endian. Raw images (pages-N.img) have neither magic nor framing.
using Google.Protobuf.Reflection;

namespace Crest.Images;

/// <summary>What stands in front of an image's own magic.</summary>
public enum MagicPrefix
{
    /// <summary>Only the image's own magic (inventory.img).</summary>
    None,
    /// <summary><see cref="ImageKinds.CommonMagic"/> then the own magic: almost every image.</summary>
    Common,
    /// <summary><see cref="ImageKinds.ServiceMagic"/> then the own magic: stats and irmap-cache.</summary>
    Service,
    /// <summary>No magic and no framing at all: page contents, tarballs, ip-tool dumps.</summary>
    Raw,
}

/// <summary>
/// One image kind. <paramref name="name"/> is the name crit prints as "magic".
/// <paramref name="entry"/> yields the message every entry holds; <paramref name="headEntry"/>, when set, a
/// different message for the first entry only (pagemap: pagemap_head). Both are looked up only when asked
/// for: building a schema's descriptor builds its whole .proto file and its imports (descriptor.proto via
/// opts.proto), tens of milliseconds for all of them, so a dump touches only the files it writes.
/// <paramref name="extraPayloadField"/> names the field of <see cref="Entry"/> whose value is the count of raw
/// bytes that follow each entry (pipes-data: "bytes"); kinds whose payload length is a sum of several fields
/// list them all in <see cref="ExtraPayloadFields"/>, which is the authoritative list.
/// <paramref name="fileNamePattern"/> uses "{id}" for a decimal number and "{hexid}" for a hexadecimal one
/// (see <see cref="ImageKinds.FileName"/>).
/// </summary>
public sealed record ImageKind
{
    private readonly Func<MessageDescriptor>? _entry;
    private readonly Func<MessageDescriptor>? _headEntry;

    public ImageKind(string name, uint magic, MagicPrefix prefix, Func<MessageDescriptor>? entry,
        Func<MessageDescriptor>? headEntry, string? extraPayloadField, string fileNamePattern)
        : this(name, magic, prefix, null, entry, null, headEntry, extraPayloadField, fileNamePattern)
    {
    }

    /// <summary>
    /// A kind whose entry messages are also named: <paramref name="entryName"/> and <paramref name="headEntryName"/>
    /// are message names of the criu package ("CoreEntry", nameof the generated class), which let readers and
    /// writers check entries against the embedded schemas (Wire/WireSchemas.cs) without building descriptors.
    /// </summary>
    public ImageKind(string name, uint magic, MagicPrefix prefix, string? entryName, Func<MessageDescriptor>? entry,
        string? headEntryName, Func<MessageDescriptor>? headEntry, string? extraPayloadField, string fileNamePattern)
    {
        EntryName = entryName;
        HeadEntryName = headEntryName;
        Name = name;
        Magic = magic;
        Prefix = prefix;
        _entry = entry;
        _headEntry = headEntry;
        ExtraPayloadField = extraPayloadField;
        FileNamePattern = fileNamePattern;
        ExtraPayloadFields = extraPayloadField is null ? [] : [extraPayloadField];
    }

    /// <summary>The name crit prints as "magic" ("CORE").</summary>
    public string Name { get; }

    /// <summary>The image's own magic; 0 for raw images.</summary>
    public uint Magic { get; }

    public MagicPrefix Prefix { get; }

    /// <summary>The message every entry holds (null for raw images).</summary>
    public MessageDescriptor? Entry => _entry?.Invoke();

    /// <summary>The message of the first entry when it differs from <see cref="Entry"/> (pagemap_head).</summary>
    public MessageDescriptor? HeadEntry => _headEntry?.Invoke();

    /// <summary>Name of the entry message in the criu package ("CoreEntry"); null when not given.</summary>
    public string? EntryName { get; }

    /// <summary>Name of the head entry message ("PagemapHead"); null when there is none or it was not given.</summary>
    public string? HeadEntryName { get; }

    /// <summary>
    /// The schema to check entry <paramref name="index"/> against without Google.Protobuf descriptors; null when
    /// the kind does not name its messages (callers then check against the descriptor) or its layout is irregular.
    /// </summary>
    internal Wire.MessageSchema? EntrySchema(int index)
    {
        if (HasIrregularLayout) return null;
        if (index == 0 && _headEntry is not null)
            return HeadEntryName is null ? null : Wire.WireSchemas.FindCriu(HeadEntryName);
        return EntryName is null ? null : Wire.WireSchemas.FindCriu(EntryName);
    }

    /// <summary>True when the first entry is a different message (<see cref="HeadEntry"/>), without building it.</summary>
    public bool HasHeadEntry => _headEntry is not null;

    public string? ExtraPayloadField { get; }

    public string FileNamePattern { get; }

    /// <summary>
    /// Fields of <see cref="Entry"/> whose values, added up, give the count of raw bytes that follow each
    /// entry, in the order the payload parts are stored (tcp-stream: "inq_len" then "outq_len"). Empty when
    /// entries carry no payload. Defaults to <see cref="ExtraPayloadField"/> alone.
    /// </summary>
    public IReadOnlyList<string> ExtraPayloadFields { get; init; }

    /// <summary>
    /// True when the file is not a plain stream of entries plus counted payloads, and crit decodes it with
    /// a dedicated handler: ghost-file (a head entry, then chunk entries or the whole file contents),
    /// ipcns-shm (segment bytes padded to 4), ipcns-sem (u16 values padded to 8), ipcns-msg (nested message
    /// entries with payloads padded to 8). A generic reader must not walk past the first entry of these.
    /// </summary>
    public bool HasIrregularLayout { get; init; }

    /// <summary>True when the image is raw data without magic or entries (pages-N.img).</summary>
    public bool IsRaw => Prefix == MagicPrefix.Raw;
}
