// `crest lazy-pages -D DIR [-W WORKDIR] [-d] [--status-fd N] [--pidfile F] [--page-server --address A --port P]`:
// CRIU's lazy-pages daemon. With --page-server the pages of PE_LAZY entries come from the dump --lazy-pages at A:P
// (connected before the daemon says it is ready; exit 1 when that source broke before every task had its pages). It reads
// the images of DIR (every pages file opened and mapped before it says it is ready, so that they may be deleted
// then), listens on lazy-pages.socket in the work directory, and serves the tasks that `crest restore
// --lazy-pages` hands it (Crest.Engine.Restore.LazyPages) until each has all its pages or is gone; then it exits 0.
// Ready, -d, --status-fd and --pidfile as the other daemons (DaemonMode.cs).
using Crest.Diagnostics;
using Crest.Engine.Restore;
using Crest.Transport.PageServer;

namespace Crest.Cli.Criu;

internal static class LazyPagesCommand
{
    public static int Run(CriuOptions options, CriuPaths paths, TextWriter stderr)
    {
        string socket = SocketPath(paths.WorkDir);
        return DaemonMode.Run("lazy-pages", options, paths, stderr,
            start: () =>
            {
                var remote = ConnectSource(options, paths);
                LazyPages server;
                try
                {
                    server = new LazyPages(paths.ImagesDir, socket, remote);
                }
                catch
                {
                    remote?.Dispose();
                    throw;
                }
                Log.Info($"lazy-pages: images {paths.ImagesDir}, listening on {socket}{(remote is null ? "" : $", lazy pages from the {remote.Name}")}");
                return server;
            },
            serve: (server, stop) =>
            {
                server.Run(stop);
                Log.Info($"lazy-pages: done: {server.TasksServed} tasks served, {server.PagesCopied} pages copied ({server.PagesFetched} fetched from the dump's source), {server.Faults} faults");
                if (server.RemoteFailed)
                {
                    Log.Error("lazy-pages: the dump's source broke before every task had its pages");
                    return 1;
                }
                return 0;
            });
    }

    /// <summary>--page-server --address A --port P: the dump --lazy-pages that keeps the PE_LAZY pages of these images.</summary>
    private static LazyPageClient? ConnectSource(CriuOptions options, CriuPaths paths)
    {
        if (!options.IsOn("page-server")) return null;
        string address = options.Last("address") ?? throw new RestoreException("lazy-pages --page-server needs --address of the dump that serves the pages");
        if (options.Port == 0) throw new RestoreException("lazy-pages --page-server needs --port of the dump that serves the pages");
        var tls = options.IsOn("tls") ? PageServerCommand.Tls(options, paths) : null;
        try
        {
            var client = LazyPageClient.Connect(address, options.Port, tls, TimeSpan.FromSeconds(Math.Max(options.Timeout, 1)));
            Log.Info($"lazy-pages: connected to the {client.Name}{(tls is null ? "" : " over TLS")}");
            return client;
        }
        catch (PageServerException e)
        {
            throw new RestoreException($"lazy-pages: {e.Message}", e);
        }
    }

    /// <summary>Where the daemon listens and restore --lazy-pages connects (CRIU's name, in the work directory).</summary>
    public static string SocketPath(string workDir) => Path.Combine(workDir, LazyPagesConnection.SocketName);
}
