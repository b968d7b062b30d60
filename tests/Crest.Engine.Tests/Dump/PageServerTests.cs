using System.Net;
using System.Net.Sockets;
using Crest.Engine.Dump;
using Crest.Images.Pages;
using Crest.Kernel.Tests.Fixtures;
using Crest.Transport.PageServer;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Dump;

// dump --page-server (issue 5): the pages of a memory-checksum fixture go over TCP to a page server that writes
// pagemap/pages images in CRIU's format; the other images are written locally. Restoring from the two combined
// brings the fixture back with every page; pre-dump chains resolve their parents on the server's side; a broken
// connection fails the dump with the fixture untouched, and the server keeps nothing of it.
[Collection("Children of the test process")]
public sealed class PageServerTests : IDisposable
{
    private readonly ScratchDirectory _root = new();

    public void Dispose()
    {
        DumpEngine.StageHook = null;
        _root.Dispose();
    }

    private string Dir(string name) => _root.Sub(name);

    /// <summary>A page server on loopback serving one session into <paramref name="dir"/> on a thread of its own.</summary>
    private sealed class Server : IDisposable
    {
        private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        private readonly Thread _thread;
        public PageServerSummary? Summary;
        public Exception? Failure;

        public Server(string dir, Func<Stream, Stream>? wrap = null)
        {
            _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            _listener.Listen(1);
            Port = ((IPEndPoint)_listener.LocalEndPoint!).Port;
            _thread = new Thread(() =>
            {
                try
                {
                    using var socket = _listener.Accept();
                    using var stream = new NetworkStream(socket, ownsSocket: false);
                    Summary = new PageServerReceiver(dir).Serve(wrap is null ? stream : wrap(stream));
                }
                catch (Exception e) { Failure = e; }
            }) { IsBackground = true };
            _thread.Start();
        }

        public int Port { get; }

        public PageServerClient Connect() => PageServerClient.Connect("127.0.0.1", Port, null, TimeSpan.FromSeconds(10));

        public void Join() => Assert.True(_thread.Join(TimeSpan.FromSeconds(30)), "the page server did not end");

        public void Dispose()
        {
            _listener.Dispose();
            _thread.Join(TimeSpan.FromSeconds(30));
        }
    }

    /// <summary>The server's pagemap and pages images copied next to the dump's other images.</summary>
    private static void Combine(string serverDir, string dumpDir)
    {
        foreach (string file in Directory.GetFiles(serverDir, "*.img"))
            File.Copy(file, Path.Combine(dumpDir, Path.GetFileName(file)), overwrite: true);
    }

    [Fact]
    public void PagesGoToThePageServerAndTheCombinedImagesRestore()
    {
        using var fixture = FixtureProcess.Start("predump_writer", "32", "4");
        string local = Dir("local"), remote = Dir("remote");
        using var server = new Server(remote);
        DumpStatistics stats;
        using (var client = server.Connect())
            stats = DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = local, PageDestination = client });
        server.Join();
        Assert.Null(server.Failure);
        fixture.Child.WaitForExit(TimeSpan.FromSeconds(10));

        Assert.Empty(Directory.GetFiles(local, "pagemap-*.img"));
        Assert.Empty(Directory.GetFiles(local, "pages-*.img"));
        Assert.True(File.Exists(Path.Combine(remote, $"pagemap-{fixture.Pid}.img")));
        Assert.True(File.Exists(Path.Combine(remote, $"pages-{PageServerReceiver.FirstPagesId}.img")));
        Assert.Empty(Directory.GetFiles(remote, ".*"));
        Assert.Equal((long)stats.PagesWritten, server.Summary!.PagesReceived);
        Assert.Equal((long)stats.PagesWritten * 4096, new FileInfo(Path.Combine(remote, $"pages-{PageServerReceiver.FirstPagesId}.img")).Length);
        Crit.DecodeAll(remote);

        Combine(remote, local);
        Crit.DecodeAll(local);
        using var restored = RestoreDetached(local);
        AssertPass(Verify(restored, fixture));
    }

    [Fact]
    public void PreDumpChainOfThreeThroughThePageServerRestores()
    {
        using var fixture = FixtureProcess.Start("predump_writer", "32", "4");
        DumpStatistics last = null!;
        for (int round = 1; round <= 3; round++)
        {
            string local = Dir($"d{round}"), remote = Dir($"s{round}");
            // The page server's directory links its parent, as the dump's does.
            if (round > 1) File.CreateSymbolicLink(Path.Combine(remote, "parent"), $"../s{round - 1}");
            using var server = new Server(remote);
            using (var client = server.Connect())
            {
                try
                {
                    last = DumpEngine.Dump(new DumpOptions
                    {
                        Pid = fixture.Pid, ImagesDir = local, PageDestination = client, PreDump = round < 3, TrackMemory = true,
                        ParentLink = round > 1 ? $"../d{round - 1}" : null,
                    });
                }
                catch (DumpException e)
                {
                    server.Join();
                    throw new InvalidOperationException($"round {round}: {e.Message}; the page server: {server.Failure?.Message}", e);
                }
            }
            server.Join();
            Assert.Null(server.Failure);
            if (round > 1) Assert.True(server.Summary!.PagesInParent > 0, $"round {round}: no page left in the parent");
            Crit.DecodeAll(remote);
            Thread.Sleep(100);
        }
        fixture.Child.WaitForExit(TimeSpan.FromSeconds(10));
        Assert.True(last.PagesSkippedParent > 0);
        using (var pagemap = Crit.Decode(Path.Combine(_root.Path, "s3", $"pagemap-{fixture.Pid}.img")))
            Assert.Contains(pagemap.RootElement.GetProperty("entries").EnumerateArray(), e => e.TryGetProperty("flags", out var f) && f.GetInt32() == (int)PagemapFlags.Parent);
        for (int round = 1; round <= 3; round++) Combine(Path.Combine(_root.Path, $"s{round}"), Path.Combine(_root.Path, $"d{round}"));
        using var restored = RestoreDetached(Path.Combine(_root.Path, "d3"));
        AssertPass(Verify(restored, fixture));
    }

    [Fact]
    public void PageServerWithoutTheParentGetsEveryPage()
    {
        using var fixture = FixtureProcess.Start("predump_writer", "16", "4");
        string s1 = Dir("s1"), s2 = Dir("s2");
        using (var server = new Server(s1))
        using (var client = server.Connect())
            DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = Dir("d1"), PageDestination = client, PreDump = true });
        // s2 has no parent link: the server says it holds no parent, so the second round sends everything.
        using var server2 = new Server(s2);
        DumpStatistics second;
        using (var client = server2.Connect())
            second = DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = Dir("d2"), PageDestination = client, PreDump = true, ParentLink = "../d1" });
        server2.Join();
        Assert.Null(server2.Failure);
        Assert.Equal(0UL, second.PagesSkippedParent);
        AssertPass(Verify(fixture.Child, fixture));
    }

    /// <summary>Passes <paramref name="limit"/> bytes of the dump's stream on, then resets the connection.</summary>
    private sealed class CutAfter(Stream inner, long limit, Socket socket) : Stream
    {
        private long _passed;
        public override int Read(byte[] buffer, int offset, int count)
        {
            if (_passed >= limit)
            {
                socket.LingerState = new LingerOption(true, 0);
                socket.Close();
                throw new IOException("connection cut by the test");
            }
            int n = inner.Read(buffer, offset, (int)Math.Min(count, limit - _passed));
            _passed += n;
            return n;
        }
        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
        public override void Flush() => inner.Flush();
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

    [Fact]
    public void ConnectionCutMidStreamFailsTheDumpAndLeavesTheTaskRunning()
    {
        using var fixture = FixtureProcess.Start("predump_writer", "32", "4");
        string local = Dir("local"), remote = Dir("remote");
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        Exception? serverFailure = null;
        var serverThread = new Thread(() =>
        {
            try
            {
                var socket = listener.Accept();
                new PageServerReceiver(remote).Serve(new CutAfter(new NetworkStream(socket, ownsSocket: false), 4 << 20, socket));
            }
            catch (Exception e) { serverFailure = e; }
        });
        serverThread.Start();
        using (var client = PageServerClient.Connect("127.0.0.1", ((IPEndPoint)listener.LocalEndPoint!).Port, null, TimeSpan.FromSeconds(10)))
        {
            var e = Assert.Throws<DumpException>(() => DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = local, PageDestination = client }));
            Assert.Contains("page server 127.0.0.1", e.Message);
        }
        Assert.True(serverThread.Join(TimeSpan.FromSeconds(30)));
        Assert.IsType<PageServerException>(serverFailure);
        // Nothing complete-looking on either side, and the task runs on as it was.
        Assert.Empty(Directory.GetFileSystemEntries(remote));
        Assert.False(File.Exists(Path.Combine(local, "inventory.img")));
        Assert.DoesNotContain(State(fixture.Pid), "tTZX");
        AssertPass(Verify(fixture.Child, fixture));
    }

    [Fact]
    public void AbsentPageServerIsAClearError()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        int port = ((IPEndPoint)probe.LocalEndPoint!).Port; // bound, never listening: connections are refused
        var e = Assert.Throws<PageServerException>(() => PageServerClient.Connect("127.0.0.1", port, null, TimeSpan.FromSeconds(5)));
        Assert.Contains($"Can't connect to the page server 127.0.0.1:{port}", e.Message);
    }

    private static string State(int pid) => File.ReadAllText($"/proc/{pid}/stat").Split(") ")[1][..1];
}
