// ptrace(2) and the kernel structures its requests exchange, x86_64.
// Requests beyond the classic set and the kernel that brought them: PTRACE_SEIZE/INTERRUPT/LISTEN (3.4),
// PTRACE_GETREGSET/SETREGSET (2.6.34), PTRACE_PEEKSIGINFO (3.10), PTRACE_GETSIGMASK/SETSIGMASK (3.11),
// PTRACE_SECCOMP_GET_FILTER (4.4), PTRACE_GET_SYSCALL_INFO (5.3), PTRACE_GET_RSEQ_CONFIGURATION (5.13).
// glibc's ptrace is variadic but never reads %al, so a fixed four-argument declaration is safe on x86_64.
using System.Runtime.InteropServices;

namespace Crest.Kernel.Interop;

internal static unsafe partial class Libc
{
    /// <summary>ptrace(2). PEEK* requests return the word: an error there is -1 with errno set non-zero.</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial long ptrace(long request, int pid, nint addr, nint data);

    internal const long PTRACE_TRACEME = 0, PTRACE_PEEKTEXT = 1, PTRACE_PEEKDATA = 2, PTRACE_PEEKUSER = 3,
        PTRACE_POKETEXT = 4, PTRACE_POKEDATA = 5, PTRACE_POKEUSER = 6, PTRACE_CONT = 7, PTRACE_KILL = 8,
        PTRACE_SINGLESTEP = 9, PTRACE_ATTACH = 16, PTRACE_DETACH = 17, PTRACE_SYSCALL = 24,
        PTRACE_SETOPTIONS = 0x4200, PTRACE_GETEVENTMSG = 0x4201, PTRACE_GETSIGINFO = 0x4202,
        PTRACE_SETSIGINFO = 0x4203, PTRACE_GETREGSET = 0x4204, PTRACE_SETREGSET = 0x4205, PTRACE_SEIZE = 0x4206,
        PTRACE_INTERRUPT = 0x4207, PTRACE_LISTEN = 0x4208, PTRACE_PEEKSIGINFO = 0x4209,
        PTRACE_GETSIGMASK = 0x420a, PTRACE_SETSIGMASK = 0x420b, PTRACE_SECCOMP_GET_FILTER = 0x420c,
        PTRACE_SECCOMP_GET_METADATA = 0x420d,
        PTRACE_GET_SYSCALL_INFO = 0x420e, PTRACE_GET_RSEQ_CONFIGURATION = 0x420f;

    internal const int PTRACE_EVENT_FORK = 1, PTRACE_EVENT_VFORK = 2, PTRACE_EVENT_CLONE = 3, PTRACE_EVENT_EXEC = 4,
        PTRACE_EVENT_VFORK_DONE = 5, PTRACE_EVENT_EXIT = 6, PTRACE_EVENT_SECCOMP = 7, PTRACE_EVENT_STOP = 128;

    /// <summary>PTRACE_PEEKSIGINFO flag: read the process-wide (shared) queue instead of the thread's.</summary>
    internal const uint PTRACE_PEEKSIGINFO_SHARED = 1;

    /// <summary>Regset note types (include/uapi/linux/elf.h).</summary>
    internal const int NT_PRSTATUS = 1, NT_PRFPREG = 2, NT_X86_XSTATE = 0x202;

    internal const byte PTRACE_SYSCALL_INFO_NONE = 0, PTRACE_SYSCALL_INFO_ENTRY = 1, PTRACE_SYSCALL_INFO_EXIT = 2,
        PTRACE_SYSCALL_INFO_SECCOMP = 3;

    /// <summary>struct iovec (readv(2)) as PTRACE_GETREGSET takes it; named apart from the memory calls' iovec.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct regset_iovec
    {
        public void* iov_base;
        public nuint iov_len;
    }

    /// <summary>struct ptrace_peeksiginfo_args (include/uapi/linux/ptrace.h).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct ptrace_peeksiginfo_args
    {
        public ulong off;
        public uint flags;
        public int nr;
    }

    /// <summary>struct ptrace_rseq_configuration (Linux 5.13).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct ptrace_rseq_configuration
    {
        public ulong rseq_abi_pointer;
        public uint rseq_abi_size;
        public uint signature;
        public uint flags;
        public uint pad;
    }

    /// <summary>
    /// struct ptrace_syscall_info (Linux 5.3). The union is laid out by hand: entry and seccomp share
    /// nr + args; exit has rval + is_error at the same offset. Later kernels may append fields, so callers
    /// pass a buffer larger than this struct and the kernel copies at most its size.
    /// </summary>
    [StructLayout(LayoutKind.Explicit, Size = 128)]
    internal struct ptrace_syscall_info
    {
        [FieldOffset(0)] public byte op;
        [FieldOffset(4)] public uint arch;
        [FieldOffset(8)] public ulong instruction_pointer;
        [FieldOffset(16)] public ulong stack_pointer;
        [FieldOffset(24)] public ulong nr;
        [FieldOffset(32)] public fixed ulong args[6];
        [FieldOffset(80)] public uint ret_data;
        [FieldOffset(24)] public long rval;
        [FieldOffset(32)] public byte is_error;
    }
}
