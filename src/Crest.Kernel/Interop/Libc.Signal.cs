// signal(2) and kill(2), for the SIGCHLD disposition (ENGINE.md §1.3) and for signalling our own children.
using System.Runtime.InteropServices;

namespace Crest.Kernel.Interop;

internal static unsafe partial class Libc
{
    /// <summary>signal(2). Returns the previous handler or SIG_ERR (-1).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial nint signal(int signum, nint handler);

    /// <summary>kill(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int kill(int pid, int sig);

    /// <summary>pthread_sigmask(3) over glibc's 128-byte sigset_t. Returns 0 or the error number (errno is not set).</summary>
    [LibraryImport("libc")]
    internal static partial int pthread_sigmask(int how, ulong* set, ulong* oldset);

    internal static readonly nint SIG_DFL = 0, SIG_IGN = 1, SIG_ERR = -1;

    internal const int SIGHUP = 1, SIGINT = 2, SIGQUIT = 3, SIGILL = 4, SIGTRAP = 5, SIGABRT = 6, SIGBUS = 7,
        SIGFPE = 8, SIGKILL = 9, SIGUSR1 = 10, SIGSEGV = 11, SIGUSR2 = 12, SIGPIPE = 13, SIGALRM = 14,
        SIGTERM = 15, SIGCHLD = 17, SIGCONT = 18, SIGSTOP = 19, SIGTSTP = 20, SIGTTIN = 21, SIGTTOU = 22,
        SIGWINCH = 28, SIGSYS = 31;
}
