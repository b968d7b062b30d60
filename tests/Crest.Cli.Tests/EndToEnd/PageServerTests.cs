// `crest page-server` and `crest dump --page-server` run as DRIVERS.md's harness runs CRIU's: the page server
// started with --status-fd (one '\0' byte when it listens), the dump sent to it, the server gone with exit 0
// once the dump's connection closed. Also across two network namespaces joined by veth, with TLS, and with
// the failures a harness expects to be plain non-zero exits that leave the test program running.
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Crest.Cli.Tests.Binary;

namespace Crest.Cli.Tests.EndToEnd;

[Collection("Checkpointed processes")]
public partial class PageServerTests
{
    private static string[] HarnessDump(string images, int pid, string pidFile, params string[] extra) =>
        ["dump", "--no-default-config", "--log-file", "dump.log", "--images-dir", images, "--verbosity=4",
         "--tree", pid.ToString(CultureInfo.InvariantCulture), "--pidfile", pidFile, "--timeout", "10", "--pre-dump-mode", "splice", .. extra];

    private static string[] HarnessRestore(string images, string pidFile) =>
        ["restore", "--no-default-config", "--log-file", "restore.log", "--images-dir", images, "--verbosity=4",
         "--pidfile", pidFile, "--restore-detached"];

    /// <summary>
    /// A TCP port nothing uses now, on any address: the page server listens on the wildcard address (dual-stack),
    /// which a socket on any address and the same port would keep it from (a probe on 127.0.0.1 alone may be given a
    /// port that a connection from another address holds).
    /// </summary>
    private static int FreePort()
    {
        using var probe = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp) { DualMode = true };
        probe.Bind(new IPEndPoint(IPAddress.IPv6Any, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    /// <summary>A page server started as the harness starts one; ready once its status byte arrived.</summary>
    private sealed class PageServer : IDisposable
    {
        private readonly Process _process;
        private readonly Task<string> _stderr;

        private PageServer(Process process, int port)
        {
            _process = process;
            Port = port;
            _stderr = process.StandardError.ReadToEndAsync();
            process.StandardOutput.ReadToEndAsync();
        }

        /// <summary>The port it listens on.</summary>
        public int Port { get; }

        /// <summary>
        /// Starts a page server on a free port. The port is free when chosen, but another program may bind it before
        /// the server does: then (and only then) the server is started again on another port.
        /// </summary>
        /// <param name="enter">A shell line that runs crest elsewhere (NetworkNamespacePair.EnterCommand).</param>
        public static PageServer Start(string dir, string images, string? enter = null, params string[] extra)
        {
            for (int attempt = 1; ; attempt++)
            {
                var server = TryStart(dir, images, FreePort(), enter, extra, out string? failure);
                if (server is not null) return server;
                if (attempt == 3 || !failure!.Contains("Address already in use", StringComparison.Ordinal))
                    Assert.Fail(failure);
            }
        }

        private static PageServer? TryStart(string dir, string images, int port, string? enter, string[] extra, out string? failure)
        {
            string fifo = Path.Combine(dir, $"status-{Guid.NewGuid():N}");
            var mkfifo = External.Run("mkfifo", fifo);
            Assert.True(mkfifo.ExitCode == 0, $"mkfifo {fifo}: {mkfifo.Stderr}");
            string redirections = $"exec 5>'{fifo}'" + (enter is null ? "" : $"; {enter}");
            var process = CrestProcess.StartWithFds(dir, redirections,
                ["page-server", "--no-default-config", "-D", images, "--port", port.ToString(CultureInfo.InvariantCulture),
                 "--status-fd", "5", "-o", "page-server.log", "-v4", .. extra]);
            var server = new PageServer(process, port);
            var ready = Task.Run(() =>
            {
                using var status = File.OpenRead(fifo);
                return status.ReadByte();
            });
            if (!ready.Wait(TimeSpan.FromSeconds(30)))
            {
                failure = $"no status byte from the page server on port {port} within 30 s: {server.Stderr()}";
                server.Dispose();
                return null;
            }
            if (ready.Result == 0)
            {
                failure = null;
                return server;
            }
            // No status byte: the server ended before it listened. Its stderr says why once it has exited.
            bool exited = process.WaitForExit(TimeSpan.FromSeconds(30));
            failure = $"status byte {ready.Result} from the page server on port {port} ({(exited ? $"exit {process.ExitCode}" : "still running")}): " +
                $"{server.Stderr()}\n{Log(images, "page-server.log")}";
            server.Dispose();
            return null;
        }

        public string Stderr() => _process.HasExited ? _stderr.Result : "(running)";

        /// <summary>SIGKILL, as a crash or an OOM kill ends it.</summary>
        public void Kill() => _process.Kill();

        public int WaitForExit()
        {
            Assert.True(_process.WaitForExit(TimeSpan.FromSeconds(30)), "the page server did not exit after the dump");
            _process.WaitForExit();
            return _process.ExitCode;
        }

        public void Dispose()
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            _process.Dispose();
        }
    }

    private static void AssertDecodes(string dir)
    {
        foreach (string file in Directory.GetFiles(dir, "*.img").Where(f => !Path.GetFileName(f).StartsWith("pages-", StringComparison.Ordinal)))
        {
            var crit = External.Run("crit", "decode", "-i", file);
            Assert.True(crit.ExitCode == 0, $"crit decode -i {Path.GetFileName(file)}: {crit.Stderr}");
        }
    }

    [Fact]
    public void HarnessDumpThroughPageServerAndRestore()
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("images");
        using var target = HarnessTarget.Start(dir.Path);
        using var server = PageServer.Start(dir.Path, images);
        int port = server.Port;

        var dump = CrestProcess.Run(dir.Path, HarnessDump(images, target.Pid, Path.Combine(dir.Path, "dump.pid"),
            "--page-server", "--address", "127.0.0.1", "--port", port.ToString(CultureInfo.InvariantCulture)));
        Assert.True(dump.ExitCode == 0, $"dump exited {dump.ExitCode}: {dump.Stderr}\n{Log(images, "dump.log")}");
        Assert.True(server.WaitForExit() == 0, $"page server: {server.Stderr()}\n{Log(images, "page-server.log")}");
        Assert.True(target.WaitGone(), $"process {target.Pid} still exists after the dump");

        // The harness's check: the pages in the directory are what stats-dump says was written.
        Assert.Single(Directory.GetFiles(images, "pages-*.img"));
        long pagesBytes = Directory.GetFiles(images, "pages-*.img").Sum(f => new FileInfo(f).Length);
        var stats = External.Run("crit", "decode", "-i", Path.Combine(images, "stats-dump"));
        Assert.Equal(0, stats.ExitCode);
        Assert.Contains($"\"pages_written\": {pagesBytes / 4096}", stats.Stdout);
        AssertDecodes(images);

        string pidFile = Path.Combine(dir.Path, "restore.pid");
        var restore = CrestProcess.Run(dir.Path, HarnessRestore(images, pidFile));
        Assert.True(restore.ExitCode == 0, $"restore exited {restore.ExitCode}: {restore.Stderr}\n{Log(images, "restore.log")}");
        Assert.Equal("PASS", target.Verify());
    }

    [Fact]
    public void PreDumpIterationsShareTheirDirectoryWithThePageServer()
    {
        // zdtm's layout: iteration N's page server and dump both use images/N; the dump links ../N-1 as parent.
        using var dir = new TempDirectory();
        using var target = HarnessTarget.Start(dir.Path);
        for (int round = 1; round <= 3; round++)
        {
            string images = dir.Sub($"images/{round}");
            using var server = PageServer.Start(dir.Path, images);
            int port = server.Port;
            string[] args = round < 3
                ? ["pre-dump", "--no-default-config", "-o", "dump.log", "-D", images, "-v4", "-t", target.Pid.ToString(CultureInfo.InvariantCulture)]
                : HarnessDump(images, target.Pid, Path.Combine(dir.Path, "dump.pid"));
            if (round > 1) args = [.. args, "--prev-images-dir", $"../{round - 1}", "--track-mem"];
            var dump = CrestProcess.Run(dir.Path, [.. args, "--page-server", "--address", "127.0.0.1", "--port", port.ToString(CultureInfo.InvariantCulture)]);
            Assert.True(dump.ExitCode == 0, $"round {round} exited {dump.ExitCode}: {dump.Stderr}\n{Log(images, "dump.log")}");
            Assert.True(server.WaitForExit() == 0, $"round {round} page server: {server.Stderr()}\n{Log(images, "page-server.log")}");
            AssertDecodes(images);
            if (round > 1) Assert.Contains("in the parent", Log(images, "page-server.log"));
        }
        Assert.True(target.WaitGone());
        var restore = CrestProcess.Run(dir.Path, HarnessRestore(Path.Combine(dir.Path, "images", "3"), Path.Combine(dir.Path, "restore.pid")));
        Assert.True(restore.ExitCode == 0, $"restore exited {restore.ExitCode}: {restore.Stderr}");
        Assert.Equal("PASS", target.Verify());
    }

    [Fact]
    public void AbsentPageServerFailsTheDumpAndTheProgramRunsOn()
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("images");
        using var target = HarnessTarget.Start(dir.Path);
        // A port of ours, bound but never listening: connections to it are refused (nobody else can listen there meanwhile).
        using var absent = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        absent.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var dump = CrestProcess.Run(dir.Path, HarnessDump(images, target.Pid, Path.Combine(dir.Path, "dump.pid"),
            "--page-server", "--address", "127.0.0.1", "--port", ((IPEndPoint)absent.LocalEndPoint!).Port.ToString(CultureInfo.InvariantCulture)));
        Assert.True(dump.ExitCode == 1, $"dump exited {dump.ExitCode}: {dump.Stderr}");
        Assert.Contains("Can't connect to the page server 127.0.0.1", dump.Stderr);
        Assert.True(target.IsRunning);
        Assert.False(File.Exists(Path.Combine(images, "inventory.img")));
        Assert.Equal("PASS", target.Verify());
    }

    [Fact]
    public async Task APageServerKilledMidTransferFailsTheDumpAndTheProgramRunsOn()
    {
        using var dir = new TempDirectory();
        string local = dir.Sub("local"), remote = dir.Sub("remote");
        var fixtures = new List<int>();
        try
        {
            int pid = OrphanedFixtures.Start(dir.Path, fixtures, FixtureLimit, "restore_memory", "512");
            using var server = PageServer.Start(dir.Path, remote);
            int port = server.Port;
            var dumping = Task.Run(() => CrestProcess.Run(dir.Path, HarnessDump(local, pid, Path.Combine(dir.Path, "dump.pid"),
                "--page-server", "--address", "127.0.0.1", "--port", port.ToString(CultureInfo.InvariantCulture))));
            // Some pages have arrived, most are still to come: the server dies.
            var clock = Stopwatch.StartNew();
            while (!dumping.IsCompleted && clock.Elapsed < FixtureLimit && ReceivedBytes(remote) < 16 << 20) Thread.Sleep(2);
            Assert.False(dumping.IsCompleted, "the dump ended before the page server could be killed");
            server.Kill();
            var dump = await dumping;
            Assert.True(dump.ExitCode == 1, $"dump exited {dump.ExitCode}: {dump.Stderr}\n{Log(local, "dump.log")}");
            Assert.Contains($"page server 127.0.0.1:{port}", dump.Stderr);
            OrphanedFixtures.AssertRunsUntraced(pid);
            Assert.Equal("PASS", OrphanedFixtures.Verify(dir.Path, FixtureLimit, "restore_memory", pid));
        }
        finally
        {
            foreach (int pid in fixtures) kill(pid, HarnessTarget.SIGKILL);
        }
    }

    [Fact]
    public async Task ANetworkThatGoesSilentMidTransferFailsTheDumpAndTheProgramRunsOn()
    {
        using var dir = new TempDirectory();
        string local = dir.Sub("local"), remote = dir.Sub("remote");
        using var net = new NetworkNamespacePair();
        var fixtures = new List<int>();
        try
        {
            int pid = OrphanedFixtures.Start(dir.Path, fixtures, FixtureLimit, "restore_memory", "1024");
            using var server = PageServer.Start(dir.Path, remote, NetworkNamespacePair.EnterCommand(net.DestinationNamespace), "--address", net.DestinationAddress);
            int port = server.Port;
            var dumping = Task.Run(() => NetworkNamespacePair.RunCrest(net.SourceNamespace, dir.Path, HarnessDump(local, pid, Path.Combine(dir.Path, "dump.pid"),
                "--page-server", "--address", net.DestinationAddress, "--port", port.ToString(CultureInfo.InvariantCulture))));
            var clock = Stopwatch.StartNew();
            while (!dumping.IsCompleted && clock.Elapsed < FixtureLimit && ReceivedBytes(remote) < 16 << 20) Thread.Sleep(2);
            Assert.False(dumping.IsCompleted, "the dump ended before the network could go silent");
            net.Silence();
            // No reset arrives: both ends give up on their own (TcpPeerTimeout), the tree frozen meanwhile is released.
            var first = await Task.WhenAny(dumping, Task.Delay(TimeSpan.FromSeconds(90)));
            Assert.True(first == dumping, "the dump still waits 90 s after the network went silent");
            var dump = await dumping;
            Assert.True(dump.ExitCode == 1, $"dump exited {dump.ExitCode}: {dump.Stderr}\n{Log(local, "dump.log")}");
            Assert.Contains($"page server {net.DestinationAddress}:{port}", dump.Stderr);
            OrphanedFixtures.AssertRunsUntraced(pid);
            Assert.Equal("PASS", OrphanedFixtures.Verify(dir.Path, FixtureLimit, "restore_memory", pid));
            Assert.NotEqual(0, server.WaitForExit());
        }
        finally
        {
            foreach (int pid in fixtures) kill(pid, HarnessTarget.SIGKILL);
        }
    }

    [Fact]
    public void APageServerWhoseDiskIsFullFailsTheDumpAndTheProgramRunsOn()
    {
        using var dir = new TempDirectory();
        string local = dir.Sub("local"), remote = dir.Sub("remote");
        // The destination's disk: 4 MiB for 64 MiB of pages.
        var mount = External.Run("mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "crest-test-full", remote);
        Assert.True(mount.ExitCode == 0, $"mount: {mount.Stderr}");
        var fixtures = new List<int>();
        try
        {
            int pid = OrphanedFixtures.Start(dir.Path, fixtures, FixtureLimit, "restore_memory", "64");
            string serverLog = Path.Combine(dir.Path, "page-server.log");
            using var server = PageServer.Start(dir.Path, remote, null, "-o", serverLog);
            int port = server.Port;
            var dump = CrestProcess.Run(dir.Path, HarnessDump(local, pid, Path.Combine(dir.Path, "dump.pid"),
                "--page-server", "--address", "127.0.0.1", "--port", port.ToString(CultureInfo.InvariantCulture)));
            Assert.True(dump.ExitCode == 1, $"dump exited {dump.ExitCode}: {dump.Stderr}\n{Log(local, "dump.log")}");
            Assert.Contains($"page server 127.0.0.1:{port}", dump.Stderr);
            // The server says what went wrong, and exits non-zero.
            Assert.NotEqual(0, server.WaitForExit());
            string said = server.Stderr();
            Assert.Contains("cannot write the pages of pagemap-", said);
            Assert.Contains("No space left on device", said);
            Assert.DoesNotContain("connection", said);
            OrphanedFixtures.AssertRunsUntraced(pid);
            Assert.Equal("PASS", OrphanedFixtures.Verify(dir.Path, FixtureLimit, "restore_memory", pid));
        }
        finally
        {
            foreach (int pid in fixtures) kill(pid, HarnessTarget.SIGKILL);
            External.Run("umount", remote);
        }
    }

    private static readonly TimeSpan FixtureLimit = TimeSpan.FromSeconds(30);

    /// <summary>What the page server has written so far (under the .part names it uses until a pagemap is complete).</summary>
    private static long ReceivedBytes(string images)
    {
        long bytes = 0;
        foreach (var file in new DirectoryInfo(images).EnumerateFiles())
        {
            try
            {
                bytes += file.Length;
            }
            catch (FileNotFoundException)
            {
                // renamed meanwhile
            }
        }
        return bytes;
    }

    [System.Runtime.InteropServices.LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);

    [Fact]
    public void DaemonPageServerWritesItsPidAndServesOneDump()
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("images");
        int port = FreePort();
        string pidFile = Path.Combine(dir.Path, "ps.pid");
        var start = CrestProcess.Run(dir.Path, "page-server", "-D", images, "--port", port.ToString(CultureInfo.InvariantCulture), "-d", "--pidfile", pidFile, "-o", "ps.log", "-v4");
        Assert.True(start.ExitCode == 0, start.Stderr);
        // -d returns once the daemon listens, its pid written.
        Assert.True(File.Exists(pidFile), "no pidfile when page-server -d returned");
        int daemon = int.Parse(File.ReadAllText(pidFile), CultureInfo.InvariantCulture);
        Assert.True(Directory.Exists($"/proc/{daemon}"));

        using var target = HarnessTarget.Start(dir.Path);
        var dump = CrestProcess.Run(dir.Path, HarnessDump(images, target.Pid, Path.Combine(dir.Path, "dump.pid"),
            "--page-server", "--address", "127.0.0.1", "--port", port.ToString(CultureInfo.InvariantCulture)));
        Assert.True(dump.ExitCode == 0, $"dump exited {dump.ExitCode}: {dump.Stderr}\n{Log(images, "ps.log")}");
        Assert.True(SpinWait.SpinUntil(() => !Directory.Exists($"/proc/{daemon}") || File.ReadAllText($"/proc/{daemon}/stat").Contains(") Z"), TimeSpan.FromSeconds(20)),
            "the daemon did not exit after the dump");
        var restore = CrestProcess.Run(dir.Path, HarnessRestore(images, Path.Combine(dir.Path, "restore.pid")));
        Assert.True(restore.ExitCode == 0, $"restore exited {restore.ExitCode}: {restore.Stderr}");
        Assert.Equal("PASS", target.Verify());
    }

    [Fact]
    public void ADaemonThatCannotStartSaysWhyAndLeavesNothingRunning()
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("images");
        using var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        taken.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        taken.Listen(1);
        string port = ((IPEndPoint)taken.LocalEndPoint!).Port.ToString(CultureInfo.InvariantCulture);
        string pidFile = Path.Combine(dir.Path, "ps.pid");

        var busy = CrestProcess.Run(dir.Path, "page-server", "-D", images, "--address", "127.0.0.1", "--port", port, "-d", "--pidfile", pidFile, "-o", "ps.log");
        Assert.Equal(1, busy.ExitCode);
        Assert.Contains($"Error: Can't listen on 127.0.0.1:{port}", busy.Stderr);
        Assert.False(File.Exists(pidFile));

        // The pidfile is created O_EXCL: one that exists stops the daemon before it serves.
        File.WriteAllText(pidFile, "1");
        var exists = CrestProcess.Run(dir.Path, "page-server", "-D", images, "--port", FreePort().ToString(CultureInfo.InvariantCulture), "-d", "--pidfile", pidFile, "-o", "ps.log");
        Assert.Equal(1, exists.ExitCode);
        Assert.Contains(pidFile, exists.Stderr);
        Assert.Equal("1", File.ReadAllText(pidFile));
    }

    [Fact]
    public void PageServerInAnotherNetworkNamespaceOverTls()
    {
        using var dir = new TempDirectory();
        string local = dir.Sub("local"), remote = dir.Sub("remote");
        using var net = new NetworkNamespacePair();
        using var pki = new Crest.Transport.Tests.Tls.TestPki();
        // One certificate for both ends, naming the server's address (as CRIU's tests do).
        var (cert, key) = pki.Issue(net.DestinationAddress, "criu");
        string[] tls = ["--tls", "--tls-cacert", pki.CaCert, "--tls-cert", cert, "--tls-key", key];
        using var target = HarnessTarget.Start(dir.Path);
        using var server = PageServer.Start(dir.Path, remote, NetworkNamespacePair.EnterCommand(net.DestinationNamespace), ["--address", net.DestinationAddress, .. tls]);
        int port = server.Port;

        var dump = NetworkNamespacePair.RunCrest(net.SourceNamespace, dir.Path, HarnessDump(local, target.Pid, Path.Combine(dir.Path, "dump.pid"),
            ["--page-server", "--address", net.DestinationAddress, "--port", port.ToString(CultureInfo.InvariantCulture), .. tls]));
        Assert.True(dump.ExitCode == 0, $"dump exited {dump.ExitCode}: {dump.Stderr}\n{Log(local, "dump.log")}");
        Assert.True(server.WaitForExit() == 0, $"page server: {server.Stderr()}\n{Log(remote, "page-server.log")}");
        Assert.Contains("over TLS", Log(local, "dump.log"));
        Assert.Empty(Directory.GetFiles(local, "pages-*.img"));
        AssertDecodes(remote);

        foreach (string file in Directory.GetFiles(remote, "*.img")) File.Copy(file, Path.Combine(local, Path.GetFileName(file)));
        var restore = CrestProcess.Run(dir.Path, HarnessRestore(local, Path.Combine(dir.Path, "restore.pid")));
        Assert.True(restore.ExitCode == 0, $"restore exited {restore.ExitCode}: {restore.Stderr}\n{Log(local, "restore.log")}");
        Assert.Equal("PASS", target.Verify());
    }

    [Fact]
    public void TlsCertificateNamingAnotherAddressFailsTheDumpUnlessNoCnVerify()
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("images");
        using var pki = new Crest.Transport.Tests.Tls.TestPki();
        var (cert, key) = pki.Issue("10.231.255.9", "criu");
        string[] tls = ["--tls", "--tls-cacert", pki.CaCert, "--tls-cert", cert, "--tls-key", key];
        using var target = HarnessTarget.Start(dir.Path);

        using (var server = PageServer.Start(dir.Path, images, null, tls))
        {
            var dump = CrestProcess.Run(dir.Path, HarnessDump(images, target.Pid, Path.Combine(dir.Path, "dump.pid"),
                ["--page-server", "--address", "127.0.0.1", "--port", server.Port.ToString(CultureInfo.InvariantCulture), .. tls]));
            string why = $"dump exited {dump.ExitCode}: {dump.Stderr}\n{Log(images, "dump.log")}";
            Assert.True(dump.ExitCode == 1, why);
            Assert.True(dump.Stderr.Contains("does not name 127.0.0.1", StringComparison.Ordinal), why);
            int serverExit = server.WaitForExit();
            Assert.True(serverExit != 0, $"the page server exited {serverExit}: {server.Stderr()}\n{Log(images, "page-server.log")}");
            Assert.Empty(Directory.GetFiles(images, "pagemap-*.img"));
            Assert.True(target.IsRunning, $"process {target.Pid} does not run after the refused dump: {target.Output}");
        }

        using (var server = PageServer.Start(dir.Path, images, null, [.. tls, "--tls-no-cn-verify"]))
        {
            var dump = CrestProcess.Run(dir.Path, HarnessDump(images, target.Pid, Path.Combine(dir.Path, "dump.pid"),
                ["--page-server", "--address", "127.0.0.1", "--port", server.Port.ToString(CultureInfo.InvariantCulture), .. tls, "--tls-no-cn-verify"]));
            Assert.True(dump.ExitCode == 0, $"dump exited {dump.ExitCode}: {dump.Stderr}\n{Log(images, "dump.log")}");
            int serverExit = server.WaitForExit();
            Assert.True(serverExit == 0, $"the page server exited {serverExit}: {server.Stderr()}\n{Log(images, "page-server.log")}");
        }
        var restore = CrestProcess.Run(dir.Path, HarnessRestore(images, Path.Combine(dir.Path, "restore.pid")));
        Assert.True(restore.ExitCode == 0, $"restore exited {restore.ExitCode}: {restore.Stderr}\n{Log(images, "restore.log")}");
        Assert.Equal("PASS", target.Verify());
    }

    private static string Log(string images, string name)
    {
        string path = Path.Combine(images, name);
        return File.Exists(path) ? File.ReadAllText(path) : $"(no {name})";
    }
}
