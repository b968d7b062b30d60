// get_robust_list(2) (Linux 2.6.17) for another task: the head and length of its robust futex list, read
// from outside with PTRACE_MODE_READ rights over the task, so the dump needs no injection for it.
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Interop;

namespace Crest.Kernel.Processes;

public static unsafe class RobustList
{
    /// <summary>The robust list head address and its length as the thread <paramref name="tid"/> registered them.</summary>
    public static (ulong Head, ulong Length) Get(int tid)
    {
        ulong head = 0, length = 0;
        long rc = Libc.syscall(SyscallNumbers.get_robust_list, tid, (long)&head, (long)&length);
        if (rc != 0) throw new KernelException("get_robust_list", tid, Errno.Last);
        return (head, length);
    }
}
