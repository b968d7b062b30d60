// x86_64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl). Only the calls Crest makes
// or injects; add more as needed, keeping the kernel's names.
namespace Crest.Kernel.Arch.X64;

public static class SyscallNumbers
{
    public const long read = 0, write = 1, open = 2, close = 3, stat = 4, fstat = 5, lseek = 8, mmap = 9,
        mprotect = 10, munmap = 11, brk = 12, rt_sigaction = 13, rt_sigprocmask = 14, rt_sigreturn = 15,
        ioctl = 16, pread64 = 17, pwrite64 = 18, readv = 19, writev = 20, pipe = 22, sched_yield = 24,
        mremap = 25, madvise = 28, dup = 32, dup2 = 33, pause = 34, nanosleep = 35, getitimer = 36,
        setitimer = 38, getpid = 39, socket = 41, connect = 42, sendmsg = 46, recvmsg = 47, bind = 49,
        clone = 56, fork = 57, vfork = 58, execve = 59, exit = 60, wait4 = 61, kill = 62, uname = 63,
        fcntl = 72, fchdir = 81, umask = 95, getrlimit = 97, ptrace = 101, getuid = 102, getgid = 104,
        setuid = 105, setgid = 106, geteuid = 107, getegid = 108, setpgid = 109, getppid = 110, setsid = 112,
        setgroups = 116, setresuid = 117, getresuid = 118, setresgid = 119, getresgid = 120, getpgid = 121,
        setfsuid = 122, setfsgid = 123, getsid = 124, capget = 125, capset = 126, rt_sigpending = 127, rt_sigqueueinfo = 129,
        sigaltstack = 131, personality = 135, prctl = 157, arch_prctl = 158, setrlimit = 160, gettid = 186,
        futex = 202, sched_setaffinity = 203, sched_getaffinity = 204, set_tid_address = 218,
        restart_syscall = 219, timer_create = 222, timer_settime = 223, timer_gettime = 224,
        timer_getoverrun = 225, timer_delete = 226, clock_gettime = 228, clock_nanosleep = 230,
        exit_group = 231, tgkill = 234, waitid = 247, openat = 257, set_robust_list = 273,
        get_robust_list = 274, splice = 275, tee = 276, vmsplice = 278, dup3 = 292, pipe2 = 293, pwritev = 296, rt_tgsigqueueinfo = 297, prlimit64 = 302,
        setns = 308, process_vm_readv = 310, process_vm_writev = 311, kcmp = 312, seccomp = 317,
        memfd_create = 319, userfaultfd = 323, rseq = 334, pidfd_send_signal = 424, pidfd_open = 434,
        clone3 = 435, close_range = 436, pidfd_getfd = 438, process_madvise = 440, process_mrelease = 448;
}
