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
/// One image kind. <paramref name="Name"/> is the name crit prints as "magic".
/// <paramref name="Entry"/> is the message every entry holds; <paramref name="HeadEntry"/>, when set, is a
/// different message for the first entry only (pagemap: pagemap_head). <paramref name="ExtraPayloadField"/>
/// names the field of <paramref name="Entry"/> whose value is the count of raw bytes that follow each entry
/// (pipes-data: "bytes"); kinds whose payload length is a sum of several fields list them all in
/// <see cref="ExtraPayloadFields"/>, which is the authoritative list. <paramref name="FileNamePattern"/> uses
/// "{id}" for a decimal number and "{hexid}" for a hexadecimal one (see <see cref="ImageKinds.FileName"/>).
/// </summary>
public sealed record ImageKind(
    string Name,
    uint Magic,
    MagicPrefix Prefix,
    MessageDescriptor? Entry,
    MessageDescriptor? HeadEntry,
    string? ExtraPayloadField,
    string FileNamePattern)
{
    /// <summary>
    /// Fields of <see cref="Entry"/> whose values, added up, give the count of raw bytes that follow each
    /// entry, in the order the payload parts are stored (tcp-stream: "inq_len" then "outq_len"). Empty when
    /// entries carry no payload. Defaults to <see cref="ExtraPayloadField"/> alone.
    /// </summary>
    public IReadOnlyList<string> ExtraPayloadFields { get; init; } =
        ExtraPayloadField is null ? [] : [ExtraPayloadField];

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
