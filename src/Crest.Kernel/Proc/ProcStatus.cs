// /proc/PID/status (proc(5), fs/proc/array.c proc_pid_status): "Key:\tvalue" lines. Name is escaped
// by proc_task_name (string_escape_str with ESCAPE_SPACE | ESCAPE_SPECIAL, only "\n" and "\\");
// Umask since Linux 4.7, NSpid/NStgid/NSpgid/NSsid since 4.1, Seccomp_filters since 5.9,
// SpeculationIndirectBranch since 4.20. Keys this parser does not model are kept in Other.
namespace Crest.Kernel.Proc;

/// <summary>Real, effective, saved set and filesystem ids of a "Uid:" or "Gid:" line.</summary>
public readonly record struct ProcIds(uint Real, uint Effective, uint Saved, uint Filesystem);

/// <summary>"SigQ: queued/limit".</summary>
public readonly record struct SignalQueue(ulong Queued, ulong Limit);

/// <summary>The fields of /proc/PID/status that checkpointing uses; the rest are in <see cref="Other"/>.</summary>
public sealed record ProcStatus
{
    /// <summary>comm with the kernel's escapes undone (may contain newlines).</summary>
    public string Name { get; private set; } = "";
    public uint? Umask { get; private set; }
    /// <summary>The state letter ('R', 'S', 'D', 'T', 't', 'Z', 'X', 'I', ...).</summary>
    public char State { get; private set; }
    public int Tgid { get; private set; }
    public int? Ngid { get; private set; }
    public int Pid { get; private set; }
    public int PPid { get; private set; }
    public int TracerPid { get; private set; }
    public ProcIds Uid { get; private set; }
    public ProcIds Gid { get; private set; }
    public int? FdSize { get; private set; }
    public IReadOnlyList<uint> Groups { get; private set; } = [];
    /// <summary>The ids in each nested pid namespace, outermost first (empty when the line is absent).</summary>
    public IReadOnlyList<int> NsTgid { get; private set; } = [];
    public IReadOnlyList<int> NsPid { get; private set; } = [];
    public IReadOnlyList<int> NsPgid { get; private set; } = [];
    public IReadOnlyList<int> NsSid { get; private set; } = [];
    public int? Threads { get; private set; }
    public SignalQueue? SigQ { get; private set; }
    public ulong? SigPnd { get; private set; }
    public ulong? ShdPnd { get; private set; }
    public ulong? SigBlk { get; private set; }
    public ulong? SigIgn { get; private set; }
    public ulong? SigCgt { get; private set; }
    public ulong? CapInh { get; private set; }
    public ulong? CapPrm { get; private set; }
    public ulong? CapEff { get; private set; }
    public ulong? CapBnd { get; private set; }
    public ulong? CapAmb { get; private set; }
    public bool? NoNewPrivs { get; private set; }
    /// <summary>SECCOMP_MODE_*: 0 disabled, 1 strict, 2 filter.</summary>
    public int? Seccomp { get; private set; }
    public int? SeccompFilters { get; private set; }
    public string? SpeculationStoreBypass { get; private set; }
    public string? SpeculationIndirectBranch { get; private set; }
    /// <summary>The hex mask as printed (comma-separated 32-bit words).</summary>
    public string? CpusAllowed { get; private set; }
    public string? CpusAllowedList { get; private set; }
    /// <summary>Every other "Key: value" line, value trimmed, in file order.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Other { get; private set; } = [];

    private ProcStatus() { }

    public static ProcStatus Parse(ReadOnlySpan<byte> text)
    {
        const ProcFileKind K = ProcFileKind.Status;
        string? name = null;
        char? state = null;
        int? tgid = null, pid = null, ppid = null;
        ProcIds? uid = null, gid = null;
        var result = new ProcStatus();
        List<KeyValuePair<string, string>>? other = null;

        var lines = new ProcLines(text);
        while (lines.Next(out var line))
        {
            if (ProcText.IsBlank(line))
                continue;
            int ln = lines.Number;
            int colon = line.IndexOf((byte)':');
            if (colon <= 0)
                throw new ProcParseException(K, ln, "no \"Key:\"", line);
            ReadOnlySpan<byte> key = line[..colon];
            ReadOnlySpan<byte> raw = line[(colon + 1)..];
            ReadOnlySpan<byte> value = ProcText.Trim(raw);

            switch (key)
            {
                case var _ when key.SequenceEqual("Name"u8):
                    // Only the single tab after the colon separates; the name itself may start with spaces.
                    name = ProcText.Utf8(ProcText.UnescapeC(raw.Length > 0 && raw[0] == (byte)'\t' ? raw[1..] : raw));
                    break;
                case var _ when key.SequenceEqual("Umask"u8):
                    result.Umask = ProcText.ParseUInt32(value, 8, K, ln, "Umask");
                    break;
                case var _ when key.SequenceEqual("State"u8):
                    if (value.IsEmpty)
                        throw new ProcParseException(K, ln, "empty State", line);
                    state = (char)value[0];
                    break;
                case var _ when key.SequenceEqual("Tgid"u8):
                    tgid = ProcText.ParseInt32(value, K, ln, "Tgid");
                    break;
                case var _ when key.SequenceEqual("Ngid"u8):
                    result.Ngid = ProcText.ParseInt32(value, K, ln, "Ngid");
                    break;
                case var _ when key.SequenceEqual("Pid"u8):
                    pid = ProcText.ParseInt32(value, K, ln, "Pid");
                    break;
                case var _ when key.SequenceEqual("PPid"u8):
                    ppid = ProcText.ParseInt32(value, K, ln, "PPid");
                    break;
                case var _ when key.SequenceEqual("TracerPid"u8):
                    result.TracerPid = ProcText.ParseInt32(value, K, ln, "TracerPid");
                    break;
                case var _ when key.SequenceEqual("Uid"u8):
                    uid = ParseIds(value, ln, "Uid");
                    break;
                case var _ when key.SequenceEqual("Gid"u8):
                    gid = ParseIds(value, ln, "Gid");
                    break;
                case var _ when key.SequenceEqual("FDSize"u8):
                    result.FdSize = ProcText.ParseInt32(value, K, ln, "FDSize");
                    break;
                case var _ when key.SequenceEqual("Groups"u8):
                    result.Groups = ParseList(value, ln, "Groups", static (t, l) => ProcText.ParseUInt32(t, 10, K, l, "Groups"));
                    break;
                case var _ when key.SequenceEqual("NStgid"u8):
                    result.NsTgid = ParseList(value, ln, "NStgid", static (t, l) => ProcText.ParseInt32(t, K, l, "NStgid"));
                    break;
                case var _ when key.SequenceEqual("NSpid"u8):
                    result.NsPid = ParseList(value, ln, "NSpid", static (t, l) => ProcText.ParseInt32(t, K, l, "NSpid"));
                    break;
                case var _ when key.SequenceEqual("NSpgid"u8):
                    result.NsPgid = ParseList(value, ln, "NSpgid", static (t, l) => ProcText.ParseInt32(t, K, l, "NSpgid"));
                    break;
                case var _ when key.SequenceEqual("NSsid"u8):
                    result.NsSid = ParseList(value, ln, "NSsid", static (t, l) => ProcText.ParseInt32(t, K, l, "NSsid"));
                    break;
                case var _ when key.SequenceEqual("Threads"u8):
                    result.Threads = ProcText.ParseInt32(value, K, ln, "Threads");
                    break;
                case var _ when key.SequenceEqual("SigQ"u8):
                {
                    int slash = value.IndexOf((byte)'/');
                    if (slash < 0)
                        throw new ProcParseException(K, ln, "SigQ is not queued/limit", line);
                    result.SigQ = new SignalQueue(
                        ProcText.ParseUInt64(value[..slash], 10, K, ln, "SigQ"),
                        ProcText.ParseUInt64(value[(slash + 1)..], 10, K, ln, "SigQ"));
                    break;
                }
                case var _ when key.SequenceEqual("SigPnd"u8):
                    result.SigPnd = Hex(value, ln, "SigPnd");
                    break;
                case var _ when key.SequenceEqual("ShdPnd"u8):
                    result.ShdPnd = Hex(value, ln, "ShdPnd");
                    break;
                case var _ when key.SequenceEqual("SigBlk"u8):
                    result.SigBlk = Hex(value, ln, "SigBlk");
                    break;
                case var _ when key.SequenceEqual("SigIgn"u8):
                    result.SigIgn = Hex(value, ln, "SigIgn");
                    break;
                case var _ when key.SequenceEqual("SigCgt"u8):
                    result.SigCgt = Hex(value, ln, "SigCgt");
                    break;
                case var _ when key.SequenceEqual("CapInh"u8):
                    result.CapInh = Hex(value, ln, "CapInh");
                    break;
                case var _ when key.SequenceEqual("CapPrm"u8):
                    result.CapPrm = Hex(value, ln, "CapPrm");
                    break;
                case var _ when key.SequenceEqual("CapEff"u8):
                    result.CapEff = Hex(value, ln, "CapEff");
                    break;
                case var _ when key.SequenceEqual("CapBnd"u8):
                    result.CapBnd = Hex(value, ln, "CapBnd");
                    break;
                case var _ when key.SequenceEqual("CapAmb"u8):
                    result.CapAmb = Hex(value, ln, "CapAmb");
                    break;
                case var _ when key.SequenceEqual("NoNewPrivs"u8):
                    result.NoNewPrivs = ProcText.ParseUInt64(value, 10, K, ln, "NoNewPrivs") != 0;
                    break;
                case var _ when key.SequenceEqual("Seccomp"u8):
                    result.Seccomp = ProcText.ParseInt32(value, K, ln, "Seccomp");
                    break;
                case var _ when key.SequenceEqual("Seccomp_filters"u8):
                    result.SeccompFilters = ProcText.ParseInt32(value, K, ln, "Seccomp_filters");
                    break;
                case var _ when key.SequenceEqual("Speculation_Store_Bypass"u8):
                    result.SpeculationStoreBypass = ProcText.Utf8(value);
                    break;
                case var _ when key.SequenceEqual("SpeculationIndirectBranch"u8):
                    result.SpeculationIndirectBranch = ProcText.Utf8(value);
                    break;
                case var _ when key.SequenceEqual("Cpus_allowed"u8):
                    result.CpusAllowed = ProcText.Utf8(value);
                    break;
                case var _ when key.SequenceEqual("Cpus_allowed_list"u8):
                    result.CpusAllowedList = ProcText.Utf8(value);
                    break;
                default:
                    (other ??= []).Add(new(ProcText.Utf8(key), ProcText.Utf8(value)));
                    break;
            }
        }

        result.Name = name ?? throw new ProcParseException(K, 0, "no Name line");
        result.State = state ?? throw new ProcParseException(K, 0, "no State line");
        result.Tgid = tgid ?? throw new ProcParseException(K, 0, "no Tgid line");
        result.Pid = pid ?? throw new ProcParseException(K, 0, "no Pid line");
        result.PPid = ppid ?? throw new ProcParseException(K, 0, "no PPid line");
        result.Uid = uid ?? throw new ProcParseException(K, 0, "no Uid line");
        result.Gid = gid ?? throw new ProcParseException(K, 0, "no Gid line");
        if (other is not null)
            result.Other = other;
        return result;
    }

    private static ulong Hex(ReadOnlySpan<byte> value, int line, string what)
        => ProcText.ParseUInt64(value, 16, ProcFileKind.Status, line, what);

    private static ProcIds ParseIds(ReadOnlySpan<byte> value, int line, string what)
    {
        var f = new ProcFields(value, ProcFileKind.Status, line);
        Span<uint> v = stackalloc uint[4];
        for (int i = 0; i < v.Length; i++)
            v[i] = ProcText.ParseUInt32(f.Next(what), 10, ProcFileKind.Status, line, what);
        var ids = new ProcIds(v[0], v[1], v[2], v[3]);
        if (!f.AtEnd)
            throw f.Fail($"more than four {what} values");
        return ids;
    }

    private delegate T TokenParser<T>(ReadOnlySpan<byte> token, int line);

    private static T[] ParseList<T>(ReadOnlySpan<byte> value, int line, string what, TokenParser<T> parse)
    {
        var f = new ProcFields(value, ProcFileKind.Status, line);
        var items = new List<T>();
        while (f.TryNext(out var token))
            items.Add(parse(token, line));
        return [.. items];
    }
}
