// /proc/PID/limits (proc(5), fs/proc/base.c proc_pid_limits, since Linux 2.6.24): a header and one
// row per resource, "%-25s %-20s %-20s %-10s": name, soft, hard, units; "unlimited" is
// RLIM_INFINITY. Names map to RLIMIT_* numbers (asm-generic/resource.h, x86_64).
namespace Crest.Kernel.Proc;

/// <summary>One row of /proc/PID/limits.</summary>
/// <param name="Resource">The RLIMIT_* number, -1 for a name this parser does not know.</param>
/// <param name="Soft">The soft limit; <see cref="Unlimited"/> for "unlimited".</param>
/// <param name="Units">"seconds", "bytes", ... or empty.</param>
public sealed record ProcLimit(int Resource, string Name, ulong Soft, ulong Hard, string Units)
{
    /// <summary>RLIM_INFINITY.</summary>
    public const ulong Unlimited = ulong.MaxValue;
}

/// <summary>Parser for /proc/PID/limits.</summary>
public static class ProcLimits
{
    private const ProcFileKind K = ProcFileKind.Limits;
    private const int NameWidth = 25;

    public const int RLIMIT_CPU = 0, RLIMIT_FSIZE = 1, RLIMIT_DATA = 2, RLIMIT_STACK = 3, RLIMIT_CORE = 4,
        RLIMIT_RSS = 5, RLIMIT_NPROC = 6, RLIMIT_NOFILE = 7, RLIMIT_MEMLOCK = 8, RLIMIT_AS = 9,
        RLIMIT_LOCKS = 10, RLIMIT_SIGPENDING = 11, RLIMIT_MSGQUEUE = 12, RLIMIT_NICE = 13, RLIMIT_RTPRIO = 14,
        RLIMIT_RTTIME = 15;

    /// <summary>The kernel's row names, indexed by RLIMIT_* number.</summary>
    public static readonly IReadOnlyList<string> Names =
    [
        "Max cpu time", "Max file size", "Max data size", "Max stack size", "Max core file size",
        "Max resident set", "Max processes", "Max open files", "Max locked memory", "Max address space",
        "Max file locks", "Max pending signals", "Max msgqueue size", "Max nice priority",
        "Max realtime priority", "Max realtime timeout",
    ];

    private static readonly byte[][] NameBytes = Names.Select(n => System.Text.Encoding.ASCII.GetBytes(n)).ToArray();

    public static IReadOnlyList<ProcLimit> Parse(ReadOnlySpan<byte> text)
    {
        var result = new List<ProcLimit>();
        var lines = new ProcLines(text);
        bool header = false;
        while (lines.Next(out var line))
        {
            if (ProcText.IsBlank(line))
                continue;
            int ln = lines.Number;
            if (!header)
            {
                if (!line.StartsWith("Limit "u8))
                    throw new ProcParseException(K, ln, "no \"Limit\" header", line);
                header = true;
                continue;
            }

            int resource = -1;
            ReadOnlySpan<byte> name = default;
            for (int r = 0; r < NameBytes.Length; r++)
            {
                if (line.StartsWith(NameBytes[r]) && line.Length > NameBytes[r].Length && ProcText.IsSpace(line[NameBytes[r].Length]))
                {
                    resource = r;
                    name = NameBytes[r];
                    break;
                }
            }
            if (resource < 0)
            {
                // An unknown resource: its name fills the first column.
                if (line.Length <= NameWidth || line[NameWidth] != (byte)' ')
                    throw new ProcParseException(K, ln, "row is not \"name soft hard units\"", line);
                name = ProcText.Trim(line[..NameWidth]);
            }

            var f = new ProcFields(line[name.Length..], K, ln);
            ulong soft = Value(f.Next("soft limit"), ln);
            ulong hard = Value(f.Next("hard limit"), ln);
            string units = f.TryNext(out var u) ? ProcText.Utf8(u) : "";
            if (!f.AtEnd)
                throw f.Fail("text after the units");
            result.Add(new ProcLimit(resource, resource >= 0 ? Names[resource] : ProcText.Utf8(name), soft, hard, units));
        }
        return result;
    }

    private static ulong Value(ReadOnlySpan<byte> token, int line)
        => token.SequenceEqual("unlimited"u8) ? ProcLimit.Unlimited : ProcText.ParseUInt64(token, 10, K, line, "limit");
}
