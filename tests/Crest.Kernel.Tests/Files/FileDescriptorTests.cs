using System.Text;
using Crest.Kernel.Files;
using Crest.Kernel.Interop;

namespace Crest.Kernel.Tests.Files;

public sealed class FileDescriptorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("crest-fd-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void FileSystemTypeIsTheMagicOfStatfs()
    {
        using (var proc = FileDescriptor.Open("/proc/self/stat", OpenFlags.ReadOnly))
            Assert.Equal(0x9fa0, proc.FileSystemType()); // PROC_SUPER_MAGIC
        using (var dev = FileDescriptor.Open("/dev/null", OpenFlags.ReadOnly))
            Assert.Equal(0x01021994, dev.FileSystemType()); // TMPFS_MAGIC: devtmpfs reports tmpfs's
    }

    [Fact]
    public void ReadWriteSeekAndStatAFile()
    {
        string path = Path.Combine(_dir, "data");
        using (var f = FileDescriptor.Open(path, OpenFlags.ReadWrite | OpenFlags.Create | OpenFlags.Exclusive, 0b110_100_000))
        {
            Assert.True(f.CloseOnExec);
            f.WriteAll("hello, kernel"u8);
            Assert.Equal(13, f.Position);
            Assert.Equal(4, f.PWrite("HELL"u8, 0));
            Assert.Equal(13, f.Position); // pwrite leaves the position alone
            Assert.Equal(0, f.Seek(0, SeekOrigin.Begin));
            var buffer = new byte[64];
            Assert.Equal(13, f.ReadFull(buffer));
            Assert.Equal("HELLo, kernel", Encoding.ASCII.GetString(buffer, 0, 13));
            Assert.Equal(6, f.PRead(buffer.AsSpan(0, 6), 7));
            Assert.Equal("kernel", Encoding.ASCII.GetString(buffer, 0, 6));

            FileStatus st = f.Stat();
            Assert.True(st.IsRegularFile);
            Assert.Equal(13, st.Size);
            Assert.Equal(0b110_100_000u, st.Permissions);
            Assert.Equal(0u, st.Uid);
            Assert.True(st.Inode != 0);

            f.SetLength(5);
            Assert.Equal(5, f.Stat().Size);

            using var again = FileDescriptor.Open(path, OpenFlags.ReadOnly);
            Assert.Equal((st.Device, st.Inode), (again.Stat().Device, again.Stat().Inode));
            Assert.Equal(OpenFlags.ReadOnly, again.StatusFlags & OpenFlags.AccessModeMask);
        }
        Assert.Equal("HELLo", File.ReadAllText(path));
    }

    [Fact]
    public void OpenAtResolvesRelativeToADirectory()
    {
        File.WriteAllText(Path.Combine(_dir, "inside"), "x");
        using var dir = FileDescriptor.Open(_dir, OpenFlags.ReadOnly | OpenFlags.Directory);
        Assert.True(dir.Stat().IsDirectory);
        using var f = FileDescriptor.OpenAt(dir, "inside", OpenFlags.ReadOnly);
        Assert.Equal(1, f.Stat().Size);
        var e = Assert.Throws<KernelException>(() => FileDescriptor.OpenAt(dir, "missing", OpenFlags.ReadOnly));
        Assert.Equal("openat(): ENOENT (No such file or directory): missing", e.Message);
    }

    [Fact]
    public void FailuresNameTheCallTheErrnoAndThePath()
    {
        var e = Assert.Throws<KernelException>(() => FileDescriptor.Open("/nonexistent/crest", OpenFlags.ReadOnly));
        Assert.Equal(Errno.ENOENT, e.Errno.Value);
        Assert.Equal("open(): ENOENT (No such file or directory): /nonexistent/crest", e.Message);
    }

    [Fact]
    public void PipeCarriesDataAndReportsItsFlags()
    {
        var (read, write) = FileDescriptor.CreatePipe(OpenFlags.NonBlock);
        using (read)
        using (write)
        {
            Assert.True(read.Stat().IsFifo);
            Assert.Equal(read.Stat().Inode, write.Stat().Inode);
            Assert.True((read.StatusFlags & OpenFlags.NonBlock) != 0);
            Assert.Equal(OpenFlags.WriteOnly, write.StatusFlags & OpenFlags.AccessModeMask);
            write.WriteAll("through the pipe"u8);

            const ulong FIONREAD = 0x541B;
            var available = new byte[4];
            read.Ioctl(FIONREAD, available);
            Assert.Equal(16, BitConverter.ToInt32(available));

            var buffer = new byte[32];
            Assert.Equal(16, read.Read(buffer));
            Assert.Equal("through the pipe", Encoding.ASCII.GetString(buffer, 0, 16));
            var e = Assert.Throws<KernelException>(() => read.Read(buffer));
            Assert.Equal(Errno.EAGAIN, e.Errno.Value);
            Assert.Equal($"read(): EAGAIN (Resource temporarily unavailable): fd {read.Fd}", e.Message);
        }
    }

    [Fact]
    public void DuplicatesShareTheOpenFileAndCloseOnlyTheirOwnNumber()
    {
        var (read, write) = FileDescriptor.CreatePipe();
        using (read)
        using (write)
        {
            using (FileDescriptor copy = write.Duplicate())
            {
                Assert.NotEqual(write.Fd, copy.Fd);
                Assert.True(copy.CloseOnExec);
                copy.WriteAll("a"u8);
            }
            int high;
            using (FileDescriptor placed = write.DuplicateTo(777, closeOnExec: false))
            {
                high = placed.Fd;
                Assert.Equal(777, high);
                Assert.False(placed.CloseOnExec);
                placed.WriteAll("b"u8);
            }
            // Disposing the owner closed 777.
            Assert.Equal(-1, Libc.fcntl(high, Libc.F_GETFD, 0));
            Assert.Equal(Errno.EBADF, Errno.Last.Value);

            write.WriteAll("c"u8);
            var buffer = new byte[3];
            Assert.Equal(3, read.ReadFull(buffer));
            Assert.Equal("abc", Encoding.ASCII.GetString(buffer));
        }
    }

    [Fact]
    public void BorrowedDescriptorsStayOpenAndDetachedOnesChangeHands()
    {
        var (read, write) = FileDescriptor.CreatePipe();
        using (read)
        {
            using (FileDescriptor borrowed = FileDescriptor.Borrow(write.Fd))
                borrowed.WriteAll("x"u8);
            write.WriteAll("y"u8); // still open

            int raw = write.Detach();
            Assert.True(write.IsClosed);
            Assert.Throws<ObjectDisposedException>(() => write.Fd);
            using (FileDescriptor owner = FileDescriptor.Own(raw))
                owner.WriteAll("z"u8);

            var buffer = new byte[8];
            Assert.Equal(3, read.ReadFull(buffer)); // "xyz" then end of file: every writer is closed
            Assert.Equal("xyz", Encoding.ASCII.GetString(buffer, 0, 3));
        }
    }

    [Fact]
    public void PollNowTellsAPipeEndWhenTheOtherSideIsGone()
    {
        var (read, write) = FileDescriptor.CreatePipe();
        using (write)
        {
            using (read)
            {
                Assert.Equal(0, read.PollNow(0) & (Libc.POLLHUP | Libc.POLLIN));
                Assert.Equal(0, write.PollNow(0) & Libc.POLLERR);
                write.WriteAll("x"u8);
                Assert.Equal(Libc.POLLIN, read.PollNow(Libc.POLLIN) & Libc.POLLIN);
            }
            Assert.Equal(Libc.POLLERR, write.PollNow(0) & Libc.POLLERR); // no reader left
        }
        var (read2, write2) = FileDescriptor.CreatePipe();
        using (read2)
        {
            write2.Dispose();
            Assert.Equal(Libc.POLLHUP, read2.PollNow(0) & Libc.POLLHUP); // no writer left
        }
    }
}
