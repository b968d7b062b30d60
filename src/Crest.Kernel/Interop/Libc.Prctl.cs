// prctl(2), personality(2), prlimit64(2) (Linux 2.6.36), getrlimit(2). prctl is variadic in C; a
// fixed five-argument declaration is safe on x86_64.
using System.Runtime.InteropServices;

namespace Crest.Kernel.Interop;

internal static unsafe partial class Libc
{
    internal const int PR_SET_PDEATHSIG = 1, PR_GET_PDEATHSIG = 2, PR_GET_DUMPABLE = 3, PR_SET_DUMPABLE = 4,
        PR_SET_NAME = 15, PR_GET_NAME = 16, PR_GET_SECCOMP = 21, PR_GET_SECUREBITS = 27, PR_SET_SECUREBITS = 28,
        PR_GET_TIMERSLACK = 30, PR_SET_CHILD_SUBREAPER = 36, PR_GET_CHILD_SUBREAPER = 37,
        PR_SET_NO_NEW_PRIVS = 38, PR_GET_NO_NEW_PRIVS = 39, PR_GET_TID_ADDRESS = 40, PR_SET_THP_DISABLE = 41,
        PR_GET_THP_DISABLE = 42, PR_SET_MM = 35, PR_CAP_AMBIENT = 47, PR_SET_SPECULATION_CTRL = 53,
        PR_GET_SPECULATION_CTRL = 52, PR_SET_TIMER_CREATE_RESTORE_IDS = 77;

    /// <summary>PR_SET_MM sub-options; PR_SET_MM_MAP and PR_SET_MM_MAP_SIZE need CONFIG_CHECKPOINT_RESTORE.</summary>
    internal const int PR_SET_MM_START_CODE = 1, PR_SET_MM_END_CODE = 2, PR_SET_MM_START_DATA = 3,
        PR_SET_MM_END_DATA = 4, PR_SET_MM_START_STACK = 5, PR_SET_MM_START_BRK = 6, PR_SET_MM_BRK = 7,
        PR_SET_MM_ARG_START = 8, PR_SET_MM_ARG_END = 9, PR_SET_MM_ENV_START = 10, PR_SET_MM_ENV_END = 11,
        PR_SET_MM_AUXV = 12, PR_SET_MM_EXE_FILE = 13, PR_SET_MM_MAP = 14, PR_SET_MM_MAP_SIZE = 15;

    /// <summary>The size of the comm buffer PR_SET_NAME/PR_GET_NAME use (TASK_COMM_LEN), with the NUL.</summary>
    internal const int TASK_COMM_LEN = 16;

    internal const int RLIMIT_NLIMITS = 16;
    internal const ulong RLIM_INFINITY = ulong.MaxValue;

    /// <summary>prctl(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int prctl(int option, ulong arg2, ulong arg3, ulong arg4, ulong arg5);

    /// <summary>personality(2). 0xffffffff queries without changing.</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int personality(ulong persona);

    /// <summary>prlimit64(2): pid 0 is the caller. Either pointer may be null.</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int prlimit64(int pid, int resource, rlimit64* new_limit, rlimit64* old_limit);

    /// <summary>getrlimit(2) (the 64-bit rlimit on x86_64).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int getrlimit(int resource, rlimit64* rlim);
}

#pragma warning disable CS8981 // kernel struct names are lower case, as in C
/// <summary>struct rlimit64 (include/uapi/linux/resource.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct rlimit64
{
    public ulong rlim_cur;
    public ulong rlim_max;
}

/// <summary>struct prctl_mm_map (include/uapi/linux/prctl.h), for PR_SET_MM_MAP.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct prctl_mm_map
{
    public ulong start_code, end_code, start_data, end_data, start_brk, brk, start_stack;
    public ulong arg_start, arg_end, env_start, env_end;
    public ulong auxv;      // u64* to the auxv words
    public uint auxv_size;  // in bytes
    public uint exe_fd;     // -1 to leave the exe link alone
}
