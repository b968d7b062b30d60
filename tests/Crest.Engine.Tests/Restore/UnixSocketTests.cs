using System.Globalization;
using System.Text;
using Crest.Engine.Dump;
using Crest.Engine.Files;
using Crest.Engine.Restore;
using Crest.Engine.Tests.Dump;
using Crest.Images;
using Crest.Images.Protos;
using Crest.Kernel;
using Crest.Kernel.Files;
using Crest.Kernel.Processes;
using Crest.Kernel.Sockets;
using Crest.Kernel.Tests.Fixtures;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Restore;

/// <summary>
/// Unix sockets across a checkpoint: a socket connected to a logger outside the tree (--ext-unix-sk) is connected to
/// the logger again at restore, dgram and stream; without the option the dump names the fd, the inode and the option;
/// socketpairs, a plain socket and a listener inside the tree come back working.
/// </summary>
[Collection("Children of the test process")]
public class UnixSocketTests
{
    private const int SolSocket = 1, SoPasscred = 16, SoRcvtimeo = 20, SoSndtimeo = 21;

    private static readonly UnixSocketPolicy AllowAll = new(true, new HashSet<uint>());

    private static uint Inode(int pid, int fd)
    {
        string link = new FileInfo($"/proc/{pid}/fd/{fd}").LinkTarget!;
        Assert.True(UnixSockets.IsSocket(link, out uint inode), link);
        return inode;
    }

    /// <summary>A socket of the test process (outside any dumped tree) whose reads give up after 10 s.</summary>
    private static FileDescriptor Logger(SocketKind kind, string path)
    {
        var socket = KernelSocket.Create(SocketFamily.Unix, kind);
        KernelSocket.Bind(socket, SockAddr.Unix(path));
        GiveUpReadingAfter10Seconds(socket);
        if (kind != SocketKind.Datagram) KernelSocket.Listen(socket, 4);
        return socket;
    }

    /// <summary>
    /// A logger socket of the test process (<see cref="Logger"/>) at log.sock in a scratch directory, the unix_sockets
    /// fixture connected to it ("dgram" or "stream"), and an empty images directory.
    /// </summary>
    private sealed class LoggedFixture : IDisposable
    {
        private readonly ScratchDirectory _work = new(), _images = new();
        private readonly FileDescriptor _logger;
        private readonly FixtureProcess _fixture;

        public LoggedFixture(SocketKind kind)
        {
            SocketPath = Path.Combine(_work.Path, "log.sock");
            try
            {
                _logger = Logger(kind, SocketPath);
                _fixture = FixtureProcess.Start("unix_sockets", kind == SocketKind.Datagram ? "dgram" : "stream", SocketPath);
            }
            catch
            {
                _logger?.Dispose();
                _images.Dispose();
                _work.Dispose();
                throw;
            }
        }

        public string SocketPath { get; }

        public void Deconstruct(out FixtureProcess fixture, out FileDescriptor logger, out string imagesDir, out string socketPath) =>
            (fixture, logger, imagesDir, socketPath) = (_fixture, _logger, _images.Path, SocketPath);

        public void Dispose()
        {
            _fixture.Dispose();
            _logger.Dispose();
            _images.Dispose();
            _work.Dispose();
        }
    }

    private static string Receive(FileDescriptor socket)
    {
        var buffer = new byte[256];
        int n = socket.Read(buffer);
        return Encoding.ASCII.GetString(buffer, 0, n);
    }

    private static FileDescriptor Accept(FileDescriptor listener)
    {
        var connection = KernelSocket.Accept(listener);
        GiveUpReadingAfter10Seconds(connection);
        return connection;
    }

    /// <summary>SO_RCVTIMEO of 10 s (a struct timeval): a fixture that never writes fails the test instead of hanging it.</summary>
    private static void GiveUpReadingAfter10Seconds(FileDescriptor socket)
    {
        var timeout = new byte[16];
        BitConverter.TryWriteBytes(timeout, 10L);
        KernelSocket.SetOption(socket, SolSocket, SoRcvtimeo, timeout);
    }

    [Fact]
    public void ADgramSocketToALoggerOutsideTheTreeIsConnectedAgain()
    {
        using var logged = new LoggedFixture(SocketKind.Datagram);
        var (fixture, logger, dir, path) = logged;
        Assert.Equal("before dump", Receive(logger));
        uint inode = Inode(fixture.Pid, 5);

        // Without --ext-unix-sk, or with another inode, the dump refuses and names the fd, the inode and the option.
        var e = Assert.Throws<DumpException>(() => DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = dir }));
        // (SO_PASSCRED made the kernel autobind the socket to an abstract name, which the message shows.)
        Assert.StartsWith($"task {fixture.Pid} fd 5: unix dgram socket {inode} @", e.Message);
        Assert.Contains("is connected to unix dgram socket", e.Message);
        Assert.Contains($"{path} outside the dumped tree", e.Message);
        Assert.Contains($"--ext-unix-sk (or --ext-unix-sk={inode})", e.Message);
        Assert.Throws<DumpException>(() => DumpEngine.Dump(new DumpOptions
        {
            Pid = fixture.Pid, ImagesDir = dir, ExternalUnixSockets = new(false, new HashSet<uint> { inode + 1000 }),
        }));
        Assert.Empty(Directory.GetFiles(dir));

        // Allowed by its inode.
        DumpAndKill(fixture, new DumpOptions { Pid = fixture.Pid, ImagesDir = dir, ExternalUnixSockets = new(false, new HashSet<uint> { inode }) });
        Crit.DecodeAll(dir);
        var sockets = FileEntries(dir).Where(f => f.Type == FdTypes.Unixsk).Select(f => f.Usk).ToList();
        var mine = sockets.Single(s => s.Ino == inode);
        var peer = sockets.Single(s => s.Ino == mine.Peer);
        Assert.Equal(UnixSockets.UflagExtern, peer.Uflags);
        Assert.Equal(path, Encoding.UTF8.GetString(peer.Name.Span).TrimEnd('\0'));
        Assert.True(mine.Opts.SoPasscred);
        using (var decoded = Crit.Decode(Path.Combine(dir, "files.img")))
            Assert.Contains(decoded.RootElement.GetProperty("entries").EnumerateArray(),
                f => f.GetProperty("type").GetString() == "UNIXSK" && f.GetProperty("usk").GetProperty("ino").GetUInt32() == inode);

        RestoreAndVerify(dir, fixture);
        Assert.Equal("after restore", Receive(logger));
    }

    [Fact]
    public void AnExternalSocketCanBeHandedInWithInheritFd()
    {
        using var logged = new LoggedFixture(SocketKind.Datagram);
        var (fixture, logger, dir, path) = logged;
        Assert.Equal("before dump", Receive(logger));
        uint inode = Inode(fixture.Pid, 5);
        DumpAndKill(fixture, new DumpOptions { Pid = fixture.Pid, ImagesDir = dir, ExternalUnixSockets = AllowAll });

        // The restoring side connects a socket of its own and hands it in; the task gets that very socket.
        using var handed = KernelSocket.Create(SocketFamily.Unix, SocketKind.Datagram);
        KernelSocket.Connect(handed, SockAddr.Unix(path));
        Assert.True((handed.StatusFlags & OpenFlags.NonBlock) == 0);
        // Options are the hander's business (the fixture checks these two).
        KernelSocket.SetOptionInt32(handed, SolSocket, SoPasscred, 1);
        var timeout = new byte[16];
        BitConverter.TryWriteBytes(timeout, 7L);
        BitConverter.TryWriteBytes(timeout.AsSpan(8), 500000L);
        KernelSocket.SetOption(handed, SolSocket, SoSndtimeo, timeout);
        using var restored = RestoreDetached(dir, new InheritedFd(handed.Fd, $"socket:[{inode}]"));
        Assert.True((handed.StatusFlags & OpenFlags.NonBlock) != 0, "the task's O_NONBLOCK is on the handed socket: they share it");
        AssertPass(Verify(restored, fixture));
        Assert.Equal("after restore", Receive(logger));
    }

    [Fact]
    public void AStreamConnectionToALoggerOutsideTheTreeIsMadeAgain()
    {
        using var logged = new LoggedFixture(SocketKind.Stream);
        var (fixture, listener, dir, _) = logged;
        using (var before = Accept(listener))
        {
            Assert.Equal("before dump\n", Receive(before));
            var e = Assert.Throws<DumpException>(() => DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = dir }));
            Assert.Contains($"task {fixture.Pid} fd 5: unix stream socket {Inode(fixture.Pid, 5)} is connected to unix stream socket", e.Message);
            Assert.Contains("--ext-unix-sk", e.Message);

            DumpAndKill(fixture, new DumpOptions { Pid = fixture.Pid, ImagesDir = dir, ExternalUnixSockets = AllowAll });
            Assert.Equal("", Receive(before)); // the dumped connection ended with the task
        }
        Crit.DecodeAll(dir);

        RestoreAndVerify(dir, fixture);
        using var after = Accept(listener);
        Assert.Equal("after restore\n", Receive(after));
    }

    [Fact]
    public void AStreamConnectionFailsTheRestoreWhenNobodyListensAndLeavesNoTask()
    {
        using var logged = new LoggedFixture(SocketKind.Stream);
        var (fixture, listener, dir, path) = logged;
        int pid = fixture.Pid;
        using (listener)
        {
            using var before = Accept(listener);
            DumpAndKill(fixture, new DumpOptions { Pid = fixture.Pid, ImagesDir = dir, ExternalUnixSockets = AllowAll });
        }
        File.Delete(path);
        var e = FailsCleanly(dir, pid, Children());
        Assert.Contains($"cannot connect unix socket", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void ASocketpairBetweenParentAndChildAndASocketBothHoldComeBack()
    {
        using var imagesDir = new ScratchDirectory();
        string dir = imagesDir.Path;
        using var fixture = FixtureProcess.Start("unix_sockets", "tree");
        DumpAndKill(fixture, dir);
        Crit.DecodeAll(dir);
        // Three sockets: the pair's ends and the shared one (one entry however many processes hold it).
        Assert.Equal(3, FileEntries(dir).Count(f => f.Type == FdTypes.Unixsk));
        RestoreAndVerify(dir, fixture);
    }

    [Fact]
    public void DescriptorsInFlightFailTheDumpAndTheProcessKeepsThem()
    {
        using var imagesDir = new ScratchDirectory();
        string dir = imagesDir.Path;
        using var fixture = FixtureProcess.Start("unix_sockets", "passfd");
        var e = Assert.Throws<DumpException>(() => DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = dir }));
        Assert.Contains($"task {fixture.Pid} fd 4: unix stream socket {Inode(fixture.Pid, 4)} has file descriptors in flight (SCM_RIGHTS)", e.Message);
        Assert.Empty(Directory.GetFiles(dir));
        Assert.Equal("PASS", fixture.Verify(SIGUSR1, TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public void ADumpThatLeavesTheTreeRunningLeavesItsSocketQueuesAsTheyWere()
    {
        using var workDir = new ScratchDirectory();
        using var imagesDir = new ScratchDirectory();
        string work = workDir.Path, dir = imagesDir.Path;
        using var fixture = FixtureProcess.Start("unix_sockets", "inside", work);
        DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = dir, LeaveRunning = true });
        Assert.Equal("PASS", fixture.Verify(SIGUSR1, TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public void SocketpairsAConnectionAPlainSocketAndAListenerInsideTheTreeComeBack()
    {
        using var workDir = new ScratchDirectory();
        using var imagesDir = new ScratchDirectory();
        string work = workDir.Path, dir = imagesDir.Path;
        using var fixture = FixtureProcess.Start("unix_sockets", "inside", work);
        DumpAndKill(fixture, dir);
        Crit.DecodeAll(dir);
        var sockets = FileEntries(dir).Where(f => f.Type == FdTypes.Unixsk).Select(f => f.Usk).ToList();
        Assert.Equal(8, sockets.Count);
        var listener = sockets.Single(s => s.State == 10);
        Assert.Equal(7u, listener.Backlog);
        Assert.True(File.Exists(Path.Combine(work, "listen.sock"))); // stale: removed and bound again by the restore
        using (var queues = ImageReader.Open(Path.Combine(dir, "sk-queues.img"), ImageKinds.SkQueues))
        {
            var packets = new List<(SkPacketEntry Entry, byte[] Data)>();
            while (queues.ReadEntry(SkPacketEntry.Parser) is { } entry) packets.Add((entry, queues.ReadPayload()));
            // The dgram end holds three datagrams, boundaries kept; the stream ends 20, 4, 12 and 12 bytes.
            var dgram = sockets.Single(s => s.Type == 2 && s.Shutdown == SkShutdown.Write);
            Assert.Equal(["d1", "", "dgram two"], packets.Where(p => p.Entry.IdFor == dgram.Id).Select(p => Encoding.ASCII.GetString(p.Data)));
            Assert.Equal(59, packets.Sum(p => p.Data.Length));
        }

        RestoreAndVerify(dir, fixture);
    }
}
