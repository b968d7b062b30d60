using Crest.Kernel.Files;
using Crest.Kernel.Tests.Interop;

namespace Crest.Kernel.Tests.Files;

public sealed class PidFdTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("crest-pidfd-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void GetFdTakesAChildsDescriptorAndFstatSeesTheSameFile()
    {
        string path = Path.Combine(_dir, "held by the child");
        File.WriteAllText(path, "content");
        using var child = SleepChild.StartShell($"exec sleep 30 7<'{path}'");
        child.WaitForSleep();

        using var mine = FileDescriptor.Open(path, OpenFlags.ReadOnly);
        using var pidfd = PidFd.Open(child.Pid);
        Assert.Equal(child.Pid, pidfd.Pid);
        using FileDescriptor taken = pidfd.GetFd(7);
        Assert.True(taken.CloseOnExec);
        FileStatus a = mine.Stat(), b = taken.Stat();
        Assert.Equal((a.Device, a.Inode), (b.Device, b.Inode));
        var buffer = new byte[7];
        Assert.Equal(7, taken.ReadFull(buffer));
        Assert.Equal("content"u8.ToArray(), buffer);
    }

    [Fact]
    public void GetFdOfOurOwnProcessDuplicates()
    {
        var (read, write) = FileDescriptor.CreatePipe();
        using (read)
        using (write)
        using (var self = PidFd.Open(Environment.ProcessId))
        using (FileDescriptor copy = self.GetFd(write.Fd))
        {
            Assert.NotEqual(write.Fd, copy.Fd);
            Assert.Equal(write.Stat().Inode, copy.Stat().Inode);
            copy.WriteAll("!"u8);
            var one = new byte[1];
            Assert.Equal(1, read.Read(one));
            Assert.Equal((byte)'!', one[0]);
        }
    }

    [Fact]
    public void SendSignalEndsTheChild()
    {
        using var child = SleepChild.Start();
        child.WaitForSleep();
        using var pidfd = PidFd.Open(child.Pid);
        pidfd.SendSignal(15);
        Assert.True(child.WaitForExit());
    }

    [Fact]
    public void ErrorsNameTheCallThePidAndTheErrno()
    {
        var e = Assert.Throws<KernelException>(() => PidFd.Open(999999999));
        Assert.Equal(Errno.ESRCH, e.Errno.Value);
        Assert.Equal("pidfd_open(999999999): ESRCH (No such process)", e.Message);

        using var self = PidFd.Open(Environment.ProcessId);
        var bad = Assert.Throws<KernelException>(() => self.GetFd(12345));
        Assert.Equal($"pidfd_getfd({Environment.ProcessId}): EBADF (Bad file descriptor): fd 12345", bad.Message);
    }
}
