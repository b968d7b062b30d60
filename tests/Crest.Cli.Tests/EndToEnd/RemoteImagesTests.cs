// --remote end to end: two network namespaces joined by a veth pair act as the source and the destination
// host. The image-cache runs in the destination's, the image-proxy in the source's, each with its own work
// directory; dump and restore talk to them over the unix sockets there. Nothing of the images may be left
// on either side but logs, and a dump that did not reach the cache leaves the process running as it was.
using System.Diagnostics;
using Crest.Cli.Tests.Binary;
using Crest.Kernel.Processes;

namespace Crest.Cli.Tests.EndToEnd;

[Collection("Checkpointed processes")]
public sealed class RemoteImagesTests() : TwoHosts(20000)
{
    // Snapshot ids name machine-wide things (the records of pre-dumps and the staging directories under
    // /dev/shm/crest-remote): other test runs on this machine (other worktrees) may use the same names at the same
    // time, so every id of this run carries its pid.
    private static readonly string M1 = Id("m1"), T1 = Id("t1"), P1 = Id("p1"), P2 = Id("p2"), P3 = Id("p3"), F1 = Id("f1"),
        A1 = Id("a1"), N1 = Id("n1"), K1 = Id("k1"), K2 = Id("k2"), K3 = Id("k3"), W1 = Id("w1"), C1 = Id("c1"), C2 = Id("c2"), R1 = Id("r1");

    private static string Id(string name) => $"{name}-{Environment.ProcessId}";

    // ---- the hosts --------------------------------------------------------------------------------------

    private void StartProxy(params string[] extra) => StartProxyIn(Source, Port, extra);

    private void StartProxyIn(string workDir, int port, params string[] extra)
    {
        var run = NetworkNamespacePair.RunCrest(SourceNamespace, workDir, ["image-proxy", "--port", $"{port}", "--address", CacheAddress, "-W", workDir,
            "-d", "--pidfile", Path.Combine(workDir, "proxy.pid"), "-o", "proxy.log", "-v4", .. extra]);
        Assert.True(run.ExitCode == 0, $"image-proxy: {run.Stderr}\n{Log(workDir, "proxy.log")}");
    }

    private int ProxyPid(string workDir) => int.Parse(File.ReadAllText(Path.Combine(workDir, "proxy.pid")));

    private CrestRun Dump(string command, int pid, string snapshot, params string[] extra) => DumpIn(Source, command, pid, snapshot, extra);

    private static CrestRun DumpIn(string workDir, string command, int pid, string snapshot, params string[] extra) =>
        CrestProcess.Run(workDir, [command, "--remote", "-t", $"{pid}", "-D", snapshot, "-W", workDir, "-o", $"{snapshot}.log", "-v4", .. extra]);

    private CrestRun Restore(string snapshot) => RestoreIn(Destination, snapshot);

    private static CrestRun RestoreIn(string workDir, string snapshot) =>
        CrestProcess.Run(workDir, ["restore", "--remote", "-D", snapshot, "-W", workDir, "-d", "-o", $"restore-{snapshot}.log", "-v4"]);

    // ---- fixtures ---------------------------------------------------------------------------------------

    private static bool WaitGone(int pid)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < Limit && Exists(pid)) Thread.Sleep(10);
        return !Exists(pid);
    }

    // ---- tests ------------------------------------------------------------------------------------------

    [Fact]
    public void AMemoryChecksumFixtureMigratesThroughProxyAndCache()
    {
        StartCache();
        StartProxy();
        int pid = StartFixture("restore_memory", "64");
        var dump = Dump("dump", pid, M1);
        Assert.True(dump.ExitCode == 0, $"dump: {dump.Stderr}\n{Log(Source, $"{M1}.log")}");
        Assert.True(WaitGone(pid), $"{pid} still runs after the dump");
        var restore = Restore(M1);
        Assert.True(restore.ExitCode == 0, $"restore: {restore.Stderr}\n{Log(Destination, $"restore-{M1}.log")}\n{Log(Destination, "cache.log")}\n{Log(Source, $"{M1}.log")}");
        Assert.Equal("PASS", Verify("restore_memory", pid));
        Assert.Contains("page data compressed with lz4", Log(Source, "proxy.log"));
        // The pages went to the proxy as they were read, not through the staging directory.
        Assert.Matches(@"pages-1\.img streamed out as it was read \(\d{8,} bytes\)", Log(Source, $"{M1}.log"));
        Assert.Contains($"snapshot {M1} complete", Log(Destination, "cache.log"));
        AssertNoImagesLeft();
        // The cache holds m1 as files of its own on tmpfs, and they go when it is stopped.
        int cache = int.Parse(File.ReadAllText(Path.Combine(Destination, "cache.pid")));
        string store = $"/dev/shm/crest-cache-{cache}";
        Assert.True(File.Exists(Path.Combine(store, M1, "inventory.img")), string.Join(", ", Directory.GetFiles(Path.Combine(store, M1))));
        Assert.Equal(0, kill(cache, 15));
        Assert.True(WaitGone(cache), $"image-cache {cache} still runs after SIGTERM");
        Assert.False(Directory.Exists(store), $"{store} is left after the image-cache ended");
    }

    [Fact]
    public void AProcessTreeWithAPipeMigrates()
    {
        StartCache();
        StartProxy("--compress", "zstd");
        int pid = StartFixture("tree_pipe");
        var dump = Dump("dump", pid, T1);
        Assert.True(dump.ExitCode == 0, $"dump: {dump.Stderr}\n{Log(Source, $"{T1}.log")}");
        Assert.True(WaitGone(pid));
        var restore = Restore(T1);
        Assert.True(restore.ExitCode == 0, $"restore: {restore.Stderr}\n{Log(Destination, $"restore-{T1}.log")}");
        Assert.Equal("PASS", Verify("tree_pipe", pid));
        AssertNoImagesLeft();
    }

    [Fact]
    public void APreDumpChainOfThreeResolvesItsParentsRemotely()
    {
        StartCache();
        StartProxy();
        int pid = StartFixture("predump_writer", "32", "1");
        var first = Dump("pre-dump", pid, P1);
        Assert.True(first.ExitCode == 0, $"pre-dump p1: {first.Stderr}\n{Log(Source, $"{P1}.log")}");
        var second = Dump("pre-dump", pid, P2, "--prev-images-dir", $"../{P1}");
        Assert.True(second.ExitCode == 0, $"pre-dump p2: {second.Stderr}\n{Log(Source, $"{P2}.log")}");
        var last = Dump("dump", pid, P3, "--prev-images-dir", $"../{P2}", "--track-mem");
        Assert.True(last.ExitCode == 0, $"dump p3: {last.Stderr}\n{Log(Source, $"{P3}.log")}");
        Assert.True(WaitGone(pid));
        // The later rounds send the pages written since the one before, not the whole memory again.
        long Sent(string snapshot) => long.Parse(System.Text.RegularExpressions.Regex.Match(Log(Source, $"{snapshot}.log"), @"(\d+) bytes of images handed over").Groups[1].Value);
        Assert.True(Sent(P2) < Sent(P1) / 2, $"p1 {Sent(P1)} bytes, p2 {Sent(P2)}");
        var restore = Restore(P3);
        Assert.True(restore.ExitCode == 0, $"restore: {restore.Stderr}\n{Log(Destination, $"restore-{P3}.log")}");
        Assert.Equal("PASS", Verify("predump_writer", pid));
        AssertNoImagesLeft();
        AssertNoStagingLeft(P1);
        AssertNoStagingLeft(P2);
        AssertNoStagingLeft(P3);
    }

    [Fact]
    public async Task APreDumpReleasesTheTreeBeforeItsTransferEnds()
    {
        StartCache();
        StartProxy("--compress", "none");
        int cache = int.Parse(File.ReadAllText(Path.Combine(Destination, "cache.pid")));
        int pid = StartFixture("predump_writer", "32", "1");
        // Staging under /dev/shm/crest-remote is named by snapshot id machine-wide: ids of their own for this run.
        string first = $"h1-{Environment.ProcessId}", last = $"h2-{Environment.ProcessId}";
        // A stopped cache takes no more than its socket buffers and acknowledges nothing: the transfer cannot end.
        Assert.Equal(0, kill(cache, SIGSTOP));
        Task<CrestRun> dumping;
        try
        {
            dumping = Task.Run(() => Dump("pre-dump", pid, first));
            WaitWhileRunning(dumping, () => Log(Source, $"{first}.log").Contains("the tree runs on"), "pre-dump with the cache stopped releases its tree");
            // Released while its images are still on their way: untraced, and it keeps going to sleep and waking up.
            long before = VoluntarySwitches(pid);
            Assert.Equal("0", OrphanedFixtures.StatusField(pid, "TracerPid"));
            // It runs (a loaded machine may take a while to get round to it): a few more of its 1 ms sleeps.
            var running = Stopwatch.StartNew();
            while (VoluntarySwitches(pid) < before + 3 && running.Elapsed < Limit) Thread.Sleep(10);
            Assert.True(VoluntarySwitches(pid) >= before + 3, $"{pid} did not run while the transfer was held back");
            Assert.False(dumping.IsCompleted, "the pre-dump ended before the cache acknowledged it");
        }
        finally
        {
            kill(cache, SIGCONT);
        }
        var pre = await dumping;
        Assert.True(pre.ExitCode == 0, $"pre-dump {first}: {pre.Stderr}\n{Log(Source, $"{first}.log")}");
        var final = Dump("dump", pid, last, "--prev-images-dir", $"../{first}", "--track-mem");
        Assert.True(final.ExitCode == 0, $"dump {last}: {final.Stderr}\n{Log(Source, $"{last}.log")}");
        Assert.True(WaitGone(pid));
        var restore = Restore(last);
        Assert.True(restore.ExitCode == 0, $"restore: {restore.Stderr}\n{Log(Destination, $"restore-{last}.log")}");
        Assert.Equal("PASS", Verify("predump_writer", pid));
        AssertNoImagesLeft();
    }

    private const int SIGCONT = 18;
    private const int SIGSTOP = 19;


    private static long VoluntarySwitches(int pid) => long.Parse(OrphanedFixtures.StatusField(pid, "voluntary_ctxt_switches"));

    [Fact]
    public void AFullCacheFailsTheDumpAndTheProcessRunsOn()
    {
        StartCache("--cache-limit", "8M");
        StartProxy();
        int pid = StartFixture("restore_memory", "64");
        var dump = Dump("dump", pid, F1);
        Assert.Equal(1, dump.ExitCode);
        Assert.Contains("memory limit of 8388608 bytes reached", dump.Stderr);
        Assert.True(Exists(pid));
        Assert.Equal("PASS", Verify("restore_memory", pid));
        var restore = Restore(F1);
        Assert.Equal(1, restore.ExitCode);
        Assert.Contains("memory limit", restore.Stderr);
        AssertNoImagesLeft();
    }

    [Fact]
    public void AnAbsentCacheOrProxyIsReportedAndTheProcessRunsOn()
    {
        var proxy = NetworkNamespacePair.RunCrest(SourceNamespace, Source, ["image-proxy", "--port", $"{Port}", "--address", CacheAddress, "-W", Source, "-d"]);
        Assert.Equal(1, proxy.ExitCode);
        Assert.Contains($"cannot connect to the image-cache at {CacheAddress}:{Port}", proxy.Stderr);
        int pid = StartFixture("restore_memory", "16");
        var dump = Dump("dump", pid, A1);
        Assert.Equal(1, dump.ExitCode);
        Assert.Contains("no image-proxy answers on", dump.Stderr);
        Assert.Equal("PASS", Verify("restore_memory", pid));
        var restore = Restore(A1);
        Assert.Equal(1, restore.ExitCode);
        Assert.Contains("no image-cache answers on", restore.Stderr);
    }

    [Fact]
    public void ARestoreOfASnapshotTheCacheNeverGotFailsAtOnceAndLeavesNoProcess()
    {
        StartCache();
        var clock = Stopwatch.StartNew();
        var restore = Restore(N1);
        Assert.Equal(1, restore.ExitCode);
        Assert.Contains($"Cannot get the images of {N1} from the image-cache", restore.Stderr);
        Assert.Contains($"no dump of {N1} reached this image-cache", restore.Stderr);
        Assert.True(clock.Elapsed < Limit, $"the restore took {clock.Elapsed}");
        Assert.DoesNotContain("restoring", Log(Destination, $"restore-{N1}.log"));
        AssertNoImagesLeft();
    }

    [Fact]
    public async Task AConnectionKilledMidStreamLeavesTheProcessRunningAndTheRestoreFailsCleanly()
    {
        StartCache();
        StartProxy("--compress", "none");
        int proxy = int.Parse(File.ReadAllText(Path.Combine(Source, "proxy.pid")));
        int pid = StartFixture("restore_memory", "768");
        var dumping = Task.Run(() => Dump("dump", pid, K1));
        // The images are complete and the cache has begun to receive them: cut the connection.
        WaitWhileRunning(dumping, () => Log(Destination, "cache.log").Contains($"receiving snapshot {K1}"), $"the cache receives {K1}");
        Thread.Sleep(20);
        Assert.Equal(0, kill(proxy, 9));
        var dump = await dumping;
        Assert.Equal(1, dump.ExitCode);
        Assert.Contains("did not reach the image-cache", dump.Stderr);
        Assert.True(Exists(pid));
        Assert.Equal("PASS", Verify("restore_memory", pid));

        var restore = Restore(K1);
        Assert.Equal(1, restore.ExitCode);
        Assert.True(System.Text.RegularExpressions.Regex.IsMatch(restore.Stderr, $"broke while receiving {K1}|closed the connection before the dump of {K1} ended"), restore.Stderr + Log(Destination, "cache.log") + Log(Source, "proxy.log") + string.Join("\n", Log(Source, $"{K1}.log").Split("\n").TakeLast(15)));
        Assert.Contains($"Cannot get the images of {K1} from the image-cache", restore.Stderr);
        AssertNoImagesLeft();
        AssertNoStagingLeft(K1);
    }

    [Fact]
    public async Task ANetworkThatGoesSilentMidStreamFailsTheDumpAndTheTreeRunsOn()
    {
        StartCache();
        StartProxy("--compress", "none");
        int pid = StartFixture("restore_memory", "384");
        var dumping = Task.Run(() => Dump("dump", pid, W1));
        WaitWhileRunning(dumping, () => Log(Destination, "cache.log").Contains($"receiving snapshot {W1}"), $"the cache receives {W1}");
        SilenceTheNetwork();
        // No reset arrives: only the transport's own watch on its peer ends the wait (the kernel would retransmit for 15 minutes).
        var first = await Task.WhenAny(dumping, Task.Delay(TimeSpan.FromSeconds(90)));
        Assert.True(first == dumping, $"the dump still waits 90 s after the network went silent\n{string.Join("\n", Log(Source, $"{W1}.log").Split('\n').TakeLast(10))}");
        var dump = await dumping;
        Assert.Equal(1, dump.ExitCode);
        Assert.Contains("did not reach the image-cache", dump.Stderr);
        AssertRunsUntraced(pid);
        Assert.Equal("PASS", Verify("restore_memory", pid));
        AssertNoStagingLeft(W1);
    }

    [Fact]
    public async Task APreDumpCutMidStreamLeavesNoRecordForALaterRound()
    {
        StartCache();
        StartProxy("--compress", "none");
        int proxy = ProxyPid(Source);
        int pid = StartFixture("predump_writer", "384", "1");
        var dumping = Task.Run(() => Dump("pre-dump", pid, C1));
        WaitWhileRunning(dumping, () => Log(Destination, "cache.log").Contains($"receiving snapshot {C1}"), $"the cache receives {C1}");
        Assert.Equal(0, kill(proxy, 9));
        var pre = await dumping;
        Assert.Equal(1, pre.ExitCode);
        Assert.Contains("did not reach the image-cache", pre.Stderr);
        Assert.True(Exists(pid));
        // A later round cannot take the failed one for its parent.
        var next = Dump("dump", pid, C2, "--prev-images-dir", $"../{C1}", "--track-mem");
        Assert.Equal(1, next.ExitCode);
        Assert.Contains($"The previous snapshot {C1} (--prev-images-dir ../{C1}) was not pre-dumped with --remote on this machine", next.Stderr);
        AssertRunsUntraced(pid);
        Assert.Equal("PASS", Verify("predump_writer", pid));
        AssertNoImagesLeft();
        AssertNoStagingLeft(C1);
        AssertNoStagingLeft(C2);
    }

    [Fact]
    public async Task ACacheKilledWhileARestoreFetchesLeavesNoProcess()
    {
        StartCache();
        StartProxy("--compress", "none");
        int pid = StartFixture("restore_memory", "768");
        var dump = Dump("dump", pid, R1);
        Assert.True(dump.ExitCode == 0, $"dump: {dump.Stderr}\n{Log(Source, $"{R1}.log")}");
        Assert.True(WaitGone(pid));
        string[] before = Directory.GetDirectories("/dev/shm", "crest-restore-*");
        var restoring = Task.Run(() => Restore(R1));
        // The restore's copy of the images has begun to grow: the cache dies.
        WaitWhileRunning(restoring, () => FetchedBytes(before) >= 32 << 20, $"the restore fetches {R1}");
        Assert.Equal(0, kill(CachePid, 9));
        var restore = await restoring;
        Assert.Equal(1, restore.ExitCode);
        Assert.Contains($"Cannot get the images of {R1} from the image-cache", restore.Stderr);
        Assert.False(Exists(pid), $"{pid} runs after a restore that failed");
        AssertNoImagesLeft();
    }

    /// <summary>Bytes in the restore directories made since <paramref name="before"/> was listed.</summary>
    private static long FetchedBytes(string[] before)
    {
        long bytes = 0;
        foreach (string dir in Directory.GetDirectories("/dev/shm", "crest-restore-*").Except(before))
        {
            try
            {
                bytes += new DirectoryInfo(dir).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length);
            }
            catch (IOException)
            {
                // removed meanwhile
            }
        }
        return bytes;
    }

    [Fact]
    public async Task TwoDumpsOfOneSnapshotIdAtOnceStageApart()
    {
        // Two jobs on one source host, each with its image-proxy and image-cache, name their snapshots alike.
        StartCache();
        StartProxy("--compress", "none");
        string sourceB = WorkDirectory("source-b"), destinationB = WorkDirectory("destination-b");
        StartCacheIn(destinationB, SecondPort);
        StartProxyIn(sourceB, SecondPort);
        int a = StartFixture("predump_writer", "32", "1");
        int b = StartFixture("restore_memory", "32");
        string id = $"same-{Environment.ProcessId}";

        // A's pre-dump holds its pages in its staging directory while its proxy (stopped) takes nothing.
        int proxyA = ProxyPid(Source);
        Assert.Equal(0, kill(proxyA, SIGSTOP));
        Task<CrestRun> dumpingA;
        try
        {
            dumpingA = Task.Run(() => Dump("pre-dump", a, id));
            WaitWhileRunning(dumpingA, () => Log(Source, $"{id}.log").Contains("the tree runs on"), "pre-dump A with its proxy stopped releases its tree");
            string stagedA = Assert.Single(StagingOf(id));

            // B dumps a snapshot of the same id meanwhile, start to end: A's directory is not B's.
            var dumpB = DumpIn(sourceB, "dump", b, id);
            Assert.True(dumpB.ExitCode == 0, $"dump B: {dumpB.Stderr}\n{Log(sourceB, $"{id}.log")}");
            Assert.True(Directory.Exists(stagedA), $"{stagedA} went with B's dump");
            Assert.NotEmpty(Directory.GetFiles(stagedA, "pages-*.img"));
        }
        finally
        {
            kill(proxyA, SIGCONT);
        }
        var preA = await dumpingA;
        Assert.True(preA.ExitCode == 0, $"pre-dump A: {preA.Stderr}\n{Log(Source, $"{id}.log")}");
        var finalA = Dump("dump", a, $"{id}-final", "--prev-images-dir", $"../{id}", "--track-mem");
        Assert.True(finalA.ExitCode == 0, $"dump A: {finalA.Stderr}\n{Log(Source, $"{id}-final.log")}");

        var restoreB = RestoreIn(destinationB, id);
        Assert.True(restoreB.ExitCode == 0, $"restore B: {restoreB.Stderr}\n{Log(destinationB, $"restore-{id}.log")}");
        Assert.Equal("PASS", Verify("restore_memory", b));
        var restoreA = Restore($"{id}-final");
        Assert.True(restoreA.ExitCode == 0, $"restore A: {restoreA.Stderr}\n{Log(Destination, $"restore-{id}-final.log")}");
        Assert.Equal("PASS", Verify("predump_writer", a));
        AssertNoImagesLeft();
        AssertNoStagingLeft(id);
    }

    [Fact]
    public async Task TheStagingOfADumpKilledWithSigkillGoesWithTheNextDump()
    {
        StartCache();
        StartProxy("--compress", "none");
        int pid = StartFixture("predump_writer", "32", "1");
        string killed = $"s1-{Environment.ProcessId}", next = $"s2-{Environment.ProcessId}";
        // A restore killed the same way left its directory: the next restore removes it.
        int gone = GonePid();
        string restoreLeft = Directory.CreateDirectory($"/dev/shm/crest-restore-{gone}").FullName;
        File.WriteAllText(Path.Combine(restoreLeft, "inventory.img"), "");

        int proxy = ProxyPid(Source);
        Assert.Equal(0, kill(proxy, SIGSTOP));
        string staged;
        try
        {
            var dumping = Task.Run(() => Dump("pre-dump", pid, killed));
            WaitWhileRunning(dumping, () => Log(Source, $"{killed}.log").Contains("the tree runs on"), "pre-dump with its proxy stopped releases its tree");
            staged = Assert.Single(StagingOf(killed));
            string name = Path.GetFileName(staged);
            int owner = int.Parse(name[".dump-".Length..name.IndexOf('-', ".dump-".Length)]);
            Assert.Equal(0, kill(owner, 9));
            var run = await dumping;
            Assert.NotEqual(0, run.ExitCode);
            Assert.True(Directory.Exists(staged), "a dump killed with SIGKILL removed its staging directory");
        }
        finally
        {
            kill(proxy, SIGCONT);
        }
        Assert.True(Exists(pid));

        var dump = Dump("dump", pid, next);
        Assert.True(dump.ExitCode == 0, $"dump: {dump.Stderr}\n{Log(Source, $"{next}.log")}");
        Assert.False(Directory.Exists(staged), $"{staged} is still there after the next dump");
        Assert.Contains($"removing {staged}, left by crest", Log(Source, $"{next}.log"));
        var restore = Restore(next);
        Assert.True(restore.ExitCode == 0, $"restore: {restore.Stderr}\n{Log(Destination, $"restore-{next}.log")}");
        Assert.False(Directory.Exists(restoreLeft), $"{restoreLeft} is still there after the next restore");
        Assert.Equal("PASS", Verify("predump_writer", pid));
        AssertNoImagesLeft();
        AssertNoStagingLeft(killed);
        AssertNoStagingLeft(next);
    }

    /// <summary>The pid of a process that has just ended.</summary>
    private static int GonePid()
    {
        using var child = ChildProcess.Spawn("/bin/true", ["true"]);
        child.WaitForExit(Limit);
        return child.Pid;
    }

    [Fact]
    public async Task ADumpKilledWhileItHoldsTheLentConnectionBreaksItsSnapshotAndTheNextDumpWorks()
    {
        StartCache();
        StartProxy("--compress", "lz4");
        int pid = StartFixture("restore_memory", "768");
        using (var dumping = CrestProcess.Start(Source, null, ["dump", "--remote", "-t", $"{pid}", "-D", K2, "-W", Source, "-o", $"{K2}.log", "-v4"]))
        {
            // The dump writes its pages into the proxy's connection itself: kill it half-way, its copy of the connection open.
            var clock = Stopwatch.StartNew();
            while (!Log(Destination, "cache.log").Contains($"receiving snapshot {K2}") && clock.Elapsed < Limit) Thread.Sleep(2);
            Assert.Contains($"the connection to the image-cache is lent to the dump of {K2}", Log(Source, "proxy.log"));
            dumping.Kill();
            await dumping.WaitForExitAsync();
        }

        var restore = Restore(K2);
        Assert.Equal(1, restore.ExitCode);
        Assert.True(System.Text.RegularExpressions.Regex.IsMatch(restore.Stderr, $"broke while receiving {K2}|closed the connection before the dump of {K2} ended"), restore.Stderr + Log(Destination, "cache.log") + Log(Source, "proxy.log"));
        Assert.Contains($"dump of {K2} failed: the dump of {K2} ended while it held the connection to the image-cache", Log(Source, "proxy.log"));

        // The proxy connects again for the next dump, which goes through whole.
        int next = StartFixture("restore_memory", "16");
        var dump = Dump("dump", next, K3);
        Assert.True(dump.ExitCode == 0, $"dump: {dump.Stderr}\n{Log(Source, $"{K3}.log")}\n{Log(Source, "proxy.log")}");
        Assert.True(WaitGone(next), $"{next} still runs after the dump");
        var restored = Restore(K3);
        Assert.True(restored.ExitCode == 0, $"restore: {restored.Stderr}\n{Log(Destination, $"restore-{K3}.log")}");
        Assert.Equal("PASS", Verify("restore_memory", next));
        Assert.Equal(2, System.Text.RegularExpressions.Regex.Matches(Log(Destination, "cache.log"), "proxy connected").Count);
        AssertNoImagesLeft();
        // The killed dump's staging went with the next dump.
        AssertNoStagingLeft(K2);
        AssertNoStagingLeft(K3);
    }
}
