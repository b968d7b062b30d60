// /proc/PID/mountinfo (proc(5), fs/proc_namespace.c show_mountinfo, since Linux 2.6.26):
//
//   36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//   (1)(2) (3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)
//
// Fields are separated by exactly one space; (7) is zero or more optional fields ended by "-".
// Paths and the source are escaped with mangle(): space, tab, newline and backslash (and '#' in
// some kernels) become \ooo octal. The source may be empty (two spaces in a row).
namespace Crest.Kernel.Proc;

/// <summary>One line of /proc/PID/mountinfo, escapes undone.</summary>
/// <param name="SharedGroup">shared:N, the peer group this mount belongs to.</param>
/// <param name="MasterGroup">master:N, the peer group this mount receives propagation from.</param>
/// <param name="PropagateFrom">propagate_from:N, the closest dominant peer group visible in this namespace.</param>
/// <param name="OtherOptionalFields">Optional fields this parser does not know, as printed.</param>
public sealed record MountInfo(
    int MountId,
    int ParentId,
    uint Major,
    uint Minor,
    string Root,
    string MountPoint,
    string MountOptions,
    int? SharedGroup,
    int? MasterGroup,
    int? PropagateFrom,
    bool Unbindable,
    IReadOnlyList<string> OtherOptionalFields,
    string FsType,
    string Source,
    string SuperOptions);

/// <summary>Parser for /proc/PID/mountinfo.</summary>
public static class ProcMountInfo
{
    private const ProcFileKind K = ProcFileKind.MountInfo;

    public static IReadOnlyList<MountInfo> Parse(ReadOnlySpan<byte> text)
    {
        var result = new List<MountInfo>();
        var lines = new ProcLines(text);
        while (lines.Next(out var line))
        {
            if (!line.IsEmpty)
                result.Add(ParseLine(line, lines.Number));
        }
        return result;
    }

    private static MountInfo ParseLine(ReadOnlySpan<byte> line, int ln)
    {
        var rest = new SingleSpaceFields(line, ln);
        int mountId = ProcText.ParseInt32(rest.Next("mount id"), K, ln, "mount id");
        int parentId = ProcText.ParseInt32(rest.Next("parent id"), K, ln, "parent id");
        ReadOnlySpan<byte> dev = rest.Next("major:minor");
        int colon = dev.IndexOf((byte)':');
        if (colon < 0)
            throw new ProcParseException(K, ln, "device is not major:minor", line);
        uint major = ProcText.ParseUInt32(dev[..colon], 10, K, ln, "major");
        uint minor = ProcText.ParseUInt32(dev[(colon + 1)..], 10, K, ln, "minor");
        string root = Unescape(rest.Next("root"));
        string mountPoint = Unescape(rest.Next("mount point"));
        string options = ProcText.Utf8(rest.Next("mount options"));

        int? shared = null, master = null, propagateFrom = null;
        bool unbindable = false;
        List<string>? otherOptional = null;
        while (true)
        {
            ReadOnlySpan<byte> opt = rest.Next("\"-\" separator");
            if (opt.SequenceEqual("-"u8))
                break;
            if (opt.StartsWith("shared:"u8))
                shared = ProcText.ParseInt32(opt[7..], K, ln, "shared peer group");
            else if (opt.StartsWith("master:"u8))
                master = ProcText.ParseInt32(opt[7..], K, ln, "master peer group");
            else if (opt.StartsWith("propagate_from:"u8))
                propagateFrom = ProcText.ParseInt32(opt[15..], K, ln, "propagate_from peer group");
            else if (opt.SequenceEqual("unbindable"u8))
                unbindable = true;
            else
                (otherOptional ??= []).Add(ProcText.Utf8(opt));
        }

        string fsType = Unescape(rest.Next("filesystem type"));
        if (fsType.Length == 0)
            throw new ProcParseException(K, ln, "empty filesystem type", line);
        string source = Unescape(rest.Next("source"));
        // Super options are the rest of the line; they may be absent on odd filesystems.
        string superOptions = ProcText.Utf8(rest.Rest);
        return new MountInfo(mountId, parentId, major, minor, root, mountPoint, options, shared, master,
            propagateFrom, unbindable, (IReadOnlyList<string>?)otherOptional ?? [], fsType, source, superOptions);
    }

    /// <summary>Fields separated by exactly one space, so that an empty field stays a field.</summary>
    private ref struct SingleSpaceFields(ReadOnlySpan<byte> line, int lineNumber)
    {
        private readonly ReadOnlySpan<byte> _line = line;
        private int _pos;

        public readonly ReadOnlySpan<byte> Rest => _pos <= _line.Length ? _line[_pos..] : default;

        public ReadOnlySpan<byte> Next(string what)
        {
            if (_pos > _line.Length)
                throw new ProcParseException(K, lineNumber, $"missing {what}", _line);
            int sp = _line[_pos..].IndexOf((byte)' ');
            int end = sp < 0 ? _line.Length : _pos + sp;
            ReadOnlySpan<byte> field = _line[_pos..end];
            _pos = end + 1;
            return field;
        }
    }

    private static string Unescape(ReadOnlySpan<byte> s) => ProcText.Utf8(ProcText.UnescapeOctal(s));
}
