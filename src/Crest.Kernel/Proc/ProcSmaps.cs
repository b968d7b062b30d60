// /proc/PID/smaps (fs/proc/task_mmu.c show_smap, proc(5)): each VMA is its maps header line followed
// by "Key:   N kB" lines (THPeligible and ProtectionKey carry a bare number) and a "VmFlags:" line.
// Keys come in a fixed order, so the lookup starts at the key after the last one found, which keeps
// a smaps of tens of thousands of VMAs a linear scan. Unknown keys are kept as text.
namespace Crest.Kernel.Proc;

/// <summary>The per-VMA counters of smaps, in the kernel's print order.</summary>
public enum SmapsField
{
    Size,
    KernelPageSize,
    MMUPageSize,
    Rss,
    Pss,
    Pss_Dirty,
    Shared_Clean,
    Shared_Dirty,
    Private_Clean,
    Private_Dirty,
    Referenced,
    Anonymous,
    KSM,
    LazyFree,
    AnonHugePages,
    ShmemPmdMapped,
    FilePmdMapped,
    Shared_Hugetlb,
    Private_Hugetlb,
    Swap,
    SwapPss,
    Locked,
    THPeligible,
    ProtectionKey,
}

/// <summary>One VMA of /proc/PID/smaps: the maps header, its counters and its VmFlags.</summary>
public sealed class SmapsVma
{
    private readonly long[] _values = new long[Keys.Length];
    private List<KeyValuePair<string, string>>? _other;
    private uint _present;

    internal SmapsVma(Vma vma) => Vma = vma;

    public Vma Vma { get; }

    /// <summary>The value as printed: kB for the sizes, a plain number for THPeligible and ProtectionKey.</summary>
    public long this[SmapsField field] => _values[(int)field];

    public bool Has(SmapsField field) => (_present & (1u << (int)field)) != 0;

    public long SizeKb => this[SmapsField.Size];
    public long KernelPageSizeKb => this[SmapsField.KernelPageSize];
    public long MMUPageSizeKb => this[SmapsField.MMUPageSize];
    public long RssKb => this[SmapsField.Rss];
    public long PssKb => this[SmapsField.Pss];
    public long SharedCleanKb => this[SmapsField.Shared_Clean];
    public long SharedDirtyKb => this[SmapsField.Shared_Dirty];
    public long PrivateCleanKb => this[SmapsField.Private_Clean];
    public long PrivateDirtyKb => this[SmapsField.Private_Dirty];
    public long ReferencedKb => this[SmapsField.Referenced];
    public long AnonymousKb => this[SmapsField.Anonymous];
    public long AnonHugePagesKb => this[SmapsField.AnonHugePages];
    public long ShmemPmdMappedKb => this[SmapsField.ShmemPmdMapped];
    public long FilePmdMappedKb => this[SmapsField.FilePmdMapped];
    public long SwapKb => this[SmapsField.Swap];
    public long SwapPssKb => this[SmapsField.SwapPss];
    public long LockedKb => this[SmapsField.Locked];
    public bool ThpEligible => this[SmapsField.THPeligible] != 0;
    /// <summary>The memory protection key, when the kernel prints it (x86 with PKU).</summary>
    public int? ProtectionKey => Has(SmapsField.ProtectionKey) ? (int)this[SmapsField.ProtectionKey] : null;

    public VmFlags VmFlags { get; private set; }

    /// <summary>Whether a "VmFlags:" line was present.</summary>
    public bool HasVmFlags { get; private set; }

    /// <summary>VmFlags codes <see cref="Proc.VmFlags"/> does not know.</summary>
    public IReadOnlyList<string> UnknownVmFlags { get; private set; } = [];

    /// <summary>Keys <see cref="SmapsField"/> does not know, with their values as printed.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Other => (IReadOnlyList<KeyValuePair<string, string>>?)_other ?? [];

    /// <summary>The key of each <see cref="SmapsField"/>, indexed by its value.</summary>
    private static readonly byte[][] Keys =
    [
        "Size"u8.ToArray(), "KernelPageSize"u8.ToArray(), "MMUPageSize"u8.ToArray(), "Rss"u8.ToArray(),
        "Pss"u8.ToArray(), "Pss_Dirty"u8.ToArray(), "Shared_Clean"u8.ToArray(), "Shared_Dirty"u8.ToArray(),
        "Private_Clean"u8.ToArray(), "Private_Dirty"u8.ToArray(), "Referenced"u8.ToArray(),
        "Anonymous"u8.ToArray(), "KSM"u8.ToArray(), "LazyFree"u8.ToArray(), "AnonHugePages"u8.ToArray(),
        "ShmemPmdMapped"u8.ToArray(), "FilePmdMapped"u8.ToArray(), "Shared_Hugetlb"u8.ToArray(),
        "Private_Hugetlb"u8.ToArray(), "Swap"u8.ToArray(), "SwapPss"u8.ToArray(), "Locked"u8.ToArray(),
        "THPeligible"u8.ToArray(), "ProtectionKey"u8.ToArray(),
    ];

    internal void SetField(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value, ref int hint, int line)
    {
        const ProcFileKind K = ProcFileKind.Smaps;
        int found = -1;
        for (int i = 0; i < Keys.Length; i++)
        {
            int k = hint + i < Keys.Length ? hint + i : hint + i - Keys.Length;
            if (key.SequenceEqual(Keys[k]))
            {
                found = k;
                break;
            }
        }
        if (found < 0)
        {
            _other ??= [];
            _other.Add(new(ProcText.Utf8(key), ProcText.Utf8(ProcText.Trim(value))));
            return;
        }
        hint = found + 1;

        // "   1234 kB" or "   1" (THPeligible, ProtectionKey): the hot path of a large smaps, so by hand.
        int pos = 0;
        while (pos < value.Length && ProcText.IsSpace(value[pos]))
            pos++;
        int digits = pos;
        while (pos < value.Length && value[pos] - (uint)'0' <= 9)
            pos++;
        if (pos == digits)
            throw new ProcParseException(K, line, pos == value.Length ? "missing value" : "bad value", value);
        long v = ProcText.ParseInt64(value[digits..pos], K, line, "value");
        ReadOnlySpan<byte> unit = value[pos..];
        if (!unit.IsEmpty && !unit.SequenceEqual(" kB"u8))
        {
            unit = ProcText.Trim(unit);
            if (!unit.IsEmpty && !unit.SequenceEqual("kB"u8))
                throw new ProcParseException(K, line, ProcText.IsSpace(value[pos]) ? "unit is not kB" : "bad value", value);
        }
        _values[found] = v;
        _present |= 1u << found;
    }

    internal void SetVmFlags(ReadOnlySpan<byte> value, int line)
    {
        var f = new ProcFields(value, ProcFileKind.Smaps, line);
        VmFlags flags = VmFlags.None;
        List<string>? unknown = null;
        while (f.TryNext(out var code))
        {
            VmFlags flag = code.Length == 2 ? VmFlagCodes.Lookup(code[0], code[1]) : VmFlags.None;
            if (flag == VmFlags.None)
                (unknown ??= []).Add(ProcText.Utf8(code));
            flags |= flag;
        }
        VmFlags = flags;
        HasVmFlags = true;
        if (unknown is not null)
            UnknownVmFlags = unknown;
    }
}

/// <summary>Parser for /proc/PID/smaps.</summary>
public static class ProcSmaps
{
    public static IReadOnlyList<SmapsVma> Parse(ReadOnlySpan<byte> text)
    {
        var result = new List<SmapsVma>();
        SmapsVma? current = null;
        int hint = 0;
        var lines = new ProcLines(text);
        while (lines.Next(out var line))
        {
            if (line.IsEmpty)
                continue;
            // A counter line is "Key:" with no blank before the colon; a header's first colon is in
            // its device column, after several blanks.
            int colon = line.IndexOf((byte)':');
            int blank = line.IndexOfAny((byte)' ', (byte)'\t');
            bool isField = colon > 0 && (blank < 0 || colon < blank);
            if (!isField)
            {
                current = new SmapsVma(Vma.ParseLine(line, ProcFileKind.Smaps, lines.Number));
                result.Add(current);
                hint = 0;
                continue;
            }
            if (current is null)
                throw new ProcParseException(ProcFileKind.Smaps, lines.Number, "counter before the first VMA header", line);
            ReadOnlySpan<byte> key = line[..colon];
            ReadOnlySpan<byte> value = line[(colon + 1)..];
            if (key.SequenceEqual("VmFlags"u8))
                current.SetVmFlags(value, lines.Number);
            else
                current.SetField(key, value, ref hint, lines.Number);
        }
        return result;
    }
}
