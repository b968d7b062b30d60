// The two hosts of the transport tests (--remote, migrate): network namespaces joined by a veth pair, a work
// directory for each, the image-cache's address and a port of the test's own, fixtures started on the source
// the way a harness starts them, and the checks that nothing of the images stayed behind.
using System.Diagnostics;
using System.Runtime.InteropServices;
using Crest.Cli.Tests.Binary;

namespace Crest.Cli.Tests.EndToEnd;

public abstract partial class TwoHosts : IDisposable
{
    protected static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);
    private static int s_next;

    private readonly TempDirectory _dir = new();
    private readonly string[] _restoreDirsBefore = Directory.GetDirectories("/dev/shm", "crest-restore-*");

    /// <param name="portBase">Tests classes that may run at once take ports from ranges of their own.</param>
    protected TwoHosts(int portBase)
    {
        Source = _dir.Sub("source");
        Destination = _dir.Sub("destination");
        int n = Interlocked.Increment(ref s_next);
        CacheAddress = Net.DestinationAddress;
        Port = portBase + (Environment.ProcessId * 7 + n) % 10000;
        SecondPort = portBase + (Environment.ProcessId * 7 + n + 5000) % 10000;
    }

    protected string Source { get; }
    protected string Destination { get; }
    private NetworkNamespacePair Net { get; } = new();
    protected string SourceNamespace => Net.SourceNamespace;
    protected string CacheAddress { get; }
    /// <summary>The network between the hosts goes silent: no packet passes, neither side is told.</summary>
    protected void SilenceTheNetwork() => Net.Silence();
    /// <summary>What the source host sends goes at <paramref name="rate"/> at most ("16mbit").</summary>
    protected void SlowTheNetwork(string rate) => Net.SlowTheSource(rate);
    /// <summary>The source host's address (where a dump --lazy-pages serves its pages).</summary>
    protected string SourceAddress => Net.SourceAddress;
    protected string DestinationNamespace => Net.DestinationNamespace;
    protected int Port { get; }
    /// <summary>For a second image-cache on the destination (two jobs on one pair of hosts).</summary>
    protected int SecondPort { get; }
    protected List<int> Fixtures { get; } = [];

    public void Dispose()
    {
        foreach (int pid in Fixtures) kill(pid, 9);
        var daemons = new List<int>();
        foreach (string pidFile in Directory.EnumerateFiles(_dir.Path, "*.pid", SearchOption.AllDirectories))
            if (int.TryParse(File.ReadAllText(pidFile), out int daemon) && !Fixtures.Contains(daemon)) daemons.Add(daemon);
        Net.Dispose(); // and the daemons with it (SIGTERM first: a cache removes its image directory then)
        // A cache killed with SIGKILL leaves its image directory (the next cache would remove it): not after a test.
        foreach (int daemon in daemons)
            if (Directory.Exists(CacheStore(daemon)) && !Exists(daemon)) Directory.Delete(CacheStore(daemon), recursive: true);
        _dir.Dispose();
        GC.SuppressFinalize(this);
    }

    protected void StartCache(params string[] extra) => StartCacheIn(Destination, Port, extra);

    /// <summary>An image-cache on the destination with <paramref name="workDir"/> as its work directory, listening on <paramref name="port"/>.</summary>
    protected void StartCacheIn(string workDir, int port, params string[] extra)
    {
        var run = NetworkNamespacePair.RunCrest(Net.DestinationNamespace, workDir, ["image-cache", "--port", $"{port}", "--address", CacheAddress, "-W", workDir,
            "-d", "--pidfile", Path.Combine(workDir, "cache.pid"), "-o", "cache.log", "-v4", .. extra]);
        Assert.True(run.ExitCode == 0, $"image-cache: {run.Stderr}\n{Log(workDir, "cache.log")}");
    }

    /// <summary>A further work directory on either host (it goes with the test's).</summary>
    protected string WorkDirectory(string name) => _dir.Sub(name);

    protected int CachePid => int.Parse(File.ReadAllText(Path.Combine(Destination, "cache.pid")));

    /// <summary>Where the image-cache of that pid keeps its snapshots.</summary>
    protected static string CacheStore(int cache) => $"/dev/shm/crest-cache-{cache}";

    protected static string Log(string dir, string name) => File.Exists(Path.Combine(dir, name)) ? File.ReadAllText(Path.Combine(dir, name)) : $"({name} missing)";

    /// <summary>
    /// Only logs, pidfiles, sockets and fixture output on either host; no restore staging of this test's is left in
    /// /dev/shm; with <paramref name="cacheEmptied"/>, the cache dropped what it held too (a migration's chain once
    /// restored, or what a failed migration asked it to forget).
    /// </summary>
    protected void AssertNoImagesLeft(bool cacheEmptied = false)
    {
        foreach (string dir in new[] { Source, Destination })
        {
            var left = Directory.GetFiles(dir).Select(Path.GetFileName)
                .Where(f => !(f!.EndsWith(".log") || f.EndsWith(".pid") || f.EndsWith(".sock") || f.EndsWith(".out"))).ToList();
            Assert.True(left.Count == 0, $"{dir} holds {string.Join(", ", left)}");
            Assert.Empty(Directory.GetDirectories(dir));
        }
        // A restored chain goes just after the cache answered.
        if (cacheEmptied && File.Exists(Path.Combine(Destination, "cache.pid")) && Exists(CachePid))
        {
            string store = CacheStore(CachePid);
            var clock = Stopwatch.StartNew();
            while (Directory.GetFileSystemEntries(store).Length > 0 && clock.Elapsed < Limit) Thread.Sleep(10);
            Assert.Empty(Directory.GetFileSystemEntries(store));
        }
        // Other restores may run now (other test runs): only a directory made during this test whose restore is gone.
        Assert.DoesNotContain(Directory.GetDirectories("/dev/shm", "crest-restore-*").Except(_restoreDirsBefore),
            d => int.TryParse(d[(d.LastIndexOf('-') + 1)..], out int owner) && !Exists(owner));
    }

    /// <summary>Where dumps stage their images and keep the records of pre-dumps (RemoteStaging.Root).</summary>
    protected const string StagingRoot = "/dev/shm/crest-remote";

    /// <summary>The staging directories of dumps in progress (or killed) of snapshot <paramref name="id"/>: .dump-PID-ID.</summary>
    protected static string[] StagingOf(string id) =>
        Directory.Exists(StagingRoot) ? Directory.GetDirectories(StagingRoot, ".dump-*").Where(d => Path.GetFileName(d).EndsWith($"-{id}", StringComparison.Ordinal)).ToArray() : [];

    /// <summary>No record nor staging directory of a snapshot whose id begins with <paramref name="idPrefix"/> is left on the source.</summary>
    protected static void AssertNoStagingLeft(string idPrefix)
    {
        static string Id(string name) => name.StartsWith(".dump-", StringComparison.Ordinal) ? name[(name.IndexOf('-', ".dump-".Length) + 1)..] : name;
        var left = Directory.Exists(StagingRoot)
            ? Directory.GetDirectories(StagingRoot).Select(d => Path.GetFileName(d)!).Where(n => Id(n).StartsWith(idPrefix, StringComparison.Ordinal)).ToList()
            : [];
        Assert.True(left.Count == 0, $"{StagingRoot} holds {string.Join(", ", left)}");
    }

    /// <summary>Starts a fixture as its own session's leader, orphaned (as a harness starts it); returns its pid.</summary>
    protected int StartFixture(string name, params string[] args) => OrphanedFixtures.Start(Source, Fixtures, Limit, name, args);

    /// <summary>SIGUSR1: the fixture checks itself; its verdict line.</summary>
    protected string Verify(string name, int pid) => OrphanedFixtures.Verify(Source, Limit, name, pid);

    protected static bool Exists(int pid) => OrphanedFixtures.Exists(pid);

    protected static void AssertRunsUntraced(int pid) => OrphanedFixtures.AssertRunsUntraced(pid);

    /// <summary>Polls until <paramref name="reached"/> holds while <paramref name="running"/> (a crest run) goes on; fails if it ended first.</summary>
    protected static void WaitWhileRunning(Task running, Func<bool> reached, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!reached() && !running.IsCompleted && clock.Elapsed < Limit) Thread.Sleep(2);
        Assert.False(running.IsCompleted, $"{what}: the run ended first");
        Assert.True(reached(), $"{what}: not reached in {Limit}");
    }

    [LibraryImport("libc", SetLastError = true)]
    protected static partial int kill(int pid, int signal);
}
