// ftruncate(2): sets a file's (or memfd's) size.
using System.Runtime.InteropServices;

namespace Crest.Kernel.Interop;

internal static unsafe partial class Libc
{
    /// <summary>ftruncate(2) (64-bit off_t on x86_64).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int ftruncate(int fd, long length);
}
