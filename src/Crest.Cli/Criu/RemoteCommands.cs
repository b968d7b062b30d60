// --remote and its daemons (CRIU 3.14's image-proxy / image-cache, redone; ENGINE.md §5):
//
//   source:       crest image-proxy --address DST --port P      crest dump --remote -t PID -D ID
//   destination:  crest image-cache --port P                    crest restore --remote -D ID
//
// The snapshot id is the name of the -D directory (which need not exist); --prev-images-dir names the parent
// snapshot the same way (../d1 -> d1). The daemons' unix sockets are in the work directory: -W, or
// /run/crest (ImageSockets.DefaultWorkDir) when it is not given, on both sides alike.
//
// Images are never written to a disk. A dump writes them into a staging directory of its own on tmpfs (/dev/shm, RAM;
// RemoteStaging.cs; the engine, its page writers and the splice path stay as they are) and hands them to the proxy; a dump only
// releases (or kills) the tree once the cache acknowledged all of them. A dump streams its pages-N.img to the
// proxy as it reads them (DumpOptions.PagesOutput: reading and sending overlap, and the pages never touch the
// staging directory; each pagemap stays there), then sends the rest while the tree is still frozen. Over plain
// TCP the dump borrows the proxy's connection to the cache and writes into it itself (SnapshotUpload: the pages go
// from the read buffer into the socket, compressed by the dump); over TLS the proxy relays them. A pre-dump
// leaves the tree running whatever happens, so nothing is gained by holding it frozen during the transfer:
// only its pages are scanned and its dirty-page tracker armed while frozen; the pages are read into the staging
// directory once the tree runs again (Dump/PreDump.cs says why that is sound), and then they go to the proxy; a transfer that fails fails the pre-dump and leaves no
// record of it, so that no later round names it as a parent. Afterwards a pre-dump keeps, in RAM, what the next round reads of it (pagemaps, the dirty-tracker record; its pages
// files become holes of the same size), so that an incremental dump resolves its parent locally and sends
// only the changed pages. A restore fetches the snapshot and its parents into tmpfs, restores from there and
// removes them.
using Crest.Cli.Getopt;
using Crest.Diagnostics;
using Crest.Engine.Dump;
using Crest.Engine.Restore;
using Crest.Images.Pages;
using Crest.Kernel;
using Crest.Kernel.Files;
using Crest.Transport.Remote;
using Crest.Transport.Streams;

namespace Crest.Cli.Criu;

internal static class RemoteCommands
{
    /// <summary>Where dumps stage their images and keep the records of pre-dumps (tmpfs; RemoteStaging.cs).</summary>
    public const string DumpStaging = RemoteStaging.Root;

    /// <summary>Longest parent chain followed at restore (PageChain's limit).</summary>
    private const int MaxChain = PageChain.MaxDepth;

    private const long DefaultCacheLimit = 16L << 30;

    public static string SnapshotOf(string imagesDir) => Path.GetFileName(Path.TrimEndingDirectorySeparator(imagesDir));

    // ---- daemons -------------------------------------------------------------------------------------------

    public static int ImageCache(CriuOptions options, CriuPaths paths, TextWriter stderr)
    {
        if (options.Port == 0) throw new UsageException("image-cache needs --port");
        string address = options.Last("address") ?? "0.0.0.0";
        long limit = options.CacheLimit ?? DefaultCacheLimit;
        return DaemonMode.Run("image-cache", options, paths, stderr,
            start: () =>
            {
                var cache = new ImageCache(ImageSockets.Resolve(address, options.Port), ImageSockets.CacheSocket(paths.WorkDir), limit, line => Log.Info($"{line}"), Tls(options));
                try
                {
                    if (options.IsOn("allow-restore")) MigrateCommand.ServeRestores(cache, paths.WorkDir, options.EffectiveLogLevel);
                }
                catch
                {
                    cache.Dispose();
                    throw;
                }
                Log.Info($"image-cache: listening on {cache.LocalEndPoint} for image-proxies, on {cache.UnixSocketPath} for restores, images in {cache.StoreDirectory} (tmpfs), memory limit {limit} bytes");
                return cache;
            },
            serve: (cache, stop) =>
            {
                cache.RunAsync(stop).GetAwaiter().GetResult();
                MigrateCommand.FinishPostCopy();
                return 0;
            });
    }

    public static int ImageProxy(CriuOptions options, CriuPaths paths, TextWriter stderr)
    {
        if (options.Port == 0) throw new UsageException("image-proxy needs --port");
        string address = options.Last("address") ?? throw new UsageException("image-proxy needs --address of the image-cache");
        var codec = options.Compression ?? Codec.Lz4;
        return DaemonMode.Run("image-proxy", options, paths, stderr,
            start: () =>
            {
                var proxy = ImageProxyStart(address, options.Port, codec, paths.WorkDir, Tls(options));
                Log.Info($"image-proxy: listening on {proxy.UnixSocketPath}, forwarding to {address}:{options.Port}, page data compressed with {Codecs.Name(codec)}");
                return proxy;
            },
            serve: (proxy, stop) =>
            {
                proxy.RunAsync(stop).GetAwaiter().GetResult();
                return 0;
            });
    }

    private static ImageProxy ImageProxyStart(string address, int port, Codec codec, string workDir, TlsSettings? tls)
    {
        using var connect = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        return Crest.Transport.Remote.ImageProxy.StartAsync(ImageSockets.ProxySocket(workDir), ImageSockets.Resolve(address, port), codec,
            line => Log.Info($"{line}"), connect.Token, tls, address).GetAwaiter().GetResult();
    }

    /// <summary>--tls and its files (relative paths from the current directory, as CRIU has them).</summary>
    internal static TlsSettings? Tls(CriuOptions options)
    {
        if (!options.IsOn("tls")) return null;
        static string? Full(string? path) => path is null ? null : Path.GetFullPath(path);
        return new TlsSettings(Full(options.Last("tls-cert")), Full(options.Last("tls-key")), Full(options.Last("tls-cacert")), options.IsOn("tls-no-cn-verify")).Load();
    }

    // ---- dump ----------------------------------------------------------------------------------------------

    /// <summary>dump / pre-dump --remote: the engine's options, with the images staged and handed to the proxy.</summary>
    public static Engine.Dump.DumpStatistics Dump(DumpOptions engineOptions, CriuOptions options, CriuPaths paths)
    {
        string snapshot = SnapshotOf(paths.ImagesDir);
        if (!RemoteStaging.IsSnapshotId(snapshot))
            throw new DumpException($"--remote names the snapshot after the -D directory, and \"{snapshot}\" (-D {options.ImagesDir}) cannot be a snapshot id: a file name that does not begin with '.'.");
        string? parentLink = null;
        if (paths.PrevImagesDir is { } prev)
        {
            string parent = SnapshotOf(prev);
            if (!RemoteStaging.IsSnapshotId(parent) || !File.Exists(Path.Combine(RemoteStaging.RecordOf(parent), "inventory.img")))
                throw new DumpException($"The previous snapshot {parent} (--prev-images-dir {options.PrevImagesDir}) was not pre-dumped with --remote on this machine: {RemoteStaging.RecordOf(parent)} holds no record of it.");
            parentLink = Path.Combine("..", parent);
        }
        // The cache is about to get a new snapshot of this id: a record of an older one no longer describes what it holds.
        RemoteStaging.Delete(RemoteStaging.RecordOf(snapshot));
        string stage = RemoteStaging.BeginDump(snapshot);

        string proxySocket = ImageSockets.ProxySocket(paths.WorkDir);
        long sent = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Engine.Dump.DumpStatistics statistics;
        SnapshotUpload? upload = null;
        try
        {
            if (engineOptions.PreDump)
            {
                // A pre-dump's images are written and sent after the tree was released: its freeze lasts the scan only.
                statistics = DumpEngine.Dump(engineOptions with { ImagesDir = stage, ParentLink = parentLink });
                Log.Info($"{snapshot}: pre-dump: the tree runs on ({statistics.FrozenTime.TotalMilliseconds:0.#} ms frozen); sending its images");
                upload = Open(proxySocket, snapshot);
                sent = Send(upload, stage);
            }
            else
            {
                // A dump streams its pages to the proxy as it reads them, and the rest once they are complete; the tree
                // is released (or killed) only once the cache acknowledged all of it.
                upload = Open(proxySocket, snapshot);
                var streaming = upload;
                statistics = DumpEngine.Dump(engineOptions with
                {
                    ImagesDir = stage,
                    ParentLink = parentLink,
                    PagesOutput = streaming.OpenImage,
                    ImagesComplete = dir => sent = Send(streaming, dir),
                });
            }
        }
        catch
        {
            TryDelete(stage);
            RemoteStaging.RemoveRootIfEmpty();
            throw;
        }
        finally
        {
            upload?.Dispose();
        }
        Log.Info($"{snapshot}: {sent} bytes of images handed over and acknowledged in {clock.Elapsed.TotalMilliseconds:0} ms (dump included)");
        if (engineOptions.PreDump)
        {
            KeepRecord(stage);
            RemoteStaging.KeepAsRecord(stage, snapshot);
        }
        else
        {
            // The final dump: nothing of the chain is needed here any more.
            foreach (string dir in Chain(stage)) TryDelete(dir);
            RemoteStaging.RemoveRootIfEmpty();
        }
        return statistics;
    }

    private static SnapshotUpload Open(string proxySocket, string snapshot)
    {
        try
        {
            // Opening waits for this dump's turn on the proxy's connection (another dump may hold it): as long as a send may take.
            using var cancel = new CancellationTokenSource(TimeSpan.FromHours(1));
            return SnapshotUpload.OpenAsync(proxySocket, snapshot, cancel.Token).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is RemoteImageException or OperationCanceledException)
        {
            throw new DumpException($"The images of {snapshot} did not reach the image-cache: {e.Message}", e);
        }
    }

    /// <summary>Every image of <paramref name="dir"/> not streamed already, then the end of the snapshot; returns once acknowledged.</summary>
    private static long Send(SnapshotUpload upload, string dir)
    {
        string snapshot = upload.Snapshot;
        var images = new List<OutgoingImage>();
        foreach (var entry in new DirectoryInfo(dir).EnumerateFileSystemInfos().OrderBy(e => e.Name, StringComparer.Ordinal))
        {
            if (entry.Name == PageChain.ParentLink && entry.LinkTarget is { } target)
            {
                byte[] parent = System.Text.Encoding.UTF8.GetBytes(SnapshotOf(target));
                images.Add(new OutgoingImage(PageChain.ParentLink, () => new MemoryStream(parent)));
                continue;
            }
            if (entry is not FileInfo file || entry.LinkTarget is not null) continue;
            if (entry.Name == "crest-track-mem") continue; // DirtyTracker's record on this machine, not an image
            if (upload.Sent.Contains(entry.Name)) continue;
            images.Add(new OutgoingImage(file.Name, () => new FileStream(file.FullName, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan)));
        }
        try
        {
            using var cancel = new CancellationTokenSource(TimeSpan.FromHours(1));
            long bytes = upload.FinishAsync(images, cancel.Token).GetAwaiter().GetResult();
            Log.Info($"{snapshot}: {upload.Sent.Count} images ({bytes} bytes) acknowledged by the image-cache");
            return bytes;
        }
        catch (Exception e) when (e is RemoteImageException or OperationCanceledException)
        {
            throw new DumpException($"The images of {snapshot} did not reach the image-cache: {e.Message}", e);
        }
    }

    /// <summary>What a later round reads of a pre-dump: everything but the page data, whose files become holes.</summary>
    private static void KeepRecord(string stage)
    {
        foreach (string path in Directory.EnumerateFiles(stage, "pages-*.img"))
        {
            using var fd = FileDescriptor.Open(path, OpenFlags.WriteOnly | OpenFlags.CloseOnExec);
            long length = fd.Stat().Size;
            fd.SetLength(0);
            fd.SetLength(length);
        }
    }

    /// <summary>The staging directory and its parents, following the parent links.</summary>
    private static List<string> Chain(string stage)
    {
        var chain = new List<string> { stage };
        string dir = stage;
        for (int i = 0; i < MaxChain; i++)
        {
            var link = new FileInfo(Path.Combine(dir, PageChain.ParentLink));
            if (link.LinkTarget is not { } target) break;
            dir = Path.GetFullPath(target, dir);
            if (!dir.StartsWith(DumpStaging + "/", StringComparison.Ordinal) || chain.Contains(dir)) break;
            chain.Add(dir);
        }
        return chain;
    }

    // ---- restore -------------------------------------------------------------------------------------------

    public static int Restore(RestoreOptions engineOptions, CriuPaths paths)
    {
        string snapshot = SnapshotOf(paths.ImagesDir);
        string root = RemoteStaging.BeginRestore();
        try
        {
            Fetch(ImageSockets.CacheSocket(paths.WorkDir), snapshot, root);
            return RestoreEngine.Run(engineOptions with { ImagesDir = Path.Combine(root, snapshot) });
        }
        finally
        {
            TryDelete(root);
        }
    }

    /// <summary>The snapshot and its parents into root/ID, with the parent links a local chain has.</summary>
    private static void Fetch(string cacheSocket, string snapshot, string root)
    {
        using var cancel = new CancellationTokenSource(TimeSpan.FromHours(1));
        string? next = snapshot;
        long bytes = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int depth = 0; next is not null; depth++)
        {
            if (depth >= MaxChain) throw new RestoreException($"The chain of parent snapshots of {snapshot} is longer than {MaxChain}.");
            string id = next;
            if (id.Length == 0 || id is "." or ".." || id.Contains('/')) throw new RestoreException($"Snapshot {snapshot} names a parent \"{id}\" that is not a snapshot id.");
            string dir = Path.Combine(root, id);
            if (Directory.Exists(dir)) throw new RestoreException($"The parent snapshots of {snapshot} form a loop at {id}.");
            Directory.CreateDirectory(dir);
            try
            {
                RemoteImageClient.FetchSnapshotAsync(cacheSocket, id, name =>
                {
                    var s = new FileStream(Path.Combine(dir, name), FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
                    return s;
                }, cancel.Token).GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is RemoteImageException or OperationCanceledException)
            {
                throw new RestoreException($"Cannot get the images of {id}{(id == snapshot ? "" : $" (a parent of {snapshot})")} from the image-cache: {e.Message}", e);
            }
            next = null;
            string link = Path.Combine(dir, PageChain.ParentLink);
            if (File.Exists(link))
            {
                next = File.ReadAllText(link);
                File.Delete(link);
                File.CreateSymbolicLink(link, Path.Combine("..", next));
            }
            bytes += new DirectoryInfo(dir).EnumerateFiles().Sum(f => f.Length);
        }
        Log.Info($"{snapshot}: {bytes} bytes of images fetched from the image-cache in {clock.Elapsed.TotalMilliseconds:0} ms");
    }

    private static void TryDelete(string dir) => RemoteStaging.Delete(dir);
}
