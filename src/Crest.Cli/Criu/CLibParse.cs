namespace Crest.Cli.Criu;

/// <summary>
/// The C library number parsers CRIU applies to option values, with their exact leniency:
/// atoi reads an optional sign and leading digits and ignores the rest ("10s" is 10, "x" is 0).
/// </summary>
internal static class CLibParse
{
    /// <summary>atoi(3): leading whitespace, optional sign, digits; 0 when none; wraps like a C int on overflow.</summary>
    public static int Atoi(string s) => (int)Atol(s);

    /// <summary>atol(3) on a 64-bit long.</summary>
    public static long Atol(string s)
    {
        int i = 0;
        while (i < s.Length && IsCSpace(s[i])) i++;
        bool negative = false;
        if (i < s.Length && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
        long value = 0;
        for (; i < s.Length && s[i] is >= '0' and <= '9'; i++)
            value = unchecked(value * 10 + (s[i] - '0'));
        return negative ? -value : value;
    }

    /// <summary>sscanf(s, "%d", &amp;v) == 1: like atoi but at least one digit is required.</summary>
    public static bool TryScanInt(string s, out int value)
    {
        int i = 0;
        while (i < s.Length && IsCSpace(s[i])) i++;
        if (i < s.Length && (s[i] == '+' || s[i] == '-')) i++;
        bool digits = i < s.Length && s[i] is >= '0' and <= '9';
        value = digits ? Atoi(s) : 0;
        return digits;
    }

    private static bool IsCSpace(char c) => c is ' ' or '\t' or '\n' or '\v' or '\f' or '\r';
}
