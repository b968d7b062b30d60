// mmap(2), munmap(2), mprotect(2), mremap(2) (MREMAP_FIXED needs the fifth argument; mremap is
// variadic in C, a fixed declaration is safe on x86_64), madvise(2), memfd_create(2) (Linux 3.17,
// glibc 2.27).
using System.Runtime.InteropServices;

namespace Crest.Kernel.Interop;

internal static unsafe partial class Libc
{
    internal const int PROT_NONE = 0, PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4;

    internal const int MAP_SHARED = 0x01, MAP_PRIVATE = 0x02, MAP_SHARED_VALIDATE = 0x03, MAP_FIXED = 0x10,
        MAP_ANONYMOUS = 0x20, MAP_GROWSDOWN = 0x100, MAP_LOCKED = 0x2000, MAP_NORESERVE = 0x4000,
        MAP_POPULATE = 0x8000, MAP_FIXED_NOREPLACE = 0x100000;

    /// <summary>mmap's error return, (void*)-1.</summary>
    internal static readonly nint MAP_FAILED = -1;

    internal const int MREMAP_MAYMOVE = 1, MREMAP_FIXED = 2, MREMAP_DONTUNMAP = 4;

    internal const uint MFD_CLOEXEC = 1, MFD_ALLOW_SEALING = 2, MFD_HUGETLB = 4, MFD_NOEXEC_SEAL = 8, MFD_EXEC = 0x10;

    /// <summary>mmap(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial nint mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    /// <summary>munmap(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int munmap(nint addr, nuint length);

    /// <summary>mprotect(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int mprotect(nint addr, nuint len, int prot);

    /// <summary>mremap(2). new_address is read only with MREMAP_FIXED.</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial nint mremap(nint old_address, nuint old_size, nuint new_size, int flags, nint new_address);

    /// <summary>madvise(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int madvise(nint addr, nuint length, int advice);

    /// <summary>memfd_create(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int memfd_create(byte* name, uint flags);
}
