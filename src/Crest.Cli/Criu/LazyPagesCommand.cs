// `crest lazy-pages -D DIR [-W WORKDIR] [-d] [--status-fd N] [--pidfile F]`: CRIU's lazy-pages daemon. It reads
// the images of DIR (every pages file opened and mapped before it says it is ready, so that they may be deleted
// then), listens on lazy-pages.socket in the work directory, and serves the tasks that `crest restore
// --lazy-pages` hands it (Crest.Engine.Restore.LazyPages) until each has all its pages or is gone; then it exits 0.
// Ready, -d, --status-fd and --pidfile as the other daemons (DaemonMode.cs).
using Crest.Diagnostics;
using Crest.Engine.Restore;

namespace Crest.Cli.Criu;

internal static class LazyPagesCommand
{
    public static int Run(CriuOptions options, CriuPaths paths, TextWriter stderr)
    {
        string socket = SocketPath(paths.WorkDir);
        return DaemonMode.Run("lazy-pages", options, paths, stderr,
            start: () =>
            {
                var server = new LazyPages(paths.ImagesDir, socket);
                Log.Info($"lazy-pages: images {paths.ImagesDir}, listening on {socket}");
                return server;
            },
            serve: (server, stop) =>
            {
                server.Run(stop);
                Log.Info($"lazy-pages: done: {server.TasksServed} tasks served, {server.PagesCopied} pages copied, {server.Faults} faults");
                return 0;
            });
    }

    /// <summary>Where the daemon listens and restore --lazy-pages connects (CRIU's name, in the work directory).</summary>
    public static string SocketPath(string workDir) => Path.Combine(workDir, LazyPagesConnection.SocketName);
}
