// syscall(2): the one entry for system calls glibc does not wrap (clone3, pidfd_getfd, userfaultfd,
// rseq, ...). Numbers come from Arch/X64/SyscallNumbers. glibc's syscall() is plain assembly that
// never reads %al, so declaring it non-variadic is safe on x86_64.
using System.Runtime.InteropServices;

namespace Crest.Kernel.Interop;

internal static unsafe partial class Libc
{
    /// <summary>syscall(2). Returns -1 and sets errno on failure.</summary>
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    internal static partial long syscall(long number, long a1 = 0, long a2 = 0, long a3 = 0, long a4 = 0, long a5 = 0, long a6 = 0);
}
