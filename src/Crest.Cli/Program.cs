using System.Runtime.InteropServices;

namespace Crest.Cli;

internal static partial class Program
{
    private static int Main(string[] args)
    {
        // Before anything else: the runtime's SIGCHLD handling would reap our tracees (ENGINE.md §8).
        signal(SIGCHLD, SIG_DFL);
        if (args is ["--version"] or ["-V"])
        {
            Console.Out.Write("Version: 0.1.0\n");
            return 0;
        }
        Console.Error.WriteLine("crest: the command line is being built (issue 2)");
        return 1;
    }

    private const int SIGCHLD = 17;
    private static readonly nint SIG_DFL = 0;

    [LibraryImport("libc")]
    private static partial nint signal(int signum, nint handler);
}
