// The one error every /proc parser throws for input it cannot read: it names the file kind, the
// line (or byte offset for binary files) and what was wrong, with a short escaped excerpt.
using System.Text;

namespace Crest.Kernel.Proc;

/// <summary>Which /proc file a parser was reading; used in error messages.</summary>
public enum ProcFileKind
{
    Stat,
    Status,
    Maps,
    Smaps,
    FdInfo,
    MountInfo,
    Timers,
    Limits,
    Auxv,
}

/// <summary>A /proc file did not have the shape the kernel documents.</summary>
public sealed class ProcParseException : Exception
{
    public ProcParseException(ProcFileKind kind, int line, string problem, ReadOnlySpan<byte> excerpt = default)
        : base(Format(kind, line, problem, excerpt))
    {
        Kind = kind;
        Line = line;
        Problem = problem;
    }

    public ProcFileKind Kind { get; }

    /// <summary>1-based line number; for binary files (auxv) the byte offset; 0 when the whole file is at fault.</summary>
    public int Line { get; }

    public string Problem { get; }

    public static string FileName(ProcFileKind kind) => kind switch
    {
        ProcFileKind.Stat => "/proc/PID/stat",
        ProcFileKind.Status => "/proc/PID/status",
        ProcFileKind.Maps => "/proc/PID/maps",
        ProcFileKind.Smaps => "/proc/PID/smaps",
        ProcFileKind.FdInfo => "/proc/PID/fdinfo/FD",
        ProcFileKind.MountInfo => "/proc/PID/mountinfo",
        ProcFileKind.Timers => "/proc/PID/timers",
        ProcFileKind.Limits => "/proc/PID/limits",
        ProcFileKind.Auxv => "/proc/PID/auxv",
        _ => "/proc file",
    };

    private static string Format(ProcFileKind kind, int line, string problem, ReadOnlySpan<byte> excerpt)
    {
        var sb = new StringBuilder(FileName(kind));
        if (line > 0)
            sb.Append(kind == ProcFileKind.Auxv ? " offset " : " line ").Append(line);
        sb.Append(": ").Append(problem);
        if (!excerpt.IsEmpty)
        {
            sb.Append(": \"");
            const int MaxExcerpt = 80;
            foreach (byte b in excerpt[..Math.Min(excerpt.Length, MaxExcerpt)])
            {
                if (b is >= 0x20 and < 0x7f && b != (byte)'\\' && b != (byte)'"')
                    sb.Append((char)b);
                else
                    sb.Append('\\').Append(Convert.ToString(b, 8).PadLeft(3, '0'));
            }
            if (excerpt.Length > MaxExcerpt)
                sb.Append("...");
            sb.Append('"');
        }
        return sb.ToString();
    }
}
