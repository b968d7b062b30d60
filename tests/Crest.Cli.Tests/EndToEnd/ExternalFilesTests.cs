// `crest dump --external` and `crest restore --inherit-fd` run as DRIVERS.md's harness runs CRIU, with the
// inherited fd opened by a shell before it execs crest (as a container runtime hands its fds to CRIU), on
// fixtures/external_files.c, which checks its own state after the restore.
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Crest.Cli.Tests.Binary;
using Crest.Kernel.Files;
using Crest.Kernel.Processes;
using Crest.Kernel.Sockets;

namespace Crest.Cli.Tests.EndToEnd;

[Collection("Checkpointed processes")]
public partial class ExternalFilesTests
{
    private const int SIGKILL = 9, SIGUSR1 = 10;

    private static string[] HarnessDump(string images, int pid, string pidFile, params string[] extra) =>
        ["dump", "--no-default-config", "--log-file", "dump.log", "--images-dir", images, "--verbosity=4",
         "--tree", pid.ToString(CultureInfo.InvariantCulture), "--pidfile", pidFile, "--timeout", "10", "--pre-dump-mode", "splice", .. extra];

    private static string[] HarnessRestore(string images, string pidFile, params string[] extra) =>
        ["restore", "--no-default-config", "--log-file", "restore.log", "--images-dir", images, "--verbosity=4",
         "--pidfile", pidFile, "--restore-detached", .. extra];

    /// <summary>external_files started as a test program: own session, stdout into <c>target.out</c>; waits for READY.</summary>
    private static (ChildProcess Child, string Output) StartFixture(string directory, params string[] args) =>
        StartFixtureNamed("external_files", directory, args);

    private static (ChildProcess Child, string Output) StartFixtureNamed(string fixture, string directory, params string[] args)
    {
        string path = Path.Combine(AppContext.BaseDirectory, "fixtures", fixture);
        string output = Path.Combine(directory, "target.out");
        var options = new SpawnOptions { NewSession = true };
        options.FileActions.Add(new SpawnFileAction.Open(0, "/dev/null", SpawnFileAction.O_RDONLY));
        options.FileActions.Add(new SpawnFileAction.Open(1, output, SpawnFileAction.O_WRONLY | SpawnFileAction.O_CREAT | SpawnFileAction.O_TRUNC));
        options.FileActions.Add(new SpawnFileAction.Dup2(1, 2));
        var child = ChildProcess.Spawn(path, [path, .. args], options);
        var clock = Stopwatch.StartNew();
        while (!(File.Exists(output) && File.ReadAllText(output).Contains("READY", StringComparison.Ordinal)))
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(20))
            {
                child.Dispose();
                throw new TimeoutException($"{fixture} printed no READY line: {File.ReadAllText(output)}");
            }
            Thread.Sleep(5);
        }
        return (child, output);
    }

    private static string FileId(int pid, int fd)
    {
        var fields = File.ReadAllLines($"/proc/{pid}/fdinfo/{fd}").Select(l => l.Split(':', 2)).ToDictionary(p => p[0], p => p[1].Trim());
        return string.Create(CultureInfo.InvariantCulture,
            $"file[{int.Parse(fields["mnt_id"], CultureInfo.InvariantCulture):x}:{ulong.Parse(fields["ino"], CultureInfo.InvariantCulture):x}]");
    }

    /// <summary>SIGUSR1 to the restored task (not our child), then its verdict from the output once it has one.</summary>
    private static string Verify(int pid, string output)
    {
        if (kill(pid, SIGUSR1) != 0) return $"kill({pid}, SIGUSR1) failed; output: {File.ReadAllText(output)}";
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(20))
        {
            string? verdict = File.ReadAllText(output).Split('\n').FirstOrDefault(l => l.StartsWith("PASS", StringComparison.Ordinal) || l.StartsWith("FAIL", StringComparison.Ordinal));
            if (verdict is not null) return verdict;
            Thread.Sleep(10);
        }
        return $"no verdict: {File.ReadAllText(output)}";
    }

    private static string Log(string images, string name)
    {
        string path = Path.Combine(images, name);
        return File.Exists(path) ? File.ReadAllText(path) : $"(no {name})";
    }

    private static void AssertDecodes(string images)
    {
        foreach (string image in Directory.GetFiles(images, "*.img").Where(f => !Path.GetFileName(f).StartsWith("pages-", StringComparison.Ordinal)))
        {
            var crit = External.Run("crit", "decode", "-i", image);
            Assert.True(crit.ExitCode == 0, $"crit decode -i {image}: {crit.Stderr}");
        }
    }

    private static int RestoredPid(string pidFile) => int.Parse(File.ReadAllText(pidFile), CultureInfo.InvariantCulture);

    [Fact]
    public void AFileWhosePathWasRemovedIsRestoredFromAnInheritedFd()
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("images");
        string gone = dir.Sub("gone");
        var (child, output) = StartFixture(dir.Path, "file", gone);
        using (child)
        {
            string id = FileId(child.Pid, 3);
            var dump = CrestProcess.Run(dir.Path, HarnessDump(images, child.Pid, Path.Combine(dir.Path, "dump.pid"), "--external", id));
            Assert.True(dump.ExitCode == 0, $"dump exited {dump.ExitCode}: {dump.Stderr}\n{Log(images, "dump.log")}");
            child.WaitForExit(TimeSpan.FromSeconds(10));
            AssertDecodes(images);
            Directory.Delete(gone, true);

            // Without the --inherit-fd the restore refuses, naming the fd and the option, and leaves nothing behind.
            string pidFile = Path.Combine(dir.Path, "restore.pid");
            var refused = CrestProcess.Run(dir.Path, HarnessRestore(images, pidFile));
            Assert.Equal(1, refused.ExitCode);
            Assert.Contains($"Error: task {child.Pid} fd 3 was dumped as the external file {id}", refused.Stderr);
            Assert.Contains($"--inherit-fd fd[N]:{id}", refused.Stderr);
            Assert.False(File.Exists(pidFile));
            Assert.NotEqual(0, kill(child.Pid, 0));

            string replacement = Path.Combine(dir.Path, "replacement");
            File.WriteAllText(replacement, "0123456789");
            var restore = CrestProcess.RunWithFds(dir.Path, $"exec 7<'{replacement}'", HarnessRestore(images, pidFile, "--inherit-fd", $"fd[7]:{id}"));
            Assert.True(restore.ExitCode == 0, $"restore exited {restore.ExitCode}: {restore.Stderr}\n{Log(images, "restore.log")}");
            int pid = RestoredPid(pidFile);
            Assert.Equal(child.Pid, pid);
            try
            {
                Assert.Equal("PASS", Verify(pid, output));
                Assert.Equal("012345ab89", File.ReadAllText(replacement));
            }
            finally
            {
                kill(pid, SIGKILL);
            }
        }
    }

    [Fact]
    public void ADumpOfADeletedFileWithoutExternalFailsAndTheProcessRunsOn()
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("images");
        var (child, output) = StartFixture(dir.Path, "file", dir.Sub("work"));
        using (child)
        {
            string id = FileId(child.Pid, 3);
            File.Delete(Path.Combine(dir.Path, "work", "data"));
            var dump = CrestProcess.Run(dir.Path, HarnessDump(images, child.Pid, Path.Combine(dir.Path, "dump.pid")));
            Assert.Equal(1, dump.ExitCode);
            Assert.StartsWith($"Error: task {child.Pid} fd 3: file ", dump.Stderr);
            Assert.Contains($"--external {id}", dump.Stderr);
            Assert.Contains($"--external {id}", Log(images, "dump.log"));
            Assert.False(File.Exists(Path.Combine(images, "inventory.img")));
            Assert.Equal("PASS", Verify(child.Pid, output));
        }
    }

    [Fact]
    public void APipeToALoggerIsReplacedByAPipeHandedToTheRestore()
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("images");
        string log = Path.Combine(dir.Path, "logger.out");
        var (child, output) = StartFixture(dir.Path, "logger", log);
        using (child)
        {
            string id = new FileInfo($"/proc/{child.Pid}/fd/10").LinkTarget!;
            var refused = CrestProcess.Run(dir.Path, HarnessDump(images, child.Pid, Path.Combine(dir.Path, "dump.pid")));
            Assert.Equal(1, refused.ExitCode);
            Assert.Contains($"Error: task {child.Pid} fd 10: {id} is the write end of a pipe also held outside the dumped tree", refused.Stderr);
            Assert.Contains($"--external {id}", refused.Stderr);

            var dump = CrestProcess.Run(dir.Path, HarnessDump(images, child.Pid, Path.Combine(dir.Path, "dump.pid"), "--external", id));
            Assert.True(dump.ExitCode == 0, $"dump exited {dump.ExitCode}: {dump.Stderr}\n{Log(images, "dump.log")}");
            child.WaitForExit(TimeSpan.FromSeconds(10));
            AssertDecodes(images);

            // The new logger: a FIFO this test reads; the shell opens its write end as crest's fd 7.
            string fifo = Path.Combine(dir.Path, "new-logger");
            Assert.Equal(0, mkfifo(fifo, 0x180));
            using var reader = FileDescriptor.Open(fifo, OpenFlags.ReadOnly | OpenFlags.NonBlock | OpenFlags.CloseOnExec);
            string pidFile = Path.Combine(dir.Path, "restore.pid");
            var restore = CrestProcess.RunWithFds(dir.Path, $"exec 7>'{fifo}'", HarnessRestore(images, pidFile, "--inherit-fd", $"fd[7]:{id}"));
            Assert.True(restore.ExitCode == 0, $"restore exited {restore.ExitCode}: {restore.Stderr}\n{Log(images, "restore.log")}");
            int pid = RestoredPid(pidFile);
            try
            {
                Assert.Equal("PASS", Verify(pid, output));
                var buffer = new byte[256];
                int n = reader.Read(buffer);
                Assert.Equal("after restore\n", Encoding.ASCII.GetString(buffer, 0, n));
            }
            finally
            {
                kill(pid, SIGKILL);
            }
            Assert.Equal("before dump\n", File.ReadAllText(log));
        }
    }

    /// <summary>A unix socket of this test process, outside the dumped tree, whose reads give up after 10 s.</summary>
    private static FileDescriptor UnixLogger(SocketKind kind, string path)
    {
        var socket = KernelSocket.Create(SocketFamily.Unix, kind);
        KernelSocket.Bind(socket, SockAddr.Unix(path));
        var timeout = new byte[16];
        BitConverter.TryWriteBytes(timeout, 10L);
        KernelSocket.SetOption(socket, 1 /* SOL_SOCKET */, 20 /* SO_RCVTIMEO */, timeout);
        if (kind != SocketKind.Datagram) KernelSocket.Listen(socket, 4);
        return socket;
    }

    private static string Receive(FileDescriptor socket)
    {
        var buffer = new byte[256];
        int n = socket.Read(buffer);
        return Encoding.ASCII.GetString(buffer, 0, n);
    }

    [Theory]
    [InlineData("dgram")]
    [InlineData("stream")]
    public void AUnixSocketToALoggerIsConnectedAgainWithExtUnixSk(string kind)
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("images");
        string path = Path.Combine(dir.Path, "log.sock");
        using var logger = UnixLogger(kind == "dgram" ? SocketKind.Datagram : SocketKind.Stream, path);
        var (child, output) = StartFixtureNamed("unix_sockets", dir.Path, kind, path);
        using (child)
        {
            string link = new FileInfo($"/proc/{child.Pid}/fd/5").LinkTarget!;
            string inode = link["socket:[".Length..^1];
            using var before = kind == "dgram" ? null : KernelSocket.Accept(logger);
            var refused = CrestProcess.Run(dir.Path, HarnessDump(images, child.Pid, Path.Combine(dir.Path, "dump.pid")));
            Assert.Equal(1, refused.ExitCode);
            Assert.Contains($"Error: task {child.Pid} fd 5: unix {kind} socket {inode}", refused.Stderr);
            Assert.Contains($"--ext-unix-sk (or --ext-unix-sk={inode})", refused.Stderr);
            Assert.False(File.Exists(Path.Combine(images, "inventory.img")));

            var dump = CrestProcess.Run(dir.Path, HarnessDump(images, child.Pid, Path.Combine(dir.Path, "dump.pid"), "--ext-unix-sk"));
            Assert.True(dump.ExitCode == 0, $"dump exited {dump.ExitCode}: {dump.Stderr}\n{Log(images, "dump.log")}");
            child.WaitForExit(TimeSpan.FromSeconds(10));
            AssertDecodes(images);

            string pidFile = Path.Combine(dir.Path, "restore.pid");
            var restore = CrestProcess.Run(dir.Path, HarnessRestore(images, pidFile, "--ext-unix-sk"));
            Assert.True(restore.ExitCode == 0, $"restore exited {restore.ExitCode}: {restore.Stderr}\n{Log(images, "restore.log")}");
            int pid = RestoredPid(pidFile);
            try
            {
                Assert.Equal(child.Pid, pid);
                Assert.Equal("PASS", Verify(pid, output));
                if (kind == "dgram")
                {
                    Assert.Equal("before dump", Receive(logger));
                    Assert.Equal("after restore", Receive(logger));
                }
                else
                {
                    Assert.Equal("before dump\n", Receive(before!));
                    using var after = KernelSocket.Accept(logger);
                    Assert.Equal("after restore\n", Receive(after));
                }
            }
            finally
            {
                kill(pid, SIGKILL);
            }
        }
    }

    [Theory]
    [InlineData("3:pipe:[1]")]
    [InlineData("fd[-1]:pipe:[1]")]
    [InlineData("fd[3]:")]
    [InlineData("fd[x]:a")]
    public void AnInheritFdThatDoesNotParseIsAUsageError(string argument)
    {
        using var dir = new TempDirectory();
        string images = dir.Sub("images");
        var run = CrestProcess.Run(dir.Path, HarnessRestore(images, Path.Combine(dir.Path, "restore.pid"), "--inherit-fd", argument));
        Assert.Equal(1, run.ExitCode);
        Assert.Contains($"Invalid inherit fd argument: {argument}", run.Stderr);
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int mkfifo(string path, uint mode);
}
