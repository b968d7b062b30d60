// The two libc calls the command line makes itself: signal(2) to reset SIGCHLD before the
// runtime starts (ENGINE.md §8) and close(2) for CRIU's --close FD.
using System.Runtime.InteropServices;

namespace Crest.Cli.Interop;

internal static partial class Libc
{
    public const int SIGCHLD = 17;
    public static readonly nint SIG_DFL = 0;

    /// <summary>signal(2).</summary>
    [LibraryImport("libc")]
    public static partial nint signal(int signum, nint handler);

    /// <summary>close(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    public static partial int close(int fd);
}
