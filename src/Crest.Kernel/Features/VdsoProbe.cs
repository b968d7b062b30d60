// The vDSO and its data pages ([vvar], and [vvar_vclock] on recent kernels such as this machine's
// 6.18) as this kernel lays them out in /proc/self/maps. Restore moves a new task's areas with mremap
// to the dumped addresses, so it needs to find them and know their sizes and order (ENGINE.md §4, §8).
using System.Globalization;
using System.Text;

namespace Crest.Kernel.Features;

/// <summary>One special mapping: its name, start address and size in pages.</summary>
public readonly record struct SpecialMapping(string Name, ulong Start, ulong End)
{
    public ulong Pages => (End - Start) / 4096;
}

public static partial class FeatureProbes
{
    private static readonly string[] VdsoAreaNames = ["[vvar]", "[vvar_vclock]", "[vdso]"];

    /// <summary>The vDSO-related mappings of this process, in address order.</summary>
    public static IReadOnlyList<SpecialMapping> ReadVdsoLayout() => ParseVdsoLayout(File.ReadAllBytes("/proc/self/maps"));

    /// <summary>Find [vvar], [vvar_vclock] and [vdso] lines in the text of a maps file.</summary>
    internal static IReadOnlyList<SpecialMapping> ParseVdsoLayout(ReadOnlySpan<byte> maps)
    {
        var found = new List<SpecialMapping>();
        while (!maps.IsEmpty)
        {
            int end = maps.IndexOf((byte)'\n');
            var line = end < 0 ? maps : maps[..end];
            maps = end < 0 ? default : maps[(end + 1)..];
            var trimmed = line.TrimEnd((byte)' ');
            int lastSpace = trimmed.LastIndexOf((byte)' ');
            if (lastSpace < 0) continue;
            var name = trimmed[(lastSpace + 1)..];
            if (name.IsEmpty || name[0] != (byte)'[') continue;
            string text = Encoding.ASCII.GetString(name);
            if (Array.IndexOf(VdsoAreaNames, text) < 0) continue;
            int dash = line.IndexOf((byte)'-'), space = line.IndexOf((byte)' ');
            if (dash <= 0 || space <= dash) continue;
            if (!ulong.TryParse(line[..dash], NumberStyles.HexNumber, null, out ulong start)) continue;
            if (!ulong.TryParse(line[(dash + 1)..space], NumberStyles.HexNumber, null, out ulong stop)) continue;
            found.Add(new SpecialMapping(text, start, stop));
        }
        found.Sort((a, b) => a.Start.CompareTo(b.Start));
        return found;
    }

    /// <summary>Present when [vdso] is mapped; the detail gives each area's size and whether they touch.</summary>
    public static ProbeResult ProbeVdsoLayout()
    {
        IReadOnlyList<SpecialMapping> areas;
        try
        {
            areas = ReadVdsoLayout();
        }
        catch (IOException e)
        {
            return ProbeResult.Missing($"cannot read /proc/self/maps: {e.Message}");
        }
        return DescribeVdsoLayout(areas);
    }

    internal static ProbeResult DescribeVdsoLayout(IReadOnlyList<SpecialMapping> areas)
    {
        if (!areas.Any(a => a.Name == "[vdso]")) return ProbeResult.Missing("no [vdso] in /proc/self/maps");
        bool adjacent = true;
        for (int i = 1; i < areas.Count; i++) adjacent &= areas[i].Start == areas[i - 1].End;
        string parts = string.Join(", ", areas.Select(a => $"{a.Name} {a.Pages} page{(a.Pages == 1 ? "" : "s")}"));
        return ProbeResult.Ok($"{parts}, {(adjacent ? "adjacent" : "not adjacent")}");
    }
}
