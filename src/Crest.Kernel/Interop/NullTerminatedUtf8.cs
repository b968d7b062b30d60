// C strings for raw calls: UTF-8 with a terminating NUL, on the stack when short.
using System.Text;

namespace Crest.Kernel.Interop;

internal static class NullTerminatedUtf8
{
    /// <summary>The longest path the kernel accepts (PATH_MAX, with its NUL).</summary>
    internal const int PATH_MAX = 4096;

    /// <summary>Encodes text into buffer with a trailing NUL; the buffer must hold
    /// UTF8.GetMaxByteCount(text.Length) + 1 bytes. Rejects text with an embedded NUL, which C would cut.</summary>
    internal static Span<byte> Encode(string text, Span<byte> buffer)
    {
        if (text.Contains('\0'))
            throw new ArgumentException($"string contains a NUL character: \"{text.Replace("\0", "\\0")}\"", nameof(text));
        int n = Encoding.UTF8.GetBytes(text, buffer);
        buffer[n] = 0;
        return buffer[..(n + 1)];
    }

    internal static int BufferSize(string text) => Encoding.UTF8.GetMaxByteCount(text.Length) + 1;
}
