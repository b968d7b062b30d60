using Crest.Cli.Interop;

namespace Crest.Cli;

internal static class Program
{
    private static int Main(string[] args)
    {
        // Before anything else: the runtime's SIGCHLD handling would reap our tracees (ENGINE.md §8).
        Libc.signal(Libc.SIGCHLD, Libc.SIG_DFL);
        return CrestCommandLine.Run(args, Console.Out, Console.Error, Environment.GetEnvironmentVariable);
    }
}
