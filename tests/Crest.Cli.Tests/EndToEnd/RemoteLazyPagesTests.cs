// Post-copy migration without shared storage, as CRIU users run it: on the source `dump --lazy-pages --address
// --port` (the images without the private anonymous pages, which it keeps and serves until the destination has
// them all), the images copied over, on the destination `lazy-pages --page-server --address SRC --port P` and
// `restore --lazy-pages`. The two hosts are network namespaces joined by veth (TwoHosts); the fixtures check
// their own memory at the destination. A source that dies while its pages are still wanted takes the restored
// tree with it: no task may run on with memory it never got. Over TLS, a daemon and a dump that do not trust each
// other never get as far as a restore, and the dump keeps the pages for a daemon that is set up right.
using System.Diagnostics;
using Crest.Cli.Tests.Binary;

namespace Crest.Cli.Tests.EndToEnd;

[Collection("Checkpointed processes")]
public sealed class RemoteLazyPagesTests() : TwoHosts(40000)
{
    // ---- the hosts --------------------------------------------------------------------------------------

    /// <summary>dump --lazy-pages on the source host; returns once the images are written and it serves.</summary>
    private Process StartLazyDump(int pid, string images, params string[] extra) => StartLazyDump(pid, images, splice: true, extra);

    /// <param name="splice">The tasks splice their pages into the dump's pipes (the default), or the dump copies them.</param>
    private Process StartLazyDump(int pid, string images, bool splice, params string[] extra)
    {
        Directory.CreateDirectory(images);
        var dump = CrestProcess.StartWithFds(Source, NetworkNamespacePair.EnterCommand(SourceNamespace),
            ["dump", "-t", $"{pid}", "-D", images, "-W", Source, "--lazy-pages", "--address", SourceAddress, "--port", $"{Port}",
             "--pre-dump-mode", splice ? "splice" : "read", "-o", "dump.log", "-v4", .. extra]);
        var clock = Stopwatch.StartNew();
        while (!Log(Source, "dump.log").Contains("kept for the lazy-pages daemon, waiting on") && clock.Elapsed < Limit)
        {
            if (dump.HasExited) Assert.Fail($"dump exited {dump.ExitCode}: {dump.StandardError.ReadToEnd()}\n{Log(Source, "dump.log")}");
            Thread.Sleep(10);
        }
        Assert.Contains("waiting on", Log(Source, "dump.log"));
        return dump;
    }

    /// <summary>The images directory as it is copied to the destination host (links kept: "parent" of a chain).</summary>
    private string CopyToDestination(string images)
    {
        var cp = External.Run("cp", "-a", images, Destination);
        Assert.True(cp.ExitCode == 0, cp.Stderr);
        return Path.Combine(Destination, Path.GetFileName(images));
    }

    /// <summary>lazy-pages -d in the destination host, fetching from the source's dump; returns its pid once it is ready.</summary>
    private int StartDaemon(string images, params string[] extra)
    {
        var run = RunDaemon(images, extra);
        Assert.True(run.ExitCode == 0, $"lazy-pages: {run.Stderr}\n{Log(Destination, "lazy.log")}");
        return int.Parse(File.ReadAllText(Path.Combine(Destination, "lazy.pid")));
    }

    /// <summary>lazy-pages -d as <see cref="StartDaemon"/>, whatever comes of it.</summary>
    private CrestRun RunDaemon(string images, params string[] extra) =>
        CrestProcess.RunWithFds(Destination, NetworkNamespacePair.EnterCommand(DestinationNamespace), ["lazy-pages", "-D", images, "-W", Destination,
            "--page-server", "--address", SourceAddress, "--port", $"{Port}", "-d", "--pidfile", Path.Combine(Destination, "lazy.pid"), "-o", "lazy.log", "-v4", .. extra]);

    private CrestRun Restore(string images) =>
        CrestProcess.Run(Destination, ["restore", "-D", images, "-W", Destination, "--lazy-pages", "-d", "-o", "restore.log", "-v4"]);

    private static bool WaitGone(int pid)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < Limit && Exists(pid)) Thread.Sleep(10);
        return !Exists(pid);
    }

    private string Explain() =>
        $"dump.log:\n{Tail(Log(Source, "dump.log"))}\nlazy.log:\n{Tail(Log(Destination, "lazy.log"))}\nrestore.log:\n{Tail(Log(Destination, "restore.log"))}";

    private static string Tail(string text) => string.Join("\n", text.Split('\n').TakeLast(20));

    /// <summary>Source to destination: dump, copy, daemon, restore; the dump ends 0 once the daemon has every page.</summary>
    private string Migrate(int pid, string name = "d", params string[] extra) => Migrate(pid, name, splice: true, extra);

    private string Migrate(int pid, string name, bool splice, params string[] extra) => Migrate(pid, name, splice, extra, []);

    /// <param name="dumpExtra">Options of the dump.</param>
    /// <param name="daemonExtra">Options of the lazy-pages daemon.</param>
    private string Migrate(int pid, string name, bool splice, string[] dumpExtra, string[] daemonExtra)
    {
        using var dump = StartLazyDump(pid, Path.Combine(Source, name), splice, dumpExtra);
        Assert.True(WaitGone(pid), $"{pid} still runs after the dump");
        string images = CopyToDestination(Path.Combine(Source, name));
        int daemon = StartDaemon(images, daemonExtra);
        var restore = Restore(images);
        Assert.True(restore.ExitCode == 0, $"restore: {restore.Stderr}\n{Explain()}");
        Assert.True(dump.WaitForExit(Limit), $"the dump did not end after the daemon had every page\n{Explain()}");
        dump.WaitForExit();
        Assert.True(dump.ExitCode == 0, $"dump exited {dump.ExitCode}: {dump.StandardError.ReadToEnd()}\n{Explain()}");
        Assert.True(WaitGone(daemon), $"lazy-pages {daemon} still runs\n{Explain()}");
        Assert.Contains("has all its pages", Log(Destination, "lazy.log"));
        return images;
    }

    private static void AssertDecodes(string dir)
    {
        foreach (string file in Directory.GetFiles(dir, "*.img").Where(f => !Path.GetFileName(f).StartsWith("pages-", StringComparison.Ordinal))
            .Append(Path.Combine(dir, "stats-dump")))
        {
            var crit = External.Run("crit", "decode", "-i", file);
            Assert.True(crit.ExitCode == 0, $"crit decode -i {Path.GetFileName(file)}: {crit.Stderr}");
        }
    }

    /// <summary>A link over which the fixtures' memory takes long enough (64 MiB: 32 s) that most of it is still at the
    /// source when a test has made the restored tasks meet some of it and then kills the source.</summary>
    private const string SlowLink = "16mbit";

    // ---- tests ------------------------------------------------------------------------------------------

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AMemoryChecksumFixtureMigratesWithItsPagesServedByTheSource(bool splice)
    {
        int pid = StartFixture("restore_memory", "64");
        string images = Migrate(pid, "d", splice);
        Assert.Equal("PASS", Verify("restore_memory", pid));

        // The private anonymous pages were never in the images: PE_LAZY entries (2) without data, and what
        // stats-dump counts as written is what pages-*.img hold. The MADV_HUGEPAGE area came lazily too and was
        // collapsed into huge pages once filled (the fixture checks that it has them again).
        var pagemap = External.Run("crit", "decode", "-i", Path.Combine(images, $"pagemap-{pid}.img"));
        Assert.Equal(0, pagemap.ExitCode);
        Assert.Contains("\"flags\": 2}", pagemap.Stdout);
        long pagesBytes = Directory.GetFiles(images, "pages-*.img").Sum(f => new FileInfo(f).Length);
        Assert.True(pagesBytes < 1 << 20, $"{pagesBytes} bytes of pages in the images");
        Assert.Contains("collapsed into huge pages", Log(Destination, "lazy.log"));
        var stats = External.Run("crit", "decode", "-i", Path.Combine(images, "stats-dump"));
        Assert.Contains($"\"pages_written\": {pagesBytes / 4096}", stats.Stdout);
        Assert.Matches("\"pages_lazy\": 1[0-9]{4}", stats.Stdout);
        AssertDecodes(images);
        Assert.Matches(@"lazy pages served: 1\d{4} pages", Log(Source, "dump.log"));
        // Spliced: the task put its pages into the dump's pipes, nothing was copied while it was frozen.
        if (splice) Assert.Matches(@"1\d{4} lazy pages spliced by the task into \d+ pipes", Log(Source, "dump.log"));
        else Assert.DoesNotContain("spliced by the task", Log(Source, "dump.log"));
    }

    [Theory]
    [InlineData("fork")]
    [InlineData("dontneed")]
    [InlineData("remap")]
    public void MemoryTheTaskForksDiscardsOrMovesIsRightAtTheDestination(string mode)
    {
        int pid = StartFixture("lazy_memory", mode, "32");
        Migrate(pid);
        Assert.Equal("PASS", Verify("lazy_memory", pid));
    }

    [Fact]
    public void AProcessTreeWithAPipeMigrates()
    {
        int pid = StartFixture("tree_pipe");
        Migrate(pid);
        Assert.Equal("PASS", Verify("tree_pipe", pid));
        // Every process of the tree had its own pages served (one "has all its pages" line each).
        Assert.True(System.Text.RegularExpressions.Regex.Matches(Log(Destination, "lazy.log"), "has all its pages").Count >= 2, Explain());
    }

    [Fact]
    public void PagesUnchangedSinceAPreDumpComeFromTheLocalChainTheRestFromTheSource()
    {
        int pid = StartFixture("predump_writer", "32", "1");
        Directory.CreateDirectory(Path.Combine(Source, "p1"));
        var pre = CrestProcess.Run(Source, ["pre-dump", "-t", $"{pid}", "-D", Path.Combine(Source, "p1"), "-W", Source, "-o", "pre.log", "-v4"]);
        Assert.True(pre.ExitCode == 0, $"pre-dump: {pre.Stderr}\n{Log(Source, "pre.log")}");
        CopyToDestination(Path.Combine(Source, "p1"));
        // Some pages rewritten since: the writer rewrites pages in every round between its 1 ms sleeps; let it run 50 rounds
        // (however long a loaded machine takes to give it them).
        long rounds = long.Parse(OrphanedFixtures.StatusField(pid, "voluntary_ctxt_switches"));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (long.Parse(OrphanedFixtures.StatusField(pid, "voluntary_ctxt_switches")) < rounds + 50 && clock.Elapsed < Limit) Thread.Sleep(10);
        string images = Migrate(pid, "d", "--prev-images-dir", "../p1", "--track-mem");
        Assert.Equal("PASS", Verify("predump_writer", pid));
        AssertDecodes(images);

        // Most pages were in the parent images at the destination: only the rewritten ones came over the network.
        var lazyLog = Log(Destination, "lazy.log");
        var m = System.Text.RegularExpressions.Regex.Match(lazyLog, @"(\d+) pages copied \((\d+) fetched from the dump's source\)");
        Assert.True(m.Success, lazyLog);
        long copied = long.Parse(m.Groups[1].Value), fetched = long.Parse(m.Groups[2].Value);
        Assert.True(fetched > 0 && fetched < copied / 2, $"{fetched} of {copied} pages fetched\n{Explain()}");
        Assert.Contains("in the parent", Log(Source, "dump.log"));
    }

    [Fact]
    public void ASourceThatDiesWhileServingTakesTheRestoredTreeWithIt()
    {
        int pid = StartFixture("lazy_memory", "plain", "64");
        using var dump = StartLazyDump(pid, Path.Combine(Source, "d"));
        Assert.True(WaitGone(pid), $"{pid} still runs after the dump");
        string images = CopyToDestination(Path.Combine(Source, "d"));
        // A slow link (2 MiB/s: 64 MiB would take half a minute): the task gets the pages it touches while it waits
        // for SIGUSR1; most of its memory is still at the source when the source dies, and the daemon notices at once
        // (not at the next fault).
        SlowTheNetwork(SlowLink);
        int daemon = StartDaemon(images);
        var restore = Restore(images);
        Assert.True(restore.ExitCode == 0, $"restore: {restore.Stderr}\n{Explain()}");
        Assert.True(Exists(pid), "the restored task is not there");
        Assert.Equal(0, kill(dump.Id, 9));
        Assert.True(WaitGone(pid), $"the restored task {pid} runs on without its source\n{Explain()}");
        Assert.True(WaitGone(daemon), $"lazy-pages {daemon} still runs\n{Explain()}");
        string lazyLog = Log(Destination, "lazy.log");
        Assert.Contains("the dump's source broke", lazyLog);
        Assert.Contains("the task is killed", lazyLog);
        Assert.DoesNotContain("PASS", File.ReadAllText(Path.Combine(Source, "lazy_memory.out")));
    }

    [Fact]
    public void TheRestoreDoesNotWaitForTheSource()
    {
        int pid = StartFixture("lazy_memory", "plain", "64");
        using var dump = StartLazyDump(pid, Path.Combine(Source, "d"));
        Assert.True(WaitGone(pid), $"{pid} still runs after the dump");
        string images = CopyToDestination(Path.Combine(Source, "d"));
        int daemon = StartDaemon(images);
        // The source stops answering (stopped, or a stalled network) once the daemon is ready: the restore writes only
        // pages the images hold (the rseq areas), and the daemon's background pass waits until the restore is over.
        Assert.Equal(0, kill(dump.Id, 19));
        var clock = Stopwatch.StartNew();
        var restore = Restore(images);
        Assert.True(restore.ExitCode == 0, $"restore: {restore.Stderr}\n{Explain()}");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"the restore took {clock.Elapsed}");
        Assert.True(Exists(pid), "the restored task is not there");
        Assert.Equal(0, kill(dump.Id, 18));
        Assert.True(dump.WaitForExit(Limit), $"the dump did not end after the daemon had every page\n{Explain()}");
        dump.WaitForExit();
        Assert.True(dump.ExitCode == 0, $"dump exited {dump.ExitCode}: {dump.StandardError.ReadToEnd()}\n{Explain()}");
        Assert.True(WaitGone(daemon), $"lazy-pages {daemon} still runs\n{Explain()}");
        Assert.Equal("PASS", Verify("lazy_memory", pid));
    }

    [Fact]
    public void AGrandchildForkedWhileItsMemoryWasMissingDiesWithTheSource()
    {
        int pid = StartFixture("lazy_memory", "grandchild", "64");
        using var dump = StartLazyDump(pid, Path.Combine(Source, "d"));
        Assert.True(WaitGone(pid), $"{pid} still runs after the dump");
        string images = CopyToDestination(Path.Combine(Source, "d"));
        SlowTheNetwork(SlowLink);
        int daemon = StartDaemon(images);
        var restore = Restore(images);
        Assert.True(restore.ExitCode == 0, $"restore: {restore.Stderr}\n{Explain()}");

        // The restored task forks a child that forks a grandchild; each has the memory still missing, the grandchild
        // got two pages of it (so the daemon knows its userfaultfd, not its pid nor its parent's).
        Assert.Equal(0, kill(pid, 10));
        string output = Path.Combine(Source, "lazy_memory.out");
        var clock = Stopwatch.StartNew();
        System.Text.RegularExpressions.Match said;
        while (!(said = System.Text.RegularExpressions.Regex.Match(File.ReadAllText(output), @"grandchild (\d+) of child (\d+)")).Success && clock.Elapsed < Limit)
            Thread.Sleep(10);
        Assert.True(said.Success, $"no grandchild\n{Explain()}");
        int grandchild = int.Parse(said.Groups[1].Value), child = int.Parse(said.Groups[2].Value);
        Fixtures.AddRange([child, grandchild]);

        Assert.Equal(0, kill(dump.Id, 9));
        foreach (int task in new[] { pid, child, grandchild })
            Assert.True(WaitGone(task), $"{task} runs on without its source\n{Explain()}");
        Assert.True(WaitGone(daemon), $"lazy-pages {daemon} still runs\n{Explain()}");
        string lazyLog = Log(Destination, "lazy.log");
        Assert.Contains($"killed {grandchild}", lazyLog);
        Assert.Contains($"killed {child}", lazyLog);
        Assert.DoesNotContain("cannot be killed", lazyLog);
    }

    [Fact]
    public void PagesServedOverTlsReachTheDestination()
    {
        using var pki = new Crest.Transport.Tests.Tls.TestPki();
        // One certificate for both ends naming the address the dump serves on (as CRIU's tests do): the daemon checks
        // the dump's against the address it connects to, the dump the daemon's against its own --address.
        var (cert, key) = pki.Issue(SourceAddress, "criu");
        string[] tls = ["--tls", "--tls-cacert", pki.CaCert, "--tls-cert", cert, "--tls-key", key];
        int pid = StartFixture("restore_memory", "64");
        Migrate(pid, "d", splice: true, tls, tls);
        Assert.Equal("PASS", Verify("restore_memory", pid));
        Assert.Contains("over TLS", Log(Source, "dump.log"));
        Assert.Contains("over TLS", Log(Destination, "lazy.log"));
    }

    [Fact]
    public void ADaemonAndADumpThatDoNotTrustEachOtherNeverRestoreAndTheSourceKeepsThePages()
    {
        using var pki = new Crest.Transport.Tests.Tls.TestPki();
        using var stranger = new Crest.Transport.Tests.Tls.TestPki("Another CA");
        var (cert, key) = pki.Issue(SourceAddress, "criu");
        var (strangerCert, strangerKey) = stranger.Issue(SourceAddress, "stranger");
        string[] tls = ["--tls", "--tls-cacert", pki.CaCert, "--tls-cert", cert, "--tls-key", key];
        int pid = StartFixture("lazy_memory", "plain", "32");
        // A dump whose own certificate cannot be loaded fails before it touches the tree.
        Directory.CreateDirectory(Path.Combine(Source, "d"));
        var bad = CrestProcess.RunWithFds(Source, NetworkNamespacePair.EnterCommand(SourceNamespace), ["dump", "-t", $"{pid}", "-D", Path.Combine(Source, "d"),
            "-W", Source, "--lazy-pages", "--address", SourceAddress, "--port", $"{Port}", "-o", "bad.log", "--tls", "--tls-cacert", pki.CaCert,
            "--tls-cert", Path.Combine(Source, "missing.pem"), "--tls-key", key]);
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("missing.pem", bad.Stderr);
        AssertRunsUntraced(pid);
        using var dump = StartLazyDump(pid, Path.Combine(Source, "d"), tls);
        Assert.True(WaitGone(pid), $"{pid} still runs after the dump");
        string images = CopyToDestination(Path.Combine(Source, "d"));

        // The daemon trusts another CA: it refuses the dump's certificate, and never says it is ready.
        var refusing = RunDaemon(images, ["--tls", "--tls-cacert", stranger.CaCert, "--tls-cert", cert, "--tls-key", key]);
        Assert.Equal(1, refusing.ExitCode);
        Assert.Contains("is not trusted", refusing.Stderr);
        Assert.False(File.Exists(Path.Combine(Destination, "lazy.pid")));
        // The dump refuses the daemon's certificate (signed by a CA it does not trust): the daemon sees it before it
        // says it is ready too, not at the restored task's first fault.
        var refused = RunDaemon(images, ["--tls", "--tls-cacert", pki.CaCert, "--tls-cert", strangerCert, "--tls-key", strangerKey]);
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("refuses this daemon's certificate", refused.Stderr);
        Assert.False(File.Exists(Path.Combine(Destination, "lazy.pid")));

        // Without a daemon the restore fails and leaves nothing behind.
        var restore = Restore(images);
        Assert.Equal(1, restore.ExitCode);
        Assert.False(Exists(pid), $"{pid} runs after a failed restore");

        // The dump said why, and still holds the pages: a daemon set up right completes the migration.
        Assert.False(dump.HasExited, $"the dump ended ({Explain()})");
        Assert.Matches("the connection from .* is refused: TLS handshake with the client .* is not trusted.*still waiting", Log(Source, "dump.log"));
        int daemon = StartDaemon(images, tls);
        restore = Restore(images);
        Assert.True(restore.ExitCode == 0, $"restore: {restore.Stderr}\n{Explain()}");
        Assert.True(dump.WaitForExit(Limit), $"the dump did not end after the daemon had every page\n{Explain()}");
        dump.WaitForExit();
        Assert.True(dump.ExitCode == 0, $"dump exited {dump.ExitCode}: {dump.StandardError.ReadToEnd()}\n{Explain()}");
        Assert.True(WaitGone(daemon), $"lazy-pages {daemon} still runs\n{Explain()}");
        Assert.Equal("PASS", Verify("lazy_memory", pid));
    }
}
