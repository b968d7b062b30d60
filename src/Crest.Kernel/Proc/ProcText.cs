// Span helpers shared by the /proc parsers: line splitting, whitespace tokens, overflow-checked
// number parsing in the bases the kernel prints (decimal, hex, octal) and the two escape styles
// the kernel uses in text files (mangle_path's \ooo octal, and string_escape_mem's \n \t \\).
using System.Text;

namespace Crest.Kernel.Proc;

/// <summary>Iterates the lines of a /proc file; the last line may lack its newline.</summary>
internal ref struct ProcLines
{
    private ReadOnlySpan<byte> _rest;

    public ProcLines(ReadOnlySpan<byte> text) { _rest = text; Number = 0; }

    /// <summary>1-based number of the line last returned.</summary>
    public int Number { get; private set; }

    public bool Next(out ReadOnlySpan<byte> line)
    {
        if (_rest.IsEmpty)
        {
            line = default;
            return false;
        }
        int nl = _rest.IndexOf((byte)'\n');
        if (nl < 0)
        {
            line = _rest;
            _rest = default;
        }
        else
        {
            line = _rest[..nl];
            _rest = _rest[(nl + 1)..];
        }
        Number++;
        return true;
    }
}

/// <summary>Reads whitespace-separated fields of one line, throwing ProcParseException on bad input.</summary>
internal ref struct ProcFields
{
    private readonly ReadOnlySpan<byte> _line;
    private readonly ProcFileKind _kind;
    private readonly int _lineNumber;
    private int _pos;

    public ProcFields(ReadOnlySpan<byte> line, ProcFileKind kind, int lineNumber)
    {
        _line = line;
        _kind = kind;
        _lineNumber = lineNumber;
        _pos = 0;
    }

    public readonly ReadOnlySpan<byte> Rest => _line[_pos..];

    public readonly bool AtEnd => ProcText.IsBlank(_line[_pos..]);

    public bool TryNext(out ReadOnlySpan<byte> token)
    {
        while (_pos < _line.Length && ProcText.IsSpace(_line[_pos]))
            _pos++;
        int start = _pos;
        while (_pos < _line.Length && !ProcText.IsSpace(_line[_pos]))
            _pos++;
        token = _line[start.._pos];
        return !token.IsEmpty;
    }

    public ReadOnlySpan<byte> Next(string what)
    {
        if (!TryNext(out var token))
            throw Fail($"missing {what}");
        return token;
    }

    public ulong NextUInt64(string what) => ProcText.ParseUInt64(Next(what), 10, _kind, _lineNumber, what);
    public ulong NextHex(string what) => ProcText.ParseUInt64(Next(what), 16, _kind, _lineNumber, what);
    public long NextInt64(string what) => ProcText.ParseInt64(Next(what), _kind, _lineNumber, what);
    public int NextInt32(string what) => ProcText.ToInt32(ProcText.ParseInt64(Next(what), _kind, _lineNumber, what), _kind, _lineNumber, what);

    public readonly ProcParseException Fail(string problem) => new(_kind, _lineNumber, problem, _line);
}

internal static class ProcText
{
    public static bool IsSpace(byte b) => b is (byte)' ' or (byte)'\t';

    public static bool IsBlank(ReadOnlySpan<byte> s) => s.IndexOfAnyExcept((byte)' ', (byte)'\t') < 0;

    public static ReadOnlySpan<byte> Trim(ReadOnlySpan<byte> s) => s.Trim((byte)' ').Trim((byte)'\t').Trim((byte)' ');

    public static string Utf8(ReadOnlySpan<byte> s) => Encoding.UTF8.GetString(s);

    /// <summary>Parses an unsigned number in base 8, 10 or 16 (hex digits in either case, no prefix).</summary>
    public static bool TryParseUInt64(ReadOnlySpan<byte> s, int radix, out ulong value)
    {
        value = 0;
        if (s.IsEmpty)
            return false;
        foreach (byte b in s)
        {
            int digit = b switch
            {
                >= (byte)'0' and <= (byte)'9' => b - '0',
                >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
                >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
                _ => 99,
            };
            if (digit >= radix)
                return false;
            if (value > (ulong.MaxValue - (ulong)digit) / (ulong)radix)
                return false;
            value = value * (ulong)radix + (ulong)digit;
        }
        return true;
    }

    public static bool TryParseInt64(ReadOnlySpan<byte> s, out long value)
    {
        value = 0;
        bool negative = !s.IsEmpty && s[0] == (byte)'-';
        if (!TryParseUInt64(negative ? s[1..] : s, 10, out ulong magnitude))
            return false;
        if (negative)
        {
            if (magnitude > (ulong)long.MaxValue + 1)
                return false;
            value = (long)(0 - magnitude);
            return true;
        }
        if (magnitude > long.MaxValue)
            return false;
        value = (long)magnitude;
        return true;
    }

    public static ulong ParseUInt64(ReadOnlySpan<byte> s, int radix, ProcFileKind kind, int line, string what)
    {
        if (!TryParseUInt64(s, radix, out ulong value))
            throw new ProcParseException(kind, line, $"bad {what}", s);
        return value;
    }

    public static long ParseInt64(ReadOnlySpan<byte> s, ProcFileKind kind, int line, string what)
    {
        if (!TryParseInt64(s, out long value))
            throw new ProcParseException(kind, line, $"bad {what}", s);
        return value;
    }

    public static int ParseInt32(ReadOnlySpan<byte> s, ProcFileKind kind, int line, string what)
        => ToInt32(ParseInt64(s, kind, line, what), kind, line, what);

    public static uint ParseUInt32(ReadOnlySpan<byte> s, int radix, ProcFileKind kind, int line, string what)
    {
        ulong value = ParseUInt64(s, radix, kind, line, what);
        if (value > uint.MaxValue)
            throw new ProcParseException(kind, line, $"{what} out of range", s);
        return (uint)value;
    }

    public static int ToInt32(long value, ProcFileKind kind, int line, string what)
    {
        if (value is < int.MinValue or > int.MaxValue)
            throw new ProcParseException(kind, line, $"{what} out of range");
        return (int)value;
    }

    /// <summary>
    /// Undoes mangle_path/seq_escape: a backslash followed by three octal digits is that byte.
    /// Any other backslash is kept as is (the kernel escapes only the characters it was asked to).
    /// </summary>
    public static byte[] UnescapeOctal(ReadOnlySpan<byte> s)
    {
        if (s.IndexOf((byte)'\\') < 0)
            return s.ToArray();
        var result = new byte[s.Length];
        int n = 0;
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == (byte)'\\' && i + 3 < s.Length && IsOctalTriplet(s.Slice(i + 1, 3)))
            {
                result[n++] = (byte)(((s[i + 1] - '0') << 6) | ((s[i + 2] - '0') << 3) | (s[i + 3] - '0'));
                i += 3;
            }
            else
            {
                result[n++] = s[i];
            }
        }
        return result.AsSpan(0, n).ToArray();
    }

    private static bool IsOctalTriplet(ReadOnlySpan<byte> s) =>
        s.Length == 3 && s[0] is >= (byte)'0' and <= (byte)'3' && s[1] is >= (byte)'0' and <= (byte)'7'
        && s[2] is >= (byte)'0' and <= (byte)'7';

    /// <summary>
    /// Undoes string_escape_mem with ESCAPE_SPACE | ESCAPE_SPECIAL (status "Name:"): \n \t \r \v \f
    /// \a \e \\ \" and \ooo octal.
    /// </summary>
    public static byte[] UnescapeC(ReadOnlySpan<byte> s)
    {
        if (s.IndexOf((byte)'\\') < 0)
            return s.ToArray();
        var result = new byte[s.Length];
        int n = 0;
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] != (byte)'\\' || i + 1 >= s.Length)
            {
                result[n++] = s[i];
                continue;
            }
            if (i + 3 < s.Length && IsOctalTriplet(s.Slice(i + 1, 3)))
            {
                result[n++] = (byte)(((s[i + 1] - '0') << 6) | ((s[i + 2] - '0') << 3) | (s[i + 3] - '0'));
                i += 3;
                continue;
            }
            byte? plain = s[i + 1] switch
            {
                (byte)'n' => (byte)'\n',
                (byte)'t' => (byte)'\t',
                (byte)'r' => (byte)'\r',
                (byte)'v' => (byte)'\v',
                (byte)'f' => (byte)'\f',
                (byte)'a' => (byte)'\a',
                (byte)'e' => (byte)0x1b,
                (byte)'\\' => (byte)'\\',
                (byte)'"' => (byte)'"',
                _ => null,
            };
            if (plain is byte p)
            {
                result[n++] = p;
                i++;
            }
            else
            {
                result[n++] = s[i];
            }
        }
        return result.AsSpan(0, n).ToArray();
    }
}
