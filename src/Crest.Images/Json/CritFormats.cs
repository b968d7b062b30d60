// The value formats crit (CRIU's pycriu, pb2dict.py) uses for annotated fields, reimplemented:
// (criu).flags tables, (criu).dict value names, (criu).dev "major:minor" (new kernel dev_t encoding, or
// glibc's encoding for odev), (criu).ipadd addresses stored as network-order u32 words, (criu).conv
// "unix_name" (quoted-printable as Python's binascii.b2a_qp), and base64 as Python's base64.encodebytes.
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Crest.Images.Json;

internal static class CritFormats
{
    private static readonly (string Name, ulong Bit)[] MmapProt =
        [("PROT_READ", 0x1), ("PROT_WRITE", 0x2), ("PROT_EXEC", 0x4)];

    private static readonly (string Name, ulong Bit)[] MmapFlags =
        [("MAP_SHARED", 0x1), ("MAP_PRIVATE", 0x2), ("MAP_ANON", 0x20), ("MAP_GROWSDOWN", 0x100)];

    // CRIU's VMA_* status bits (criu/include/image.h); VMA_AREA_NONE is 0 and so never printed.
    private static readonly (string Name, ulong Bit)[] MmapStatus =
    [
        ("VMA_AREA_NONE", 0), ("VMA_AREA_REGULAR", 1 << 0), ("VMA_AREA_STACK", 1 << 1),
        ("VMA_AREA_VSYSCALL", 1 << 2), ("VMA_AREA_VDSO", 1 << 3), ("VMA_AREA_HEAP", 1 << 5),
        ("VMA_FILE_PRIVATE", 1 << 6), ("VMA_FILE_SHARED", 1 << 7), ("VMA_ANON_SHARED", 1 << 8),
        ("VMA_ANON_PRIVATE", 1 << 9), ("VMA_AREA_SYSVIPC", 1 << 10), ("VMA_AREA_SOCKET", 1 << 11),
        ("VMA_AREA_VVAR", 1 << 12), ("VMA_AREA_AIORING", 1 << 13), ("VMA_UNSUPP", 1UL << 31),
    ];

    // open(2) flags in their x86_64 octal values.
    private static readonly (string Name, ulong Bit)[] RegularFileFlags =
    [
        ("O_WRONLY", 0x1), ("O_RDWR", 0x2), ("O_CREAT", 0x40), ("O_EXCL", 0x80), ("O_NOCTTY", 0x100),
        ("O_TRUNC", 0x200), ("O_APPEND", 0x400), ("O_NONBLOCK", 0x800), ("O_DSYNC", 0x1000),
        ("FASYNC", 0x2000), ("O_DIRECT", 0x4000), ("O_LARGEFILE", 0x8000), ("O_DIRECTORY", 0x10000),
        ("O_NOFOLLOW", 0x20000), ("O_NOATIME", 0x40000), ("O_CLOEXEC", 0x80000),
    ];

    private static readonly (string Name, ulong Bit)[] PagemapFlags =
        [("PE_PARENT", 1), ("PE_LAZY", 2), ("PE_PRESENT", 4)];

    private static readonly (string Name, ulong Bit)[] SealFlags =
    [
        ("F_SEAL_SEAL", 0x1), ("F_SEAL_SHRINK", 0x2), ("F_SEAL_GROW", 0x4), ("F_SEAL_WRITE", 0x8),
        ("F_SEAL_FUTURE_WRITE", 0x10),
    ];

    public static (string Name, ulong Bit)[]? FlagTable(string name) => name switch
    {
        "mmap.prot" => MmapProt,
        "mmap.flags" => MmapFlags,
        "mmap.status" => MmapStatus,
        "rfile.flags" => RegularFileFlags,
        "pmap.flags" => PagemapFlags,
        "seals.flags" => SealFlags,
        _ => null,
    };

    // (criu).dict tables, keyed by table then by the field's name.
    private static readonly Dictionary<int, string> TaskState = new() { [1] = "Alive", [3] = "Zombie", [6] = "Stopped" };
    private static readonly Dictionary<int, string> SocketFamily = new() { [1] = "UNIX", [2] = "INET", [10] = "INET6", [16] = "NETLINK", [17] = "PACKET" };
    private static readonly Dictionary<int, string> SocketType = new() { [1] = "STREAM", [2] = "DGRAM", [3] = "RAW", [5] = "SEQPACKET", [10] = "PACKET" };
    private static readonly Dictionary<int, string> SocketState = new()
    {
        [1] = "ESTABLISHED", [2] = "SYN_SENT", [3] = "SYN_RECV", [4] = "FIN_WAIT1", [5] = "FIN_WAIT2",
        [6] = "TIME_WAIT", [7] = "CLOSE", [8] = "CLOSE_WAIT", [9] = "LAST_ACK", [10] = "LISTEN",
    };
    private static readonly Dictionary<int, string> SocketProtocol = new() { [0] = "IP", [6] = "TCP", [17] = "UDP", [136] = "UDPLITE" };

    public static Dictionary<int, string>? DictTable(string table, string field) => (table, field) switch
    {
        ("gen", "task_state") => TaskState,
        ("sk", "family") => SocketFamily,
        ("sk", "type") => SocketType,
        ("sk", "state") => SocketState,
        ("sk", "proto") => SocketProtocol,
        _ => null,
    };

    /// <summary>Python's "0x%x": lower-case hex, a minus sign before the prefix for negatives.</summary>
    public static string Hex(Int128 value) =>
        value < 0 ? "-0x" + HexDigits(-value) : "0x" + HexDigits(value);

    private static string HexDigits(Int128 value) => ((UInt128)value).ToString("x", CultureInfo.InvariantCulture);

    /// <summary>Names of the set bits in table order, then the unnamed rest as hex; "" for 0.</summary>
    public static string MapFlags(Int128 value, (string Name, ulong Bit)[] table)
    {
        var parts = new List<string>();
        Int128 known = 0;
        foreach ((string name, ulong bit) in table)
        {
            if ((value & bit) != 0)
                parts.Add(name);
            known |= bit;
        }
        Int128 rest = value & ~known;
        if (rest != 0)
            parts.Add(Hex(rest));
        return string.Join(" | ", parts);
    }

    /// <summary>Inverse of <see cref="MapFlags"/>: names or integer literals joined by '|'.</summary>
    public static bool TryUnmapFlags(string text, (string Name, ulong Bit)[] table, out Int128 value)
    {
        value = 0;
        if (text.Length == 0)
            return true;
        foreach (string raw in text.Split('|'))
        {
            string part = raw.Trim();
            ulong? bit = null;
            foreach ((string name, ulong b) in table)
            {
                if (name == part)
                    bit = b;
            }
            if (bit is ulong named)
                value += named;
            else if (TryParsePythonInt(part, out Int128 number))
                value += number;
            else
                return false;
        }
        return true;
    }

    /// <summary>Python's int(text, 0): optional sign, 0x/0o/0b prefixes, '_' between digits, whitespace around.</summary>
    public static bool TryParsePythonInt(string text, out Int128 value)
    {
        value = 0;
        ReadOnlySpan<char> s = text.AsSpan().Trim();
        bool negative = false;
        if (s.Length > 0 && (s[0] == '+' || s[0] == '-'))
        {
            negative = s[0] == '-';
            s = s[1..];
        }
        int radix = 10;
        if (s.Length >= 2 && s[0] == '0' && char.ToLowerInvariant(s[1]) is 'x' or 'o' or 'b')
        {
            radix = char.ToLowerInvariant(s[1]) switch { 'x' => 16, 'o' => 8, _ => 2 };
            s = s[2..];
            if (s.Length > 0 && s[0] == '_')
                s = s[1..];
        }
        else if (s.Length > 1 && s[0] == '0' && s.TrimStart('0').Length > 0 && !s.TrimStart('0').StartsWith("_"))
            return false; // Python rejects decimal literals with leading zeros
        if (s.Length == 0 || s[^1] == '_')
            return false;
        UInt128 magnitude = 0;
        bool previousUnderscore = true;
        foreach (char c in s)
        {
            if (c == '_')
            {
                if (previousUnderscore)
                    return false;
                previousUnderscore = true;
                continue;
            }
            previousUnderscore = false;
            int digit = char.IsAsciiDigit(c) ? c - '0' : char.IsAsciiLetter(c) ? char.ToLowerInvariant(c) - 'a' + 10 : 99;
            if (digit >= radix)
                return false;
            UInt128 next = magnitude * (uint)radix + (uint)digit;
            if (next / (uint)radix != magnitude || next > (UInt128)Int128.MaxValue)
                return false;
            magnitude = next;
        }
        value = negative ? -(Int128)magnitude : (Int128)magnitude;
        return true;
    }

    // Kernel dev_t as CRIU stores it (MINORBITS 20) and glibc's gnu_dev_major/minor for odev fields.
    public static string DecodeDev(Int128 value, bool old)
    {
        if (!old)
            return $"{value >> 20}:{value & 0xfffff}";
        ulong dev = (ulong)(UInt128)value;
        ulong major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~0xfffUL);
        ulong minor = (dev & 0xff) | ((dev >> 12) & ~0xffUL);
        return string.Create(CultureInfo.InvariantCulture, $"{major & 0xffffffff}:{minor & 0xffffffff}");
    }

    public static bool TryEncodeDev(string text, bool old, out Int128 value)
    {
        value = 0;
        string[] parts = text.Split(':');
        if (parts.Length != 2
            || !long.TryParse(parts[0].Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long major)
            || !long.TryParse(parts[1].Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long minor))
            return false;
        if (!old)
        {
            value = ((Int128)major << 20) | minor;
            return true;
        }
        ulong ma = (ulong)major, mi = (ulong)minor;
        value = (mi & 0xff) | ((ma & 0xfff) << 8) | ((mi & ~0xffUL) << 12) | ((ma & ~0xfffUL) << 32);
        return true;
    }

    /// <summary>An address stored as 1 (IPv4) or 4 (IPv6) u32 words in network byte order.</summary>
    public static string DecodeIp(IReadOnlyList<uint> words)
    {
        if (words.Count == 1)
            return new IPAddress(BitConverter.GetBytes(words[0])).ToString();
        Span<byte> bytes = stackalloc byte[16];
        for (int i = 0; i < 4; i++)
            BitConverter.TryWriteBytes(bytes[(i * 4)..], i < words.Count ? words[i] : 0u);
        return CompressIPv6(bytes);
    }

    // Python ipaddress's IPv6 text: lower-case hextets without leading zeros, the first longest run of at
    // least two zero hextets replaced by "::" (no dotted IPv4 tail, unlike .NET's formatter).
    private static string CompressIPv6(ReadOnlySpan<byte> bytes)
    {
        var hextets = new List<string>(8);
        for (int i = 0; i < 8; i++)
            hextets.Add(((bytes[2 * i] << 8) | bytes[2 * i + 1]).ToString("x", CultureInfo.InvariantCulture));
        int bestStart = -1, bestLength = 0, start = -1, length = 0;
        for (int i = 0; i < 8; i++)
        {
            if (hextets[i] == "0")
            {
                length++;
                if (start == -1)
                    start = i;
                if (length > bestLength)
                {
                    bestLength = length;
                    bestStart = start;
                }
            }
            else
            {
                length = 0;
                start = -1;
            }
        }
        if (bestLength > 1)
        {
            int end = bestStart + bestLength;
            if (end == 8)
                hextets.Add("");
            hextets.RemoveRange(bestStart, bestLength);
            hextets.Insert(bestStart, "");
            if (bestStart == 0)
                hextets.Insert(0, "");
        }
        return string.Join(':', hextets);
    }

    public static bool TryEncodeIp(string text, out uint[] words)
    {
        words = [];
        if (!IPAddress.TryParse(text, out IPAddress? address))
            return false;
        byte[] bytes = address.GetAddressBytes();
        words = new uint[address.AddressFamily == AddressFamily.InterNetwork ? 1 : 4];
        for (int i = 0; i < words.Length; i++)
            words[i] = BitConverter.ToUInt32(bytes, i * 4);
        return true;
    }

    /// <summary>Python's base64.encodebytes: lines of 76 characters, each ending in "\n"; "" for no bytes.</summary>
    public static string EncodeBase64Lines(ReadOnlySpan<byte> data)
    {
        string plain = Convert.ToBase64String(data);
        var text = new StringBuilder(plain.Length + plain.Length / 76 + 1);
        for (int i = 0; i < plain.Length; i += 76)
            text.Append(plain, i, Math.Min(76, plain.Length - i)).Append('\n');
        return text.ToString();
    }

    /// <summary>Python's base64.decodebytes: characters outside the alphabet (newlines) are ignored.</summary>
    public static bool TryDecodeBase64(string text, out byte[] data)
    {
        var clean = new StringBuilder(text.Length);
        foreach (char c in text)
        {
            if (char.IsAsciiLetterOrDigit(c) || c is '+' or '/' or '=')
                clean.Append(c);
        }
        try
        {
            data = Convert.FromBase64String(clean.ToString());
            return true;
        }
        catch (FormatException)
        {
            data = [];
            return false;
        }
    }

    /// <summary>Quoted-printable as Python's quopri.encodestring (binascii.b2a_qp, text mode, no tab quoting).</summary>
    public static string EncodeQuotedPrintable(ReadOnlySpan<byte> data)
    {
        const int MaxLine = 76;
        int newline = data.IndexOf((byte)'\n');
        bool crlf = newline > 0 && data[newline - 1] == '\r';
        var output = new List<byte>(data.Length * 3);
        int linelen = 0;
        int i = 0;
        while (i < data.Length)
        {
            byte c = data[i];
            bool last = i + 1 == data.Length;
            bool quote = c > 126 || c == '='
                || (c == '.' && linelen == 0 && (last || data[i + 1] is (byte)'\n' or (byte)'\r' or 0))
                || ((c == '\t' || c == ' ') && last)
                || (c < 33 && c != '\r' && c != '\n' && c != '\t' && c != ' ');
            if (quote)
            {
                if (linelen + 3 >= MaxLine)
                {
                    SoftBreak(output, crlf);
                    linelen = 0;
                }
                AppendEscape(output, c);
                i++;
                linelen += 3;
            }
            else if (c == '\n' || (!last && c == '\r' && data[i + 1] == '\n'))
            {
                linelen = 0;
                // Trailing whitespace before a line break is quoted so it survives transport.
                if (output.Count > 0 && output[^1] is (byte)' ' or (byte)'\t')
                {
                    byte ws = output[^1];
                    output.RemoveAt(output.Count - 1);
                    AppendEscape(output, ws);
                }
                if (crlf)
                    output.Add((byte)'\r');
                output.Add((byte)'\n');
                i += c == '\r' ? 2 : 1;
            }
            else
            {
                if (!last && data[i + 1] != '\n' && linelen + 1 >= MaxLine)
                {
                    SoftBreak(output, crlf);
                    linelen = 0;
                }
                linelen++;
                output.Add(c);
                i++;
            }
        }
        return Encoding.Latin1.GetString(output.ToArray());

        static void SoftBreak(List<byte> output, bool crlf)
        {
            output.Add((byte)'=');
            if (crlf)
                output.Add((byte)'\r');
            output.Add((byte)'\n');
        }

        static void AppendEscape(List<byte> output, byte c)
        {
            const string Digits = "0123456789ABCDEF";
            output.Add((byte)'=');
            output.Add((byte)Digits[c >> 4]);
            output.Add((byte)Digits[c & 15]);
        }
    }

    /// <summary>Python's quopri.decodestring (binascii.a2b_qp, no header mode).</summary>
    public static byte[] DecodeQuotedPrintable(ReadOnlySpan<byte> data)
    {
        var output = new List<byte>(data.Length);
        int i = 0;
        while (i < data.Length)
        {
            if (data[i] != '=')
            {
                output.Add(data[i++]);
                continue;
            }
            i++;
            if (i >= data.Length)
                break;
            if (data[i] is (byte)'\n' or (byte)'\r')
            {
                if (data[i] != '\n')
                {
                    while (i < data.Length && data[i] != '\n')
                        i++;
                }
                if (i < data.Length)
                    i++;
            }
            else if (data[i] == '=')
            {
                output.Add((byte)'=');
                i++;
            }
            else if (i + 1 < data.Length && IsHex(data[i]) && IsHex(data[i + 1]))
            {
                output.Add((byte)((HexValue(data[i]) << 4) | HexValue(data[i + 1])));
                i += 2;
            }
            else
                output.Add((byte)'=');
        }
        return output.ToArray();

        static bool IsHex(byte b) => char.IsAsciiHexDigit((char)b);
        static int HexValue(byte b) => b <= '9' ? b - '0' : (b | 0x20) - 'a' + 10;
    }
}
