// crest migrate end to end: two network namespaces joined by a veth pair are the source and the destination
// host (as in the --remote tests). The destination runs `image-cache --allow-restore`; `crest migrate` runs in
// the source's namespace and the fixture must find itself whole at the destination (it verifies itself on
// SIGUSR1). Both hosts share the pid namespace here, so the restored root has the pid the source had.
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using Crest.Cli.Tests.Binary;
using Crest.Kernel.Processes;

namespace Crest.Cli.Tests.EndToEnd;

[Collection("Checkpointed processes")]
public sealed partial class MigrateTests : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);
    private static int s_next;

    private readonly TempDirectory _dir = new();
    private readonly string _source;
    private readonly string _destination;
    private readonly NetworkNamespacePair _net = new();
    private readonly string _cacheAddress;
    private readonly int _port;
    private readonly List<int> _fixtures = [];

    public MigrateTests()
    {
        _source = _dir.Sub("source");
        _destination = _dir.Sub("destination");
        int n = Interlocked.Increment(ref s_next);
        _cacheAddress = _net.DestinationAddress;
        _port = 30000 + (Environment.ProcessId * 7 + n) % 10000;
    }

    public void Dispose()
    {
        foreach (int pid in _fixtures) kill(pid, 9);
        var daemons = new List<int>();
        foreach (string pidFile in Directory.EnumerateFiles(_dir.Path, "*.pid", SearchOption.AllDirectories))
            if (int.TryParse(File.ReadAllText(pidFile), out int daemon) && !_fixtures.Contains(daemon)) daemons.Add(daemon);
        _net.Dispose(); // and the daemons with it (SIGTERM first: a cache removes its image directory then)
        // A cache killed with SIGKILL leaves its image directory (the next cache would remove it): not after a test.
        foreach (int daemon in daemons)
            if (Directory.Exists(CacheStore(daemon)) && !Exists(daemon)) Directory.Delete(CacheStore(daemon), recursive: true);
        _dir.Dispose();
    }

    // ---- the hosts --------------------------------------------------------------------------------------

    private void StartCache(params string[] extra)
    {
        var run = NetworkNamespacePair.RunCrest(_net.DestinationNamespace, _destination, ["image-cache", "--port", $"{_port}", "--address", _cacheAddress, "-W", _destination,
            "-d", "--pidfile", Path.Combine(_destination, "cache.pid"), "-o", "cache.log", "-v4", .. extra]);
        Assert.True(run.ExitCode == 0, $"image-cache: {run.Stderr}\n{Log(_destination, "cache.log")}");
    }

    private int CachePid => int.Parse(File.ReadAllText(Path.Combine(_destination, "cache.pid")));

    /// <summary>Where the image-cache of that pid keeps its snapshots.</summary>
    private static string CacheStore(int cache) => $"/dev/shm/crest-cache-{cache}";

    private CrestRun Migrate(int pid, params string[] extra) =>
        NetworkNamespacePair.RunCrest(_net.SourceNamespace, _source, ["migrate", "-t", $"{pid}", "--address", _cacheAddress, "--port", $"{_port}", "-W", _source,
            "-o", "migrate.log", "-v4", "--json", .. extra]);

    private static string Log(string dir, string name) => File.Exists(Path.Combine(dir, name)) ? File.ReadAllText(Path.Combine(dir, name)) : $"({name} missing)";

    private string Explain(CrestRun run) =>
        $"exit {run.ExitCode}\nstdout: {run.Stdout}\nstderr: {run.Stderr}\n--- migrate.log\n{Tail(Log(_source, "migrate.log"))}\n--- cache.log\n{Tail(Log(_destination, "cache.log"))}\n" +
        string.Join("\n", Directory.GetFiles(_destination, "restore-*.log").Select(f => $"--- {Path.GetFileName(f)}\n{Tail(File.ReadAllText(f))}"));

    private static string Tail(string text) => string.Join("\n", text.Split('\n').TakeLast(25));

    /// <summary>Only logs, pidfiles, sockets and fixture output on either host, nothing staged in /dev/shm.</summary>
    private void AssertNoImagesLeft()
    {
        foreach (string dir in new[] { _source, _destination })
        {
            var left = Directory.GetFiles(dir).Select(Path.GetFileName)
                .Where(f => !(f!.EndsWith(".log") || f.EndsWith(".pid") || f.EndsWith(".sock") || f.EndsWith(".out"))).ToList();
            Assert.True(left.Count == 0, $"{dir} holds {string.Join(", ", left)}");
            Assert.Empty(Directory.GetDirectories(dir));
        }
        // The destination dropped what it restored (or what a failed migration asked it to forget); a restored chain
        // goes just after the cache answered.
        if (File.Exists(Path.Combine(_destination, "cache.pid")) && Exists(CachePid))
        {
            string store = CacheStore(CachePid);
            var clock = Stopwatch.StartNew();
            while (Directory.GetFileSystemEntries(store).Length > 0 && clock.Elapsed < Limit) Thread.Sleep(10);
            Assert.Empty(Directory.GetFileSystemEntries(store));
        }
        // Other restores may be running now: only a directory whose restore is gone is a leftover.
        Assert.DoesNotContain(Directory.GetDirectories("/dev/shm", "crest-restore-*"), d => int.TryParse(d[(d.LastIndexOf('-') + 1)..], out int owner) && !Exists(owner));
    }

    // ---- fixtures ---------------------------------------------------------------------------------------

    /// <summary>Starts a fixture as its own session's leader, orphaned (as a harness starts it); returns its pid.</summary>
    private int StartFixture(string name, params string[] args) => OrphanedFixtures.Start(_source, _fixtures, Limit, name, args);

    /// <summary>SIGUSR1: the fixture checks itself; its verdict line.</summary>
    private string Verify(string name, int pid) => OrphanedFixtures.Verify(_source, Limit, name, pid);

    private static bool Exists(int pid) => OrphanedFixtures.Exists(pid);

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
        AssertNoImagesLeft();
        var clock = Stopwatch.StartNew();
        while (!Log(_destination, "cache.log").Contains("restored as pid") && clock.Elapsed < Limit) Thread.Sleep(10);
        Assert.Contains("restored as pid", Log(_destination, "cache.log"));
        // Restored in place, from the cache's own files: no copy of the chain was made.
        Assert.Contains($"ready in {CacheStore(CachePid)}/{rounds[^1].GetProperty("snapshot").GetString()} ({rounds.Count} snapshots)", Log(_destination, "cache.log"));
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
        Assert.Contains(Directory.GetFiles(_destination, "restore-*.log"), f => File.ReadAllText(f).Contains("left to the lazy-pages daemon"));
        Assert.Contains($"lazy-pages: {pid}: serving", Log(_destination, "cache.log"));
        Assert.Equal("PASS", Verify("restore_memory", pid));
        AssertNoImagesLeft();
    }

    [Fact]
    public void AProcessTreeWithPipesMigrates()
    {
        StartCache("--allow-restore");
        int pid = StartFixture("tree_pipe");
        var run = Migrate(pid, "--max-rounds", "3");
        Assert.True(run.ExitCode == 0, Explain(run));
        Assert.Equal("PASS", Verify("tree_pipe", pid));
        AssertNoImagesLeft();
    }

    [Fact]
    public void AMigrationOverTlsRestoresAtTheDestination()
    {
        using var pki = new Crest.Transport.Tests.Tls.TestPki();
        // One certificate for both ends, naming the destination's address.
        var (cert, key) = pki.Issue(_cacheAddress, "crest");
        string[] tls = ["--tls", "--tls-cacert", pki.CaCert, "--tls-cert", cert, "--tls-key", key];
        StartCache(["--allow-restore", .. tls]);
        int pid = StartFixture("predump_writer", "16", "1");
        var run = Migrate(pid, ["--max-rounds", "3", .. tls]);
        Assert.True(run.ExitCode == 0, Explain(run));
        Assert.Contains("over TLS", Log(_source, "migrate.log"));
        Assert.Equal("PASS", Verify("predump_writer", pid));
        AssertNoImagesLeft();
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
        Assert.Contains($"cannot connect to the image-cache at {_cacheAddress}:{_port}", run.Stderr);
        Assert.Equal("PASS", Verify("predump_writer", pid));
    }

    [Fact]
    public async Task ADestinationKilledMidMigrationLeavesTheSourceRunningAndNothingRestored()
    {
        StartCache("--allow-restore");
        int cache = CachePid;
        int pid = StartFixture("predump_writer", "384", "1");
        var migrating = Task.Run(() => Migrate(pid));
        var clock = Stopwatch.StartNew();
        // Round 1 has begun (the tree is being pre-dumped; its images go to the cache next): the destination dies.
        while (!Log(_source, "migrate.log").Contains("pre-dump: into") && clock.Elapsed < Limit) Thread.Sleep(2);
        Thread.Sleep(50);
        Assert.Equal(0, kill(cache, 9));
        var run = await migrating;
        Assert.True(run.ExitCode == 1, Explain(run));
        Assert.True(run.Stderr.Contains("did not reach the image-cache", StringComparison.Ordinal), Explain(run));
        var summary = JsonDocument.Parse(run.Stdout).RootElement;
        Assert.False(summary.GetProperty("ok").GetBoolean());
        Assert.True(summary.GetProperty("source_running").GetBoolean(), run.Stdout);
        Assert.True(Exists(pid));
        Assert.Equal("PASS", Verify("predump_writer", pid));
        Assert.Empty(Directory.GetFiles(_destination, "restore-*"));
        Assert.DoesNotContain(Directory.Exists("/dev/shm/crest-remote") ? Directory.GetDirectories("/dev/shm/crest-remote") : [], d => Path.GetFileName(d).StartsWith($"migrate-{pid}-", StringComparison.Ordinal));
        AssertNoImagesLeft();
    }

    [Fact]
    public async Task AMigrationThatFailsAfterARoundHasTheDestinationForgetItsSnapshots()
    {
        StartCache("--allow-restore");
        int pid = StartFixture("predump_writer", "256", "1");
        var migrating = Task.Run(() => Migrate(pid));
        var clock = Stopwatch.StartNew();
        // Round 1 is in the cache; the tree dies before the migration could end.
        while (!Log(_source, "migrate.log").Contains("migrate: round 1 ") && clock.Elapsed < Limit) Thread.Sleep(2);
        Assert.Equal(0, kill(pid, 9));
        var run = await migrating;
        Assert.True(run.ExitCode == 1, Explain(run));
        Assert.False(JsonDocument.Parse(run.Stdout).RootElement.GetProperty("ok").GetBoolean());
        string cacheLog = Log(_destination, "cache.log");
        Assert.True(cacheLog.Contains($"asked to forget the snapshots migrate-{pid}-", StringComparison.Ordinal), Explain(run));
        Assert.Contains("dropped the snapshots of", Log(_source, "migrate.log"));
        Assert.Empty(Directory.GetFiles(_destination, "restore-*"));
        AssertNoImagesLeft();
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);
}
