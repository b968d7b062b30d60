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
        using var pageServer = ConnectPageServer(options, paths);
        var engineOptions = new DumpOptions
        {
            PageDestination = pageServer,
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
        var statistics = options.IsOn("remote") ? RemoteCommands.Dump(engineOptions, options, paths) : DumpEngine.Dump(engineOptions);
        Log.Info($"dump: {statistics}");
        return 0;
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
