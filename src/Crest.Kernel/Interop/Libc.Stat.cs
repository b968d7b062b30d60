// fstat(2) into the x86_64 struct stat (Arch/X64/Stat.cs); fstatfs(2) for the filesystem's magic. glibc exports fstat as a symbol
// since 2.33; before that it was an inline over __fxstat.
using System.Runtime.InteropServices;
using Crest.Kernel.Arch.X64;

namespace Crest.Kernel.Interop;

internal static unsafe partial class Libc
{
    internal const uint S_IFMT = 0xF000, S_IFSOCK = 0xC000, S_IFLNK = 0xA000, S_IFREG = 0x8000, S_IFBLK = 0x6000,
        S_IFDIR = 0x4000, S_IFCHR = 0x2000, S_IFIFO = 0x1000;

    /// <summary>fstat(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int fstat(int fd, stat* statbuf);

    /// <summary>fstatfs(2): struct statfs is 120 bytes on x86_64 and starts with f_type (a long).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int fstatfs(int fd, byte* statfsbuf);

    internal const int StatfsSize = 120;
}
