// `dump` and `restore`: CRIU's options turned into the engines' options (CONTRACT.md). Paths are
// already absolute (CriuPaths: a relative --pidfile is in the work directory, as CRIU has it);
// the engines' exceptions become "Error: <message>", exit 1, in CriuRunner.
using Crest.Diagnostics;
using Crest.Engine.Dump;
using Crest.Engine.Restore;
using Crest.Transport.PageServer;

namespace Crest.Cli.Criu;

internal static class CheckpointCommands
{
    public static int Dump(CriuOptions options, CriuPaths paths)
    {
        if (paths.PidFile is { } pidFile)
            Log.Debug($"dump: --pidfile {pidFile} has no use on dump (CRIU ignores it too)");
        if (options.IsOn("lazy-pages")) return LazyDump(options, paths);
        using var pageServer = ConnectPageServer(options, paths);
        var engineOptions = DumpOptionsOf(options, paths) with { PageDestination = pageServer };
        var statistics = options.IsOn("remote") ? RemoteCommands.Dump(engineOptions, options, paths) : DumpEngine.Dump(engineOptions);
        Log.Info($"dump: {statistics}");
        return 0;
    }

    /// <summary>What a dump of either kind takes from CRIU's options: the tree, where the images go, what becomes of it.</summary>
    private static DumpOptions DumpOptionsOf(CriuOptions options, CriuPaths paths) => new()
        {
            Pid = options.Tree,
            ImagesDir = paths.ImagesDir,
            LeaveRunning = options.FinalState == FinalState.Alive,
            LeaveStopped = options.FinalState == FinalState.Stopped,
            FreezeTimeout = TimeSpan.FromSeconds(options.Timeout),
            ParentLink = options.PrevImagesDir,
            TrackMemory = options.IsOn("track-mem"),
            External = options.External,
            ExternalUnixSockets = options.ExternalUnixSockets,
            ShellJob = options.IsOn("shell-job"),
        };

    /// <summary>
    /// dump --lazy-pages --port P [--address A] (post-copy migration, as CRIU's): the images without the pages of private
    /// anonymous memory (PE_LAZY entries), which this dump keeps (LazyPageStore) and, once the tree is gone, serves to
    /// the destination's `lazy-pages --page-server` until it has them all. Listening starts before the tree is touched,
    /// so a port that cannot be had (or a TLS certificate or key that cannot be loaded) fails the dump with the tree
    /// untouched. The dump ends 0 only when the daemon said it has every page; a connection that ends before that fails
    /// it (the daemon kills what it restored). A connection refused at the TLS handshake, or ended before its first
    /// request, was given nothing: the dump logs why and waits for the next daemon, its pages still kept.
    /// </summary>
    private static int LazyDump(CriuOptions options, CriuPaths paths)
    {
        if (options.IsOn("page-server") || options.IsOn("remote"))
            throw new DumpException("--lazy-pages keeps the lazy pages in the dump: it does not combine with --page-server or --remote");
        if (options.Port == 0)
            throw new DumpException("--lazy-pages needs --port (and --address) to serve the lazy pages on");
        var tls = options.IsOn("tls") ? PageServerCommand.Tls(options, paths) : null;
        if (tls is not null) Crest.Transport.Tls.TlsChannel.Check(tls);
        using var listener = PageServerCommand.Listen(options);
        Log.Info($"dump: lazy pages will be served on {listener.LocalEndPoint}{(tls is null ? "" : " over TLS")}");
        // --pre-dump-mode read: the pages copied with process_vm_readv instead of spliced by the tasks (CRIU's choice of
        // how a pre-dump takes memory; the same choice here).
        using var store = new Crest.Engine.Memory.LazyPageStore { Splice = !options.PreDumpRead };
        var engineOptions = DumpOptionsOf(options, paths) with { LazyPages = store };
        var statistics = DumpEngine.Dump(engineOptions);
        Log.Info($"dump: {statistics}");
        Log.Message($"dump: images written, frozen {statistics.FrozenTime.TotalMilliseconds:0.#} ms; {store.Pages} lazy pages ({store.Pages * 4096 >> 20} MiB) kept for the lazy-pages daemon, waiting on {listener.LocalEndPoint}");
        // A connection that fails the TLS handshake (a daemon with the wrong CA or certificate, or any stranger) got
        // nothing: the pages stay kept for the next one. The dump waits as it waited for the first.
        while (true)
        {
            using var accepted = listener.Accept();
            accepted.NoDelay = true;
            accepted.SendBufferSize = 4 << 20;
            Crest.Transport.TcpPeerTimeout.Apply(accepted);
            Log.Info($"dump: lazy-pages daemon connected from {accepted.RemoteEndPoint}");
            Stream connection = new System.Net.Sockets.NetworkStream(accepted, ownsSocket: false);
            try
            {
                if (tls is not null)
                {
                    try
                    {
                        connection = Crest.Transport.Tls.TlsChannel.Accept(connection, options.Last("address"), tls, TimeSpan.FromSeconds(60));
                    }
                    catch (Crest.Transport.Tls.TlsException e)
                    {
                        Log.Error($"dump: the connection from {accepted.RemoteEndPoint} is refused: {e.Message}; the lazy pages are kept, still waiting on {listener.LocalEndPoint}");
                        continue;
                    }
                    Log.Info($"dump: lazy pages are served over TLS");
                }
                if (LazyPageServer.Serve(connection, store, m => Log.Info($"{m}")) is not { } summary)
                {
                    Log.Error($"dump: the connection from {accepted.RemoteEndPoint} ended before it asked for a page (a daemon that refused this dump's certificate?); the lazy pages are kept, still waiting on {listener.LocalEndPoint}");
                    continue;
                }
                Log.Message($"dump: lazy pages served: {summary.PagesServed} pages in {summary.Requests} requests, {summary.Duration.TotalMilliseconds:0} ms");
                return 0;
            }
            catch (PageServerException e)
            {
                throw new DumpException($"lazy pages: {e.Message}", e);
            }
            finally
            {
                connection.Dispose();
            }
        }
    }

    /// <summary>Memory only, the tree left running (ImagesDir from -D; --prev-images-dir relative to it).</summary>
    public static int PreDump(CriuOptions options, CriuPaths paths)
    {
        using var pageServer = ConnectPageServer(options, paths);
        var engineOptions = new DumpOptions
        {
            PageDestination = pageServer,
            Pid = options.Tree,
            ImagesDir = paths.ImagesDir,
            PreDump = true,
            FreezeTimeout = TimeSpan.FromSeconds(options.Timeout),
            ParentLink = options.PrevImagesDir,
            TrackMemory = true,
        };
        var statistics = options.IsOn("remote") ? RemoteCommands.Dump(engineOptions, options, paths) : DumpEngine.Dump(engineOptions);
        Log.Info($"pre-dump: {statistics}");
        return 0;
    }

    /// <summary>--page-server: connected (and the TLS handshake made) before anything touches the tree, so that a
    /// page server that is not there fails the dump with the tree untouched.</summary>
    private static PageServerClient? ConnectPageServer(CriuOptions options, CriuPaths paths)
    {
        if (!options.IsOn("page-server")) return null;
        string address = options.Last("address")!;
        var tls = options.IsOn("tls") ? PageServerCommand.Tls(options, paths) : null;
        var client = PageServerClient.Connect(address, options.Port, tls, TimeSpan.FromSeconds(Math.Max(options.Timeout, 1)));
        Log.Info($"dump: pages go to the {client.Name}{(tls is null ? "" : " over TLS")}");
        return client;
    }

    /// <summary>0 once a detached tree runs; otherwise the root task's exit status (128+signal when killed).</summary>
    public static int Restore(CriuOptions options, CriuPaths paths)
    {
        var engineOptions = new RestoreOptions
        {
            ImagesDir = paths.ImagesDir,
            Detached = options.IsOn("restore-detached"),
            PidFile = paths.PidFile,
            InheritFds = options.InheritFds,
            ShellJob = options.IsOn("shell-job"),
            LazyPagesSocket = options.IsOn("lazy-pages") ? LazyPagesCommand.SocketPath(paths.WorkDir) : null,
        };
        return options.IsOn("remote") ? RemoteCommands.Restore(engineOptions, paths) : RestoreEngine.Run(engineOptions);
    }
}
