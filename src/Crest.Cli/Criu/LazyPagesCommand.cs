// `crest lazy-pages -D DIR [-W WORKDIR] [-d] [--status-fd N] [--pidfile F]`: CRIU's lazy-pages daemon. It reads
// the images of DIR (every pages file opened and mapped before it says it is ready, so that they may be deleted
// then), listens on lazy-pages.socket in the work directory, and serves the tasks that `crest restore
// --lazy-pages` hands it (Crest.Engine.Restore.LazyPages) until each has all its pages or is gone. Ready as the
// other daemons (DaemonMode.cs): --pidfile, one '\0' on --status-fd; -d goes on in the background once ready.
using Crest.Diagnostics;
using Crest.Engine.Restore;

namespace Crest.Cli.Criu;

internal static class LazyPagesCommand
{
    public static int Run(CriuOptions options, CriuPaths paths, TextWriter stderr)
    {
        if (options.IsOn("restore-detached") && !DaemonMode.IsDetachedCopy) return DaemonMode.StartDetached("lazy-pages", stderr);
        string socket = SocketPath(paths.WorkDir);
        LazyPages server;
        try
        {
            server = new LazyPages(paths.ImagesDir, socket);
        }
        catch (RestoreException e)
        {
            DaemonMode.Failed(e.Message);
            throw;
        }
        using (server)
        {
            Log.Info($"lazy-pages: images {paths.ImagesDir}, listening on {socket}");
            DaemonMode.Ready("lazy-pages", paths.PidFile, options.StatusFd);
            using var stop = RemoteCommands.StopOnSignals();
            server.Run(stop.Token);
            Log.Info($"lazy-pages: done: {server.TasksServed} tasks served, {server.PagesCopied} pages copied, {server.Faults} faults");
        }
        return 0;
    }

    /// <summary>Where the daemon listens and restore --lazy-pages connects (CRIU's name, in the work directory).</summary>
    public static string SocketPath(string workDir) => Path.Combine(workDir, LazyPagesConnection.SocketName);
}
