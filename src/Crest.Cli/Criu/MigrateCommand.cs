// `crest migrate -t PID --address DST --port P [--max-rounds N] [--json] [--compress none|lz4|zstd] [--tls ...]` (Crest's
// own): moves a running tree to the machine whose image-cache listens at DST:P, which must run with
// --allow-restore.
//
//   source (this command)                                     destination (crest image-cache --allow-restore)
//   an image-proxy of its own, in-process, one TCP connection ----> snapshots held in memory
//   round 1..k: pre-dump ID-r, parent ID-(r-1), tree running  ----> Ack ID-r
//   final:      dump ID-f --track-mem, parent ID-k            ----> Ack ID-f   (the source tree is killed now)
//               Restore{ID-f} on a second TCP connection      ----> `crest restore --remote -D ID-f -d` there
//               (opened before round 1: no handshake in the downtime)
//                                                            <---- Restored{pid, time} once the tree runs
//
// Pre-dump rounds go on while the dirty set shrinks: a round that writes more than half as many pages as the one
// before, or fewer than ConvergedBytes, is the last before the final dump, and so is round --max-rounds - 1. (A
// round that halves the delta no more saves the final dump little, and each round adds a level to the chain the
// destination restores from; a pre-dump freezes the tree for its scan only, so a task keeps dirtying pages during
// the rounds and the delta levels off at its rate instead of falling to what a few ms between freezes allow.) Downtime is
// measured from the start of the final dump (the freeze is its first step) to the destination's answer.
//
// Faults: until the final dump is acknowledged the source tree is released as it was whatever goes wrong (the
// dump engine never kills a tree whose images did not arrive); a cache that dies or a connection that breaks
// fails the round in progress, and the destination holds no complete snapshot of it, so nothing is restored
// there. Once the final dump is acknowledged the source is gone: a failure of the restore then is reported
// with the snapshot id, which the destination still holds (`crest restore --remote -D ID` there).
using System.Diagnostics;
using System.Text.Json;
using Crest.Diagnostics;
using Crest.Engine.Dump;
using Crest.Engine.Restore;
using Crest.Kernel.Processes;
using Crest.Transport.Remote;
using Crest.Transport.Streams;

namespace Crest.Cli.Criu;

internal static class MigrateCommand
{
    private const int DefaultMaxRounds = 8;
    /// <summary>A pre-dump round that writes less than this leaves too little for another round to matter.</summary>
    private const long ConvergedBytes = 1 << 20;
    private const long PageSize = 4096;

    private sealed record Round(int Number, string Snapshot, bool Final, ulong PagesWritten, ulong PagesSkipped, long ImageBytes, long SentBytes, TimeSpan Took, TimeSpan Frozen);

    public static int Run(CriuOptions options, CriuPaths paths, TextWriter stdout, TextWriter stderr)
    {
        if (options.Port == 0) throw new Getopt.UsageException("migrate needs --port of the destination's image-cache");
        string address = options.Last("address") ?? throw new Getopt.UsageException("migrate needs --address of the destination's image-cache");
        int maxRounds = Math.Min(options.MaxRounds ?? DefaultMaxRounds, Crest.Images.Pages.PageChain.MaxDepth - 1);
        var codec = options.Compression ?? Codec.Lz4;
        var destination = ImageSockets.Resolve(address, options.Port);
        bool progress = !Console.IsErrorRedirected;
        bool json = options.IsOn("json");
        int pid = options.Tree;
        var tls = RemoteCommands.Tls(options);

        string id = $"migrate-{pid}-{DateTime.UtcNow:yyyyMMddHHmmssfff}";
        string work = Path.Combine(paths.WorkDir, $"migrate-{Environment.ProcessId}");
        Directory.CreateDirectory(work, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var rounds = new List<Round>();
        bool sourceGone = false, done = false;
        var total = Stopwatch.StartNew();
        using var stop = new CancellationTokenSource();
        ImageProxy? proxy = null;
        RestoreRequest? restoreRequest = null;
        Task? serving = null;
        try
        {
            using (var connect = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
            {
                try
                {
                    proxy = ImageProxy.StartAsync(ImageSockets.ProxySocket(work), destination, codec, line => Log.Info($"{line}"), connect.Token, tls, address).GetAwaiter().GetResult();
                }
                catch (OperationCanceledException e)
                {
                    throw new RemoteImageException($"the image-cache at {destination} did not accept a connection within 30 s", e);
                }
            }
            using (var probe = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
            {
                try
                {
                    restoreRequest = RestoreRequest.OpenAsync(destination, probe.Token, tls, address).GetAwaiter().GetResult();
                }
                catch (OperationCanceledException e)
                {
                    throw new RemoteImageException($"the image-cache at {destination} did not answer whether it restores within 30 s", e);
                }
            }
            serving = Task.Run(() => proxy.RunAsync(stop.Token));
            Log.Info($"migrate: {pid} to the image-cache at {destination} as {id}, page data compressed with {Codecs.Name(codec)}, at most {maxRounds} rounds");
            if (progress) stderr.WriteLine($"migrate: {pid} -> {destination} ({Codecs.Name(codec)})");

            string? parent = null;
            for (int r = 1; r < maxRounds; r++)
            {
                var round = DumpRound(proxy, options, work, id, r, parent, final: false, pid);
                rounds.Add(round);
                Report(round, progress, stderr);
                parent = round.Snapshot;
                long written = (long)round.PagesWritten * PageSize;
                if (written < ConvergedBytes) break;
                if (rounds.Count >= 2 && round.PagesWritten * 2 > rounds[^2].PagesWritten) break;
            }

            var downtime = Stopwatch.StartNew();
            var last = DumpRound(proxy, options, work, id, rounds.Count + 1, parent, final: true, pid);
            sourceGone = true;
            rounds.Add(last);
            Report(last, progress, stderr);
            if (progress) stderr.WriteLine($"  restoring {last.Snapshot} at {destination}...");
            RestoredEvent restored;
            using (var wait = new CancellationTokenSource(TimeSpan.FromMinutes(10)))
            {
                try
                {
                    restored = restoreRequest.RestoreAsync(last.Snapshot, wait.Token).GetAwaiter().GetResult();
                }
                catch (Exception e) when (e is RemoteImageException or OperationCanceledException)
                {
                    throw new RemoteImageException($"{pid} was dumped to {destination} as {last.Snapshot} and is gone here, but the destination did not restore it: {e.Message}" +
                        $" (the image-cache there still holds {last.Snapshot}: `crest restore --remote -D {last.Snapshot}` on it)", e);
                }
            }
            downtime.Stop();
            Log.Info($"migrate: {pid} runs at {destination} as {restored.Pid}; downtime {downtime.Elapsed.TotalMilliseconds:0.0} ms (final dump {last.Took.TotalMilliseconds:0.0} ms, restore there {restored.Took.TotalMilliseconds:0.0} ms)");
            if (progress)
                stderr.WriteLine($"migrate: done, runs at {destination} as pid {restored.Pid}; downtime {downtime.Elapsed.TotalMilliseconds:0} ms " +
                                 $"(final dump {last.Took.TotalMilliseconds:0} ms, restore {restored.Took.TotalMilliseconds:0} ms), {Mib(rounds.Sum(x => x.SentBytes))} sent in {rounds.Count} rounds");
            if (json) WriteJson(stdout, pid, destination.ToString()!, codec, rounds, restored, downtime.Elapsed, total.Elapsed, null, sourceRunning: false);
            done = true;
            return 0;
        }
        catch (Exception e) when (json && e is RemoteImageException or DumpException or Crest.Kernel.KernelException)
        {
            WriteJson(stdout, pid, destination.ToString()!, codec, rounds, null, null, total.Elapsed, e.Message, sourceRunning: !sourceGone && Exists(pid));
            throw;
        }
        finally
        {
            stop.Cancel();
            // Failed before the final dump was acknowledged: the rounds the cache holds would stay there until it ends.
            if (!done && !sourceGone && restoreRequest is not null) Forget(restoreRequest, id, destination);
            restoreRequest?.DisposeAsync().AsTask().Wait(TimeSpan.FromSeconds(5));
            proxy?.Dispose();
            try
            {
                serving?.Wait(TimeSpan.FromSeconds(5));
            }
            catch (AggregateException)
            {
                // the proxy's end: nothing more to tell
            }
            // The records of the pre-dumps (a round that failed removed its staging directory itself).
            foreach (var round in rounds) TryDelete(RemoteStaging.RecordOf(round.Snapshot));
            RemoteStaging.RemoveRootIfEmpty();
            TryDelete(work);
        }
    }

    /// <summary>Asks the destination to drop the snapshots of this migration; a cache that is gone or does not answer only gets a warning.</summary>
    private static void Forget(RestoreRequest request, string id, System.Net.EndPoint destination)
    {
        using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            request.ForgetAsync(id + "-", wait.Token).GetAwaiter().GetResult();
            Log.Info($"migrate: the image-cache at {destination} dropped the snapshots of {id}");
        }
        catch (Exception e) when (e is RemoteImageException or OperationCanceledException)
        {
            Log.Warning($"migrate: the image-cache at {destination} may still hold snapshots of {id}: {e.Message}");
        }
    }

    /// <summary>One pre-dump (the tree left running) or the final dump (the tree killed once the cache acknowledged it).</summary>
    private static Round DumpRound(ImageProxy proxy, CriuOptions options, string work, string id, int number, string? parent, bool final, int pid)
    {
        string snapshot = $"{id}-{number}";
        var roundPaths = new CriuPaths(Path.Combine(work, snapshot), work, null, false, null, parent is null ? null : Path.Combine(work, parent));
        var engineOptions = new DumpOptions
        {
            Pid = pid,
            ImagesDir = roundPaths.ImagesDir,
            PreDump = !final,
            FreezeTimeout = TimeSpan.FromSeconds(options.Timeout),
            TrackMemory = true,
        };
        long rawBefore = proxy.RawBytes, sentBefore = proxy.SentBytes;
        var clock = Stopwatch.StartNew();
        var statistics = RemoteCommands.Dump(engineOptions, options, roundPaths);
        clock.Stop();
        return new Round(number, snapshot, final, statistics.PagesWritten, statistics.PagesSkippedParent,
            proxy.RawBytes - rawBefore, proxy.SentBytes - sentBefore, clock.Elapsed, statistics.FrozenTime);
    }

    private static void Report(Round round, bool progress, TextWriter stderr)
    {
        string what = round.Final ? "final dump" : "pre-dump";
        Log.Info($"migrate: round {round.Number} ({what} {round.Snapshot}): {round.PagesWritten} pages written, {round.PagesSkipped} unchanged, " +
                 $"{round.ImageBytes} bytes of images, {round.SentBytes} bytes sent, {round.Took.TotalMilliseconds:0.0} ms (frozen {round.Frozen.TotalMilliseconds:0.0} ms)");
        if (progress)
            stderr.WriteLine($"  round {round.Number,2} {what,-10} {Mib((long)round.PagesWritten * PageSize),10} dirty  {Mib(round.SentBytes),10} sent  {round.Took.TotalMilliseconds,7:0} ms");
    }

    private static string Mib(long bytes) => $"{bytes / 1048576.0:0.0} MiB";

    private static void WriteJson(TextWriter stdout, int pid, string destination, Codec codec, List<Round> rounds, RestoredEvent? restored,
        TimeSpan? downtime, TimeSpan total, string? error, bool sourceRunning)
    {
        var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteBoolean("ok", error is null);
            w.WriteNumber("pid", pid);
            w.WriteString("destination", destination);
            w.WriteString("compress", Codecs.Name(codec));
            w.WriteStartArray("rounds");
            foreach (var r in rounds)
            {
                w.WriteStartObject();
                w.WriteNumber("round", r.Number);
                w.WriteString("kind", r.Final ? "dump" : "pre-dump");
                w.WriteString("snapshot", r.Snapshot);
                w.WriteNumber("pages_written", r.PagesWritten);
                w.WriteNumber("pages_unchanged", r.PagesSkipped);
                w.WriteNumber("image_bytes", r.ImageBytes);
                w.WriteNumber("sent_bytes", r.SentBytes);
                w.WriteNumber("ms", Math.Round(r.Took.TotalMilliseconds, 1));
                w.WriteNumber("frozen_ms", Math.Round(r.Frozen.TotalMilliseconds, 1));
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteNumber("sent_bytes", rounds.Sum(r => r.SentBytes));
            w.WriteNumber("image_bytes", rounds.Sum(r => r.ImageBytes));
            if (restored is not null && downtime is { } d)
            {
                w.WriteNumber("restored_pid", restored.Pid);
                w.WriteNumber("final_dump_ms", Math.Round(rounds[^1].Took.TotalMilliseconds, 1));
                w.WriteNumber("restore_ms", Math.Round(restored.Took.TotalMilliseconds, 1));
                w.WriteNumber("downtime_ms", Math.Round(d.TotalMilliseconds, 1));
            }
            w.WriteNumber("total_ms", Math.Round(total.TotalMilliseconds, 1));
            if (error is not null)
            {
                w.WriteString("error", error);
                w.WriteBoolean("source_running", sourceRunning);
            }
            w.WriteEndObject();
        }
        stdout.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.ToArray()));
        stdout.Flush();
    }

    private static bool Exists(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[stat.LastIndexOf(')') + 2] is not ('Z' or 'X');
        }
        catch (IOException)
        {
            return false;
        }
    }

    private static void TryDelete(string dir) => RemoteStaging.Delete(dir);

    // ---- the destination -----------------------------------------------------------------------------------

    /// <summary>
    /// image-cache --allow-restore. A Restore request runs `crest restore -D DIR -d` on the snapshot's directory in the
    /// cache itself (its images are files there, its parents reached through "parent" links), as `crest restore --remote
    /// -d` would after its fetch (its log restore-ID.log and pidfile restore-ID.pid in the work directory), and answers
    /// once that exited. Nothing is copied: the cache keeps the chain (a lease) until the restore ended.
    /// </summary>
    public static void ServeRestores(ImageCache cache, string workDir, LogLevel level)
    {
        var destination = new Destination(cache, workDir, level);
        cache.Restorer = (snapshot, cancel) => destination.RestoreAsync(snapshot, cancel);
    }

    /// <summary>
    /// Waits for the lazy-pages servers of restored trees to finish: a tree whose server went with the image-cache
    /// would read zeros where its pages had not arrived yet, so the cache ends only after they did.
    /// </summary>
    public static void FinishPostCopy()
    {
        List<Thread> running;
        lock (Destination.Servers) running = [.. Destination.Servers];
        if (running.Count > 0) Log.Info($"image-cache: waiting for {running.Count} post-copy restores to get all their pages");
        foreach (var t in running) t.Join();
    }

    private sealed class Destination(ImageCache cache, string workDir, LogLevel level)
    {
        private static int _lazyDirs;

        /// <summary>The lazy-pages server threads still serving (FinishPostCopy waits for them).</summary>
        public static readonly List<Thread> Servers = [];

        public async Task<RestoreOutcome> RestoreAsync(string snapshot, CancellationToken cancel)
        {
            var clock = Stopwatch.StartNew();
            using var lease = await cache.LeaseAsync(snapshot, cancel).ConfigureAwait(false);
            Log.Info($"image-cache: chain of {snapshot} ready in {lease.Directory} ({lease.Chain.Count} snapshots) {clock.Elapsed.TotalMilliseconds:0} ms after the request");
            int pid = await Task.Run(() => RunRestore(snapshot, lease.Directory), cancel).ConfigureAwait(false);
            return new RestoreOutcome(pid, clock.Elapsed);
        }

        /// <summary>
        /// Post-copy: `crest restore --lazy-pages`, served by a lazy-pages server in this process that maps every pages
        /// file of the chain while the restore runs (so the lease may end once both are done), so the tree runs before
        /// its private anonymous memory is filled; the server fills it in the background and ends when done.
        /// </summary>
        private int RunRestore(string snapshot, string imagesDir)
        {
            string logFile = Path.Combine(workDir, $"restore-{snapshot}.log");
            string pidFile = Path.Combine(workDir, $"restore-{snapshot}.pid");
            // Its own directory for lazy-pages.socket (the one name CRIU has), short enough for a unix socket path.
            string lazyDir = Path.Combine(workDir, $"lazy-{Environment.ProcessId}-{Interlocked.Increment(ref _lazyDirs)}");
            File.Delete(pidFile);
            Directory.CreateDirectory(lazyDir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            string socket = LazyPagesCommand.SocketPath(lazyDir);
            List<int> tree;
            try
            {
                tree = TreePids(imagesDir);
            }
            catch (Exception e) when (e is IOException or Crest.Images.ImageFormatException)
            {
                TryDelete(lazyDir);
                throw new RemoteImageException($"cannot read the process tree of {snapshot}: {e.Message}", e);
            }
            var clock = Stopwatch.StartNew();
            var listener = LazyPages.Listen(socket);
            // Not disposed here: the server thread outlives this call and checks the token until its tasks are served.
            var stop = new CancellationTokenSource();
            var stopToken = stop.Token;
            var loaded = new TaskCompletionSource<LazyPages>(TaskCreationOptions.RunContinuationsAsynchronously);
            // The lazy-pages server runs here, on a thread of its own, not as a daemon started for the snapshot: the
            // restore starts at once, and connects while the server maps the chain's pages files (it waits in the
            // backlog until then). The server ends by itself once every task it was handed has all its pages.
            var server = new Thread(() =>
            {
                LazyPages lazy;
                try
                {
                    lazy = new LazyPages(imagesDir, listener, socket);
                }
                catch (Exception e)
                {
                    // The listener stays open, and what waits in its backlog with it, until the restore is dealt with.
                    lock (Servers) Servers.Remove(Thread.CurrentThread);
                    loaded.SetException(e);
                    return;
                }
                loaded.SetResult(lazy);
                Log.Info($"image-cache: lazy-pages for {snapshot} ready in {clock.Elapsed.TotalMilliseconds:0} ms");
                try
                {
                    lazy.Run(stopToken);
                    Log.Info($"image-cache: lazy-pages for {snapshot} done: {lazy.TasksServed} tasks, {lazy.PagesCopied} pages copied, {lazy.Faults} faults");
                }
                catch (Exception e)
                {
                    // Its tasks would read zeros where pages had not arrived once the server lets go of them.
                    Log.Error($"image-cache: lazy-pages for {snapshot} failed: {e.Message}; its tree is killed");
                    KillTree(tree);
                }
                finally
                {
                    lazy.Dispose();
                    lock (Servers) Servers.Remove(Thread.CurrentThread);
                }
            }) { IsBackground = true, Name = $"lazy-pages {snapshot}" };
            lock (Servers) Servers.Add(server);
            server.Start();
            try
            {
                RunCrest(snapshot, "restore", ["restore", "-D", imagesDir, "-W", lazyDir, "--lazy-pages", "-d", "--pidfile", pidFile, "-o", logFile, $"-v{(int)level}"], logFile);
            }
            catch
            {
                // The restore undid itself; a server still loading has nothing to serve.
                stop.Cancel();
                bool settled = ((IAsyncResult)loaded.Task).AsyncWaitHandle.WaitOne(TimeSpan.FromMinutes(1));
                if (!settled || loaded.Task.IsFaulted) LazyPages.CloseListener(listener, socket);
                TryDelete(lazyDir);
                throw;
            }
            try
            {
                loaded.Task.Wait();
            }
            catch (AggregateException e)
            {
                // The tree runs, and what it has not been given would read as zeros once the listener goes: it must die first.
                KillTree(tree);
                LazyPages.CloseListener(listener, socket);
                TryDelete(lazyDir);
                throw new RemoteImageException($"the lazy-pages server for {snapshot} could not load its images: {e.InnerException?.Message}; the restored tree was killed", e);
            }
            // The server holds what it serves; its socket is not needed once the restore has connected.
            TryDelete(lazyDir);
            string text = File.Exists(pidFile) ? File.ReadAllText(pidFile).Trim() : "";
            if (!int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int pid))
                throw new RemoteImageException($"crest restore of {snapshot} succeeded but wrote no pid to {pidFile}");
            return pid;
        }

        /// <summary>The pids of the snapshot's tree (a restore gives every process the pid it had).</summary>
        private static List<int> TreePids(string imagesDir)
        {
            using var reader = Crest.Images.ImageReader.Open(Path.Combine(imagesDir, "pstree.img"), Crest.Images.ImageKinds.Pstree);
            return reader.ReadEntries(Crest.Images.Protos.PstreeEntry.Parser).Select(e => (int)e.Pid).ToList();
        }

        /// <summary>SIGKILL to every process of a restored tree.</summary>
        private static void KillTree(List<int> pids)
        {
            foreach (int pid in pids)
            {
                try
                {
                    using var pidfd = Crest.Kernel.Files.PidFd.Open(pid);
                    pidfd.SendSignal(9);
                }
                catch (Crest.Kernel.KernelException)
                {
                    // gone already
                }
            }
        }

        /// <summary>Runs this crest with <paramref name="arguments"/> (stdio on /dev/null) and waits for it to succeed.</summary>
        private void RunCrest(string snapshot, string what, IReadOnlyList<string> arguments, string logFile)
        {
            string process = Environment.ProcessPath ?? throw new RemoteImageException("the path of this program is unknown");
            string[] args = Environment.GetCommandLineArgs();
            List<string> argv = Path.GetFileNameWithoutExtension(process) == "dotnet" ? ["dotnet", "exec", args[0]] : [process];
            argv.AddRange(arguments);
            var spawn = new SpawnOptions
            {
                Environment = [.. Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
                    .Where(e => (string)e.Key != "CREST_DAEMON_READY_FD").Select(e => $"{e.Key}={e.Value}")],
                WorkingDirectory = workDir,
            };
            spawn.FileActions.Add(new SpawnFileAction.Open(0, "/dev/null", SpawnFileAction.O_RDONLY));
            spawn.FileActions.Add(new SpawnFileAction.Open(1, "/dev/null", SpawnFileAction.O_WRONLY));
            spawn.FileActions.Add(new SpawnFileAction.Open(2, "/dev/null", SpawnFileAction.O_WRONLY));
            WaitStatus status;
            using (var child = ChildProcess.Spawn(process, argv, spawn))
            {
                try
                {
                    status = child.WaitForExit(TimeSpan.FromMinutes(10));
                }
                catch (TimeoutException e)
                {
                    throw new RemoteImageException($"crest {what} of {snapshot} ran longer than 10 minutes and was killed (log {logFile})", e);
                }
            }
            if (!status.Exited || status.ExitCode != 0)
            {
                string how = status.Exited ? $"exited with {status.ExitCode}" : $"was killed by signal {status.TermSignal}";
                throw new RemoteImageException($"crest {what} {how}: {LastError(logFile)} (log {logFile})");
            }
        }
    }

    private static string LastError(string logFile)
    {
        try
        {
            return File.ReadLines(logFile).LastOrDefault(l => l.Contains("Error", StringComparison.Ordinal))?.Trim() ?? "no error in its log";
        }
        catch (IOException)
        {
            return "no log";
        }
    }
}
