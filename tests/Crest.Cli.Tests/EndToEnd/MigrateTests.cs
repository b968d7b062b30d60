// crest migrate end to end: two network namespaces joined by a veth pair are the source and the destination
// host (as in the --remote tests). The destination runs `image-cache --allow-restore`; `crest migrate` runs in
// the source's namespace and the fixture must find itself whole at the destination (it verifies itself on
// SIGUSR1). Both hosts share the pid namespace here, so the restored root has the pid the source had.
using System.Diagnostics;
using System.Text.Json;
using Crest.Cli.Tests.Binary;
using Crest.Kernel.Processes;

namespace Crest.Cli.Tests.EndToEnd;

[Collection("Checkpointed processes")]
public sealed class MigrateTests() : TwoHosts(30000)
{
    // ---- the hosts --------------------------------------------------------------------------------------

    private CrestRun Migrate(int pid, params string[] extra) =>
        NetworkNamespacePair.RunCrest(SourceNamespace, Source, ["migrate", "-t", $"{pid}", "--address", CacheAddress, "--port", $"{Port}", "-W", Source,
            "-o", "migrate.log", "-v4", "--json", .. extra]);

    private string Explain(CrestRun run) =>
        $"exit {run.ExitCode}\nstdout: {run.Stdout}\nstderr: {run.Stderr}\n--- migrate.log\n{Tail(Log(Source, "migrate.log"))}\n--- cache.log\n{Tail(Log(Destination, "cache.log"))}\n" +
        string.Join("\n", Directory.GetFiles(Destination, "restore-*.log").Select(f => $"--- {Path.GetFileName(f)}\n{Tail(File.ReadAllText(f))}"));

    private static string Tail(string text) => string.Join("\n", text.Split('\n').TakeLast(25));

    /// <summary>
    /// A migration that failed before its final dump was acknowledged: the error says <paramref name="why"/>, the summary
    /// that the source runs, and it does, untraced, its fixture whole; nothing was restored at the destination.
    /// </summary>
    private void AssertFailedWithTheSourceRunning(CrestRun run, string why, string fixture, int pid)
    {
        Assert.True(run.ExitCode == 1, Explain(run));
        Assert.True(run.Stderr.Contains(why, StringComparison.Ordinal), Explain(run));
        var summary = JsonDocument.Parse(run.Stdout).RootElement;
        Assert.False(summary.GetProperty("ok").GetBoolean());
        Assert.True(summary.GetProperty("source_running").GetBoolean(), run.Stdout);
        AssertRunsUntraced(pid);
        Assert.Equal("PASS", Verify(fixture, pid));
        Assert.Empty(Directory.GetFiles(Destination, "restore-*"));
        AssertNoStagingLeft($"migrate-{pid}-");
    }

    // ---- tests ------------------------------------------------------------------------------------------

    [Fact]
    public void AProcessRewritingItsMemoryMigratesInRoundsAndVerifiesItselfAtTheDestination()
    {
        StartCache("--allow-restore");
        int pid = StartFixture("predump_writer", "48", "1");
        var run = Migrate(pid);
        Assert.True(run.ExitCode == 0, Explain(run));
        using var summary = JsonDocument.Parse(run.Stdout);
        var root = summary.RootElement;
        Assert.True(root.GetProperty("ok").GetBoolean());
        Assert.Equal(pid, root.GetProperty("restored_pid").GetInt32());
        var rounds = root.GetProperty("rounds").EnumerateArray().ToList();
        Assert.True(rounds.Count >= 2, run.Stdout);
        Assert.Equal("dump", rounds[^1].GetProperty("kind").GetString());
        // The first round carries the memory; the later ones what was rewritten since.
        Assert.True(rounds[0].GetProperty("pages_written").GetInt64() >= 48 * 256, run.Stdout);
        Assert.True(rounds[1].GetProperty("image_bytes").GetInt64() < rounds[0].GetProperty("image_bytes").GetInt64() / 2, run.Stdout);
        Assert.True(root.GetProperty("downtime_ms").GetDouble() > 0);
        Assert.Equal("PASS", Verify("predump_writer", pid));
        AssertNoImagesLeft(cacheEmptied: true);
        var clock = Stopwatch.StartNew();
        while (!Log(Destination, "cache.log").Contains("restored as pid") && clock.Elapsed < Limit) Thread.Sleep(10);
        Assert.Contains("restored as pid", Log(Destination, "cache.log"));
        // Restored in place, from the cache's own files: no copy of the chain was made.
        Assert.Contains($"ready in {CacheStore(CachePid)}/{rounds[^1].GetProperty("snapshot").GetString()} ({rounds.Count} snapshots)", Log(Destination, "cache.log"));
    }

    [Fact]
    public void AMemoryChecksumFixtureMigratesInOneRound()
    {
        StartCache("--allow-restore");
        int pid = StartFixture("restore_memory", "32");
        var run = Migrate(pid, "--max-rounds", "1", "--compress", "zstd");
        Assert.True(run.ExitCode == 0, Explain(run));
        using var summary = JsonDocument.Parse(run.Stdout);
        Assert.Single(summary.RootElement.GetProperty("rounds").EnumerateArray());
        // Post-copy: the restore left the anonymous memory to the lazy-pages server the image-cache runs for it.
        Assert.Contains(Directory.GetFiles(Destination, "restore-*.log"), f => File.ReadAllText(f).Contains("left to the lazy-pages daemon"));
        Assert.Contains($"lazy-pages: {pid}: serving", Log(Destination, "cache.log"));
        Assert.Equal("PASS", Verify("restore_memory", pid));
        AssertNoImagesLeft(cacheEmptied: true);
    }

    [Fact]
    public void ACacheStoppedRightAfterAMigrationEndsOnlyOnceTheTreeHasAllItsPages()
    {
        StartCache("--allow-restore");
        int pid = StartFixture("restore_memory", "256");
        var run = Migrate(pid, "--max-rounds", "1", "--compress", "none");
        Assert.True(run.ExitCode == 0, Explain(run));
        // The tree runs while its memory still arrives from the lazy-pages server inside the cache: SIGTERM now must
        // not take the server (and the pages) away from it.
        int cache = CachePid;
        Assert.Equal(0, kill(cache, 15));
        var clock = Stopwatch.StartNew();
        while (Exists(cache) && clock.Elapsed < Limit) Thread.Sleep(10);
        Assert.False(Exists(cache), "the image-cache did not end after SIGTERM");
        Assert.Contains($"lazy-pages: {pid}: has all its pages", Log(Destination, "cache.log"));
        Assert.Equal("PASS", Verify("restore_memory", pid));
    }

    [Fact]
    public void AProcessTreeWithPipesMigrates()
    {
        StartCache("--allow-restore");
        int pid = StartFixture("tree_pipe");
        var run = Migrate(pid, "--max-rounds", "3");
        Assert.True(run.ExitCode == 0, Explain(run));
        Assert.Equal("PASS", Verify("tree_pipe", pid));
        AssertNoImagesLeft(cacheEmptied: true);
    }

    [Fact]
    public void AMigrationOverTlsRestoresAtTheDestination()
    {
        using var pki = new Crest.Transport.Tests.Tls.TestPki();
        // One certificate for both ends, naming the destination's address.
        var (cert, key) = pki.Issue(CacheAddress, "crest");
        string[] tls = ["--tls", "--tls-cacert", pki.CaCert, "--tls-cert", cert, "--tls-key", key];
        StartCache(["--allow-restore", .. tls]);
        int pid = StartFixture("predump_writer", "16", "1");
        var run = Migrate(pid, ["--max-rounds", "3", .. tls]);
        Assert.True(run.ExitCode == 0, Explain(run));
        Assert.Contains("over TLS", Log(Source, "migrate.log"));
        Assert.Equal("PASS", Verify("predump_writer", pid));
        AssertNoImagesLeft(cacheEmptied: true);
    }

    [Fact]
    public void ACacheThatDoesNotRestoreIsRefusedBeforeAnyRound()
    {
        StartCache();
        int pid = StartFixture("predump_writer", "8", "1");
        var run = Migrate(pid);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("start it with --allow-restore", run.Stderr);
        Assert.Empty(JsonDocument.Parse(run.Stdout).RootElement.GetProperty("rounds").EnumerateArray());
        Assert.Equal("PASS", Verify("predump_writer", pid));
    }

    [Fact]
    public void AnAbsentDestinationIsReportedAndTheProcessRunsOn()
    {
        int pid = StartFixture("predump_writer", "8", "1");
        var run = Migrate(pid);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains($"cannot connect to the image-cache at {CacheAddress}:{Port}", run.Stderr);
        Assert.Equal("PASS", Verify("predump_writer", pid));
    }

    [Fact]
    public async Task ADestinationKilledMidMigrationLeavesTheSourceRunningAndNothingRestored()
    {
        StartCache("--allow-restore");
        int cache = CachePid;
        int pid = StartFixture("predump_writer", "384", "1");
        var migrating = Task.Run(() => Migrate(pid));
        // Round 1 has begun (the tree is being pre-dumped; its images go to the cache next): the destination dies.
        WaitWhileRunning(migrating, () => Log(Source, "migrate.log").Contains("pre-dump: into"), "round 1 begins");
        Thread.Sleep(50);
        Assert.Equal(0, kill(cache, 9));
        AssertFailedWithTheSourceRunning(await migrating, "did not reach the image-cache", "predump_writer", pid);
        AssertNoImagesLeft(cacheEmptied: true);
    }

    [Fact]
    public async Task ADestinationKilledDuringTheFinalDumpLeavesTheSourceRunningAndNothingRestored()
    {
        StartCache("--allow-restore");
        int cache = CachePid;
        int pid = StartFixture("restore_memory", "384");
        // One round: the final dump, whose images stream to the cache while the tree is frozen.
        var migrating = Task.Run(() => Migrate(pid, "--max-rounds", "1", "--compress", "none"));
        WaitWhileRunning(migrating, () => Log(Destination, "cache.log").Contains($"receiving snapshot migrate-{pid}-"), "the cache receives the final dump");
        Thread.Sleep(20);
        Assert.Equal(0, kill(cache, 9));
        AssertFailedWithTheSourceRunning(await migrating, "did not reach the image-cache", "restore_memory", pid);
        AssertNoImagesLeft();
    }

    [Fact]
    public async Task ANetworkThatGoesSilentDuringTheFinalDumpLeavesTheSourceRunning()
    {
        StartCache("--allow-restore");
        int pid = StartFixture("restore_memory", "384");
        var migrating = Task.Run(() => Migrate(pid, "--max-rounds", "1", "--compress", "none"));
        WaitWhileRunning(migrating, () => Log(Destination, "cache.log").Contains($"receiving snapshot migrate-{pid}-"), "the cache receives the final dump");
        SilenceTheNetwork();
        // Frozen until the transport gives up on its silent peer (30 s), then released as it was.
        var first = await Task.WhenAny(migrating, Task.Delay(TimeSpan.FromSeconds(90)));
        Assert.True(first == migrating, "the migration still waits 90 s after the network went silent");
        AssertFailedWithTheSourceRunning(await migrating, "did not reach the image-cache", "restore_memory", pid);
    }

    [Fact]
    public void AFullDestinationFailsTheMigrationAndTheSourceRunsOn()
    {
        StartCache("--allow-restore", "--cache-limit", "8M");
        int pid = StartFixture("predump_writer", "32", "1");
        AssertFailedWithTheSourceRunning(Migrate(pid), "memory limit of 8388608 bytes reached", "predump_writer", pid);
        AssertNoImagesLeft(cacheEmptied: true);
    }

    [Fact]
    public async Task AMigrationThatFailsAfterARoundHasTheDestinationForgetItsSnapshots()
    {
        StartCache("--allow-restore");
        int pid = StartFixture("predump_writer", "256", "1");
        var migrating = Task.Run(() => Migrate(pid));
        // Round 1 is in the cache; the tree dies before the migration could end.
        WaitWhileRunning(migrating, () => Log(Source, "migrate.log").Contains("migrate: round 1 "), "round 1 ends");
        Assert.Equal(0, kill(pid, 9));
        var run = await migrating;
        Assert.True(run.ExitCode == 1, Explain(run));
        Assert.False(JsonDocument.Parse(run.Stdout).RootElement.GetProperty("ok").GetBoolean());
        string cacheLog = Log(Destination, "cache.log");
        Assert.True(cacheLog.Contains($"asked to forget the snapshots migrate-{pid}-", StringComparison.Ordinal), Explain(run));
        Assert.Contains("dropped the snapshots of", Log(Source, "migrate.log"));
        Assert.Empty(Directory.GetFiles(Destination, "restore-*"));
        AssertNoImagesLeft(cacheEmptied: true);
    }

}
