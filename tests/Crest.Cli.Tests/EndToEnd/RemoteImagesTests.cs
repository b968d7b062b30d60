// --remote end to end: two network namespaces joined by a veth pair act as the source and the destination
// host. The image-cache runs in the destination's, the image-proxy in the source's, each with its own work
// directory; dump and restore talk to them over the unix sockets there. Nothing of the images may be left
// on either side but logs, and a dump that did not reach the cache leaves the process running as it was.
using System.Diagnostics;
using System.Runtime.InteropServices;
using Crest.Cli.Tests.Binary;
using Crest.Kernel.Processes;

namespace Crest.Cli.Tests.EndToEnd;

[Collection("Checkpointed processes")]
public sealed partial class RemoteImagesTests : IDisposable
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
    private readonly string[] _restoreDirsBefore = Directory.GetDirectories("/dev/shm", "crest-restore-*");

    public RemoteImagesTests()
    {
        _source = _dir.Sub("source");
        _destination = _dir.Sub("destination");
        int n = Interlocked.Increment(ref s_next);
        _cacheAddress = _net.DestinationAddress;
        _port = 20000 + (Environment.ProcessId * 7 + n) % 10000;
    }

    public void Dispose()
    {
        foreach (int pid in _fixtures) kill(pid, 9);
        _net.Dispose(); // and the daemons with it
        _dir.Dispose();
    }

    // ---- the hosts --------------------------------------------------------------------------------------

    private void StartCache(params string[] extra)
    {
        var run = NetworkNamespacePair.RunCrest(_net.DestinationNamespace, _destination, ["image-cache", "--port", $"{_port}", "--address", _cacheAddress, "-W", _destination,
            "-d", "--pidfile", Path.Combine(_destination, "cache.pid"), "-o", "cache.log", "-v4", .. extra]);
        Assert.True(run.ExitCode == 0, $"image-cache: {run.Stderr}\n{Log(_destination, "cache.log")}");
    }

    private void StartProxy(params string[] extra)
    {
        var run = NetworkNamespacePair.RunCrest(_net.SourceNamespace, _source, ["image-proxy", "--port", $"{_port}", "--address", _cacheAddress, "-W", _source,
            "-d", "--pidfile", Path.Combine(_source, "proxy.pid"), "-o", "proxy.log", "-v4", .. extra]);
        Assert.True(run.ExitCode == 0, $"image-proxy: {run.Stderr}\n{Log(_source, "proxy.log")}");
    }

    private CrestRun Dump(string command, int pid, string snapshot, params string[] extra) =>
        CrestProcess.Run(_source, [command, "--remote", "-t", $"{pid}", "-D", snapshot, "-W", _source, "-o", $"{snapshot}.log", "-v4", .. extra]);

    private CrestRun Restore(string snapshot) =>
        CrestProcess.Run(_destination, ["restore", "--remote", "-D", snapshot, "-W", _destination, "-d", "-o", $"restore-{snapshot}.log", "-v4"]);

    private static string Log(string dir, string name) => File.Exists(Path.Combine(dir, name)) ? File.ReadAllText(Path.Combine(dir, name)) : $"({name} missing)";

    /// <summary>Only logs, pidfiles and the daemons' sockets on either host: no image reached a disk.</summary>
    private void AssertNoImagesLeft()
    {
        foreach (string dir in new[] { _source, _destination })
        {
            var left = Directory.GetFiles(dir).Select(Path.GetFileName)
                .Where(f => !(f!.EndsWith(".log") || f.EndsWith(".pid") || f.EndsWith(".sock") || f.EndsWith(".out"))).ToList();
            Assert.True(left.Count == 0, $"{dir} holds {string.Join(", ", left)}");
            Assert.Empty(Directory.GetDirectories(dir));
        }
        // Only those this test's restores made: other restores on the machine (other test runs) are not ours, nor is
        // one whose restore still runs.
        Assert.DoesNotContain(Directory.GetDirectories("/dev/shm", "crest-restore-*").Except(_restoreDirsBefore),
            d => int.TryParse(d[(d.LastIndexOf('-') + 1)..], out int owner) && !Exists(owner));
    }

    // ---- fixtures ---------------------------------------------------------------------------------------

    /// <summary>Starts a fixture as its own session's leader, orphaned (as a harness starts it); returns its pid.</summary>
    private int StartFixture(string name, params string[] args) => OrphanedFixtures.Start(_source, _fixtures, Limit, name, args);

    /// <summary>SIGUSR1: the fixture checks itself; its verdict line.</summary>
    private string Verify(string name, int pid) => OrphanedFixtures.Verify(_source, Limit, name, pid);

    private static bool Exists(int pid) => OrphanedFixtures.Exists(pid);

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
        var dump = Dump("dump", pid, "m1");
        Assert.True(dump.ExitCode == 0, $"dump: {dump.Stderr}\n{Log(_source, "m1.log")}");
        Assert.True(WaitGone(pid), $"{pid} still runs after the dump");
        var restore = Restore("m1");
        Assert.True(restore.ExitCode == 0, $"restore: {restore.Stderr}\n{Log(_destination, "restore-m1.log")}\n{Log(_destination, "cache.log")}\n{Log(_source, "m1.log")}");
        Assert.Equal("PASS", Verify("restore_memory", pid));
        Assert.Contains("page data compressed with lz4", Log(_source, "proxy.log"));
        // The pages went to the proxy as they were read, not through the staging directory.
        Assert.Matches(@"pages-1\.img streamed out as it was read \(\d{8,} bytes\)", Log(_source, "m1.log"));
        Assert.Contains("snapshot m1 complete", Log(_destination, "cache.log"));
        AssertNoImagesLeft();
        // The cache holds m1 as files of its own on tmpfs, and they go when it is stopped.
        int cache = int.Parse(File.ReadAllText(Path.Combine(_destination, "cache.pid")));
        string store = $"/dev/shm/crest-cache-{cache}";
        Assert.True(File.Exists(Path.Combine(store, "m1", "inventory.img")), string.Join(", ", Directory.GetFiles(Path.Combine(store, "m1"))));
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
        var dump = Dump("dump", pid, "t1");
        Assert.True(dump.ExitCode == 0, $"dump: {dump.Stderr}\n{Log(_source, "t1.log")}");
        Assert.True(WaitGone(pid));
        var restore = Restore("t1");
        Assert.True(restore.ExitCode == 0, $"restore: {restore.Stderr}\n{Log(_destination, "restore-t1.log")}");
        Assert.Equal("PASS", Verify("tree_pipe", pid));
        AssertNoImagesLeft();
    }

    [Fact]
    public void APreDumpChainOfThreeResolvesItsParentsRemotely()
    {
        StartCache();
        StartProxy();
        int pid = StartFixture("predump_writer", "32", "1");
        var first = Dump("pre-dump", pid, "p1");
        Assert.True(first.ExitCode == 0, $"pre-dump p1: {first.Stderr}\n{Log(_source, "p1.log")}");
        var second = Dump("pre-dump", pid, "p2", "--prev-images-dir", "../p1");
        Assert.True(second.ExitCode == 0, $"pre-dump p2: {second.Stderr}\n{Log(_source, "p2.log")}");
        var last = Dump("dump", pid, "p3", "--prev-images-dir", "../p2", "--track-mem");
        Assert.True(last.ExitCode == 0, $"dump p3: {last.Stderr}\n{Log(_source, "p3.log")}");
        Assert.True(WaitGone(pid));
        // The later rounds send the pages written since the one before, not the whole memory again.
        long Sent(string snapshot) => long.Parse(System.Text.RegularExpressions.Regex.Match(Log(_source, $"{snapshot}.log"), @"(\d+) bytes of images handed over").Groups[1].Value);
        Assert.True(Sent("p2") < Sent("p1") / 2, $"p1 {Sent("p1")} bytes, p2 {Sent("p2")}");
        var restore = Restore("p3");
        Assert.True(restore.ExitCode == 0, $"restore: {restore.Stderr}\n{Log(_destination, "restore-p3.log")}");
        Assert.Equal("PASS", Verify("predump_writer", pid));
        AssertNoImagesLeft();
        Assert.DoesNotContain(Directory.Exists("/dev/shm/crest-remote") ? Directory.GetDirectories("/dev/shm/crest-remote") : [], d => Path.GetFileName(d) is "p1" or "p2" or "p3");
    }

    [Fact]
    public async Task APreDumpReleasesTheTreeBeforeItsTransferEnds()
    {
        StartCache();
        StartProxy("--compress", "none");
        int cache = int.Parse(File.ReadAllText(Path.Combine(_destination, "cache.pid")));
        int pid = StartFixture("predump_writer", "32", "1");
        // Staging under /dev/shm/crest-remote is named by snapshot id machine-wide: ids of their own for this run.
        string first = $"h1-{Environment.ProcessId}", last = $"h2-{Environment.ProcessId}";
        // A stopped cache takes no more than its socket buffers and acknowledges nothing: the transfer cannot end.
        Assert.Equal(0, kill(cache, SIGSTOP));
        Task<CrestRun> dumping;
        try
        {
            dumping = Task.Run(() => Dump("pre-dump", pid, first));
            var clock = Stopwatch.StartNew();
            while (!Log(_source, $"{first}.log").Contains("the tree runs on") && !dumping.IsCompleted && clock.Elapsed < Limit) Thread.Sleep(5);
            Assert.False(dumping.IsCompleted, $"the pre-dump ended with the cache stopped\n{Log(_source, $"{first}.log")}");
            Assert.Contains("the tree runs on", Log(_source, $"{first}.log"));
            // Released while its images are still on their way: untraced, and it keeps going to sleep and waking up.
            long before = VoluntarySwitches(pid);
            Thread.Sleep(300);
            Assert.Equal("0", StatusField(pid, "TracerPid"));
            Assert.True(VoluntarySwitches(pid) > before, $"{pid} did not run while the transfer was held back");
            Assert.False(dumping.IsCompleted, "the pre-dump ended before the cache acknowledged it");
        }
        finally
        {
            kill(cache, SIGCONT);
        }
        var pre = await dumping;
        Assert.True(pre.ExitCode == 0, $"pre-dump {first}: {pre.Stderr}\n{Log(_source, $"{first}.log")}");
        var final = Dump("dump", pid, last, "--prev-images-dir", $"../{first}", "--track-mem");
        Assert.True(final.ExitCode == 0, $"dump {last}: {final.Stderr}\n{Log(_source, $"{last}.log")}");
        Assert.True(WaitGone(pid));
        var restore = Restore(last);
        Assert.True(restore.ExitCode == 0, $"restore: {restore.Stderr}\n{Log(_destination, $"restore-{last}.log")}");
        Assert.Equal("PASS", Verify("predump_writer", pid));
        AssertNoImagesLeft();
    }

    private const int SIGCONT = 18;
    private const int SIGSTOP = 19;

    private static string StatusField(int pid, string name) =>
        File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith(name + ":", StringComparison.Ordinal))[(name.Length + 1)..].Trim();

    private static long VoluntarySwitches(int pid) => long.Parse(StatusField(pid, "voluntary_ctxt_switches"));

    [Fact]
    public void AFullCacheFailsTheDumpAndTheProcessRunsOn()
    {
        StartCache("--cache-limit", "8M");
        StartProxy();
        int pid = StartFixture("restore_memory", "64");
        var dump = Dump("dump", pid, "f1");
        Assert.Equal(1, dump.ExitCode);
        Assert.Contains("memory limit of 8388608 bytes reached", dump.Stderr);
        Assert.True(Exists(pid));
        Assert.Equal("PASS", Verify("restore_memory", pid));
        var restore = Restore("f1");
        Assert.Equal(1, restore.ExitCode);
        Assert.Contains("memory limit", restore.Stderr);
        AssertNoImagesLeft();
    }

    [Fact]
    public void AnAbsentCacheOrProxyIsReportedAndTheProcessRunsOn()
    {
        var proxy = NetworkNamespacePair.RunCrest(_net.SourceNamespace, _source, ["image-proxy", "--port", $"{_port}", "--address", _cacheAddress, "-W", _source, "-d"]);
        Assert.Equal(1, proxy.ExitCode);
        Assert.Contains($"cannot connect to the image-cache at {_cacheAddress}:{_port}", proxy.Stderr);
        int pid = StartFixture("restore_memory", "16");
        var dump = Dump("dump", pid, "a1");
        Assert.Equal(1, dump.ExitCode);
        Assert.Contains("no image-proxy answers on", dump.Stderr);
        Assert.Equal("PASS", Verify("restore_memory", pid));
        var restore = Restore("a1");
        Assert.Equal(1, restore.ExitCode);
        Assert.Contains("no image-cache answers on", restore.Stderr);
    }

    [Fact]
    public async Task AConnectionKilledMidStreamLeavesTheProcessRunningAndTheRestoreFailsCleanly()
    {
        StartCache();
        StartProxy("--compress", "none");
        int proxy = int.Parse(File.ReadAllText(Path.Combine(_source, "proxy.pid")));
        int pid = StartFixture("restore_memory", "768");
        var dumping = Task.Run(() => Dump("dump", pid, "k1"));
        // The images are complete and the cache has begun to receive them: cut the connection.
        var clock = Stopwatch.StartNew();
        while (!Log(_destination, "cache.log").Contains("receiving snapshot k1") && clock.Elapsed < Limit) Thread.Sleep(2);
        Thread.Sleep(20);
        Assert.Equal(0, kill(proxy, 9));
        var dump = await dumping;
        Assert.Equal(1, dump.ExitCode);
        Assert.Contains("did not reach the image-cache", dump.Stderr);
        Assert.True(Exists(pid));
        Assert.Equal("PASS", Verify("restore_memory", pid));

        var restore = Restore("k1");
        Assert.Equal(1, restore.ExitCode);
        Assert.True(System.Text.RegularExpressions.Regex.IsMatch(restore.Stderr, "broke while receiving k1|closed the connection before the dump of k1 ended"), restore.Stderr + Log(_destination, "cache.log") + Log(_source, "proxy.log") + string.Join("\n", Log(_source, "k1.log").Split("\n").TakeLast(15)));
        Assert.Contains("Cannot get the images of k1 from the image-cache", restore.Stderr);
        AssertNoImagesLeft();
        Assert.False(Directory.Exists("/dev/shm/crest-remote/k1"));
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);
}
