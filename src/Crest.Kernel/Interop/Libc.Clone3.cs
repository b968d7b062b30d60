// clone3(2) (Linux 5.3; set_tid/set_tid_size 5.5, cgroup 5.7). glibc has no public wrapper, so it
// goes through syscall(2). Calling it for real from the .NET process would copy the runtime into
// the child; Crest injects it into a stopped stub instead and uses this declaration for the
// struct layout and for probing the kernel.
using System.Runtime.InteropServices;
using Crest.Kernel.Arch.X64;

namespace Crest.Kernel.Interop;

internal static unsafe partial class Libc
{
    internal const ulong CLONE_VM = 0x100, CLONE_FS = 0x200, CLONE_FILES = 0x400, CLONE_SIGHAND = 0x800,
        CLONE_PIDFD = 0x1000, CLONE_PTRACE = 0x2000, CLONE_VFORK = 0x4000, CLONE_PARENT = 0x8000,
        CLONE_THREAD = 0x10000, CLONE_NEWNS = 0x20000, CLONE_SYSVSEM = 0x40000, CLONE_SETTLS = 0x80000,
        CLONE_PARENT_SETTID = 0x100000, CLONE_CHILD_CLEARTID = 0x200000, CLONE_UNTRACED = 0x800000,
        CLONE_CHILD_SETTID = 0x1000000, CLONE_NEWCGROUP = 0x2000000, CLONE_NEWUTS = 0x4000000,
        CLONE_NEWIPC = 0x8000000, CLONE_NEWUSER = 0x10000000, CLONE_NEWPID = 0x20000000,
        CLONE_NEWNET = 0x40000000, CLONE_IO = 0x80000000, CLONE_CLEAR_SIGHAND = 0x100000000,
        CLONE_INTO_CGROUP = 0x200000000, CLONE_NEWTIME = 0x80;

    /// <summary>Sizes the kernel accepts, by the field that ends each version.</summary>
    internal const int CLONE_ARGS_SIZE_VER0 = 64, CLONE_ARGS_SIZE_VER1 = 80, CLONE_ARGS_SIZE_VER2 = 88;

    /// <summary>clone3(2): returns the child's pid in the parent, 0 in the child, -1 and errno on failure.</summary>
    internal static long clone3(clone_args* cl_args, nuint size) =>
        syscall(SyscallNumbers.clone3, (long)cl_args, (long)size);
}

#pragma warning disable CS8981 // kernel struct names are lower case, as in C
/// <summary>struct clone_args (include/uapi/linux/sched.h), all fields 64-bit, 88 bytes (VER2).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct clone_args
{
    public ulong flags;
    public ulong pidfd;         // int* receiving the child's pidfd with CLONE_PIDFD
    public ulong child_tid;     // CLONE_CHILD_SETTID / CLONE_CHILD_CLEARTID target
    public ulong parent_tid;    // CLONE_PARENT_SETTID target
    public ulong exit_signal;
    public ulong stack;
    public ulong stack_size;
    public ulong tls;
    public ulong set_tid;       // pid_t[set_tid_size]: the pid wanted in each pid namespace level, innermost first
    public ulong set_tid_size;
    public ulong cgroup;        // cgroup directory fd with CLONE_INTO_CGROUP
}
