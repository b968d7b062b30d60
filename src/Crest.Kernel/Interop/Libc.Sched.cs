// sched_setaffinity(2) / sched_getaffinity(2) (raw syscalls: the kernel's cpumask, not glibc's cpu_set_t
// wrapper semantics) and getcpu(2).
using Crest.Kernel.Arch.X64;

namespace Crest.Kernel.Interop;

internal static unsafe partial class Libc
{
    /// <summary>sched_getaffinity(2): bytes of the mask the kernel wrote, or -1 and errno.</summary>
    internal static long sched_getaffinity(int tid, nuint size, byte* mask) =>
        syscall(SyscallNumbers.sched_getaffinity, tid, (long)size, (long)mask);

    /// <summary>sched_setaffinity(2): 0, or -1 and errno.</summary>
    internal static long sched_setaffinity(int tid, nuint size, byte* mask) =>
        syscall(SyscallNumbers.sched_setaffinity, tid, (long)size, (long)mask);

    /// <summary>getcpu(2) (309 on x86_64): 0, or -1 and errno.</summary>
    internal static long getcpu(uint* cpu, uint* node) => syscall(309, (long)cpu, (long)node, 0);
}
