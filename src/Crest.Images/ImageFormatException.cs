// The one error a malformed or unreadable image turns into: names the file, the entry and the byte offset
// so that a report points straight at the broken place ("core-42.img: entry 3 at offset 0x1c: ...").
using System.Globalization;

namespace Crest.Images;

/// <summary>
/// An image file is not what its format says it must be: wrong magic, truncated header or entry, a length
/// larger than the file or than any sane entry, protobuf bytes that do not parse, a required field missing.
/// </summary>
public sealed class ImageFormatException : Exception
{
    /// <summary>Entry index used for errors in the file header (before the first entry).</summary>
    public const int HeaderEntry = -1;

    public ImageFormatException(string file, int entryIndex, long offset, string reason, Exception? inner = null)
        : base(Format(file, entryIndex, offset, reason), inner)
    {
        File = file;
        EntryIndex = entryIndex;
        Offset = offset;
        Reason = reason;
    }

    /// <summary>The image's name as given by the caller (usually the file name, "core-42.img").</summary>
    public string File { get; }

    /// <summary>Zero-based index of the entry that is broken; <see cref="HeaderEntry"/> for the magic.</summary>
    public int EntryIndex { get; }

    /// <summary>Byte offset in the file where the broken entry (or the broken header field) starts.</summary>
    public long Offset { get; }

    /// <summary>What is wrong, without the location prefix.</summary>
    public string Reason { get; }

    private static string Format(string file, int entryIndex, long offset, string reason)
    {
        string where = entryIndex == HeaderEntry
            ? string.Create(CultureInfo.InvariantCulture, $"header at offset 0x{offset:x}")
            : string.Create(CultureInfo.InvariantCulture, $"entry {entryIndex} at offset 0x{offset:x}");
        return $"{file}: {where}: {reason}";
    }
}
