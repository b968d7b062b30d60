// waitpid(2) and waitid(2). __WALL (Linux 2.4) waits for clone children and for every ptrace stop;
// WNOWAIT (2.6.10) lets a caller look at a child's state without consuming it.
using System.Runtime.InteropServices;

namespace Crest.Kernel.Interop;

internal static unsafe partial class Libc
{
    /// <summary>waitpid(2). Returns the pid, 0 with WNOHANG when nothing changed, -1 with errno.</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int waitpid(int pid, int* wstatus, int options);

    /// <summary>waitid(2). Fills a siginfo_t (128 bytes); with WNOHANG and nothing to report si_pid stays 0.</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int waitid(int idtype, int id, void* infop, int options);

    internal const int WNOHANG = 1, WUNTRACED = 2, WSTOPPED = 2, WEXITED = 4, WCONTINUED = 8, WNOWAIT = 0x01000000,
        __WNOTHREAD = 0x20000000, __WALL = 0x40000000, __WCLONE = unchecked((int)0x80000000);

    internal const int P_ALL = 0, P_PID = 1, P_PGID = 2, P_PIDFD = 3;

    /// <summary>si_code values of SIGCHLD / waitid.</summary>
    internal const int CLD_EXITED = 1, CLD_KILLED = 2, CLD_DUMPED = 3, CLD_TRAPPED = 4, CLD_STOPPED = 5, CLD_CONTINUED = 6;
}
