// A file descriptor owned (or borrowed) by Crest: open(2)/openat(2), read(2)/write(2)/pread(2)/
// pwrite(2) with EINTR retried here and nowhere else, lseek(2), ftruncate(2), fstat(2), fstatfs(2), fcntl(2),
// dup(2)/dup3(2), pipe2(2), tee(2), splice(2), ioctl(2), close(2).
//
// Ownership: a FileDescriptor created by Open/Dup/CreatePipe/socket calls owns its number and
// closes it once, on Dispose (or finalization). Borrow wraps a number someone else owns (stdin, a
// descriptor the runtime holds) and never closes it. Detach hands the number over to the caller,
// who then owns it. Descriptors Crest creates are always close-on-exec so that nothing leaks into
// the tasks it spawns; descriptors meant for a task travel by SCM_RIGHTS, not by inheritance.
using System.Runtime.InteropServices;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Interop;

namespace Crest.Kernel.Files;

public sealed class FileDescriptor : SafeHandle
{
    private FileDescriptor(int fd, bool ownsHandle) : base(-1, ownsHandle) => SetHandle(fd);

    /// <summary>Descriptors are valid from 0; the kernel never hands out a negative one.</summary>
    public override bool IsInvalid => (long)handle < 0;

    /// <summary>The descriptor number. Valid only while this object is alive and not disposed.</summary>
    public int Fd
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsClosed, this);
            return (int)handle;
        }
    }

    /// <summary>Takes ownership of fd: it is closed when this object is disposed.</summary>
    public static FileDescriptor Own(int fd)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fd);
        return new FileDescriptor(fd, ownsHandle: true);
    }

    /// <summary>Wraps fd without owning it: disposing this object leaves fd open.</summary>
    public static FileDescriptor Borrow(int fd)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fd);
        return new FileDescriptor(fd, ownsHandle: false);
    }

    /// <summary>Gives up ownership and returns the number; this object becomes closed without closing it.</summary>
    public int Detach()
    {
        int fd = Fd;
        SetHandleAsInvalid();
        return fd;
    }

    protected override bool ReleaseHandle() => Libc.close((int)handle) == 0;

    /// <summary>Keeps the descriptor from being closed by another thread while a raw call uses its number.</summary>
    internal Lease Use()
    {
        bool added = false;
        DangerousAddRef(ref added);
        return new Lease(this, (int)handle);
    }

    internal readonly ref struct Lease(FileDescriptor owner, int fd)
    {
        public int Fd => fd;
        public void Dispose() => owner.DangerousRelease();
    }

    /// <summary>True when a call failed only because a signal arrived first; the one place EINTR is retried.</summary>
    internal static bool Interrupted(long ret) => ret == -1 && Marshal.GetLastPInvokeError() == Errno.EINTR;

    // ---- opening ----

    /// <summary>open(2), always with O_CLOEXEC.</summary>
    public static FileDescriptor Open(string path, OpenFlags flags, uint mode = 0) => OpenAt(null, path, flags, mode);

    /// <summary>openat(2) relative to directory (null: the current directory), always with O_CLOEXEC.</summary>
    public static unsafe FileDescriptor OpenAt(FileDescriptor? directory, string path, OpenFlags flags, uint mode = 0)
    {
        int size = NullTerminatedUtf8.BufferSize(path);
        Span<byte> cpath = NullTerminatedUtf8.Encode(path, size <= 1024 ? stackalloc byte[size] : new byte[size]);
        int dirfd = Libc.AT_FDCWD;
        bool added = false;
        try
        {
            if (directory is not null)
            {
                directory.DangerousAddRef(ref added);
                dirfd = (int)directory.handle;
            }
            int fd;
            fixed (byte* p = cpath)
            {
                while (Interrupted(fd = Libc.openat(dirfd, p, (int)flags | Libc.O_CLOEXEC, mode))) { }
            }
            if (fd < 0)
                throw new KernelException(directory is null ? "open" : "openat", Errno.Last, path);
            return Own(fd);
        }
        finally
        {
            if (added) directory!.DangerousRelease();
        }
    }

    /// <summary>pipe2(2), always with O_CLOEXEC: (read end, write end).</summary>
    public static unsafe (FileDescriptor Read, FileDescriptor Write) CreatePipe(OpenFlags flags = 0)
    {
        int* fds = stackalloc int[2];
        if (Libc.pipe2(fds, (int)flags | Libc.O_CLOEXEC) != 0)
            throw new KernelException("pipe2", Errno.Last);
        return (Own(fds[0]), Own(fds[1]));
    }

    // ---- data ----

    /// <summary>read(2) once: the number of bytes read, 0 at end of file.</summary>
    public unsafe int Read(Span<byte> buffer)
    {
        using var fd = Use();
        nint n;
        fixed (byte* p = buffer)
        {
            while (Interrupted(n = Libc.read(fd.Fd, p, (nuint)buffer.Length))) { }
        }
        if (n < 0) throw new KernelException("read", Errno.Last, $"fd {fd.Fd}");
        return (int)n;
    }

    /// <summary>tee(2), non-blocking: copies up to <paramref name="length"/> bytes queued in this pipe (a read
    /// end) into the pipe <paramref name="output"/> (a write end) without consuming them; the bytes copied.</summary>
    public int Tee(FileDescriptor output, int length)
    {
        ArgumentNullException.ThrowIfNull(output);
        using var fd = Use();
        using var o = output.Use();
        nint n;
        while (Interrupted(n = Libc.tee(fd.Fd, o.Fd, (nuint)length, Libc.SPLICE_F_NONBLOCK))) { }
        if (n < 0) throw new KernelException("tee", Errno.Last, $"fd {fd.Fd} to fd {o.Fd}");
        return (int)n;
    }

    /// <summary>splice(2), non-blocking, without offsets: moves up to <paramref name="length"/> bytes from this descriptor
    /// to <paramref name="output"/> (one of them a pipe); the bytes moved.</summary>
    public unsafe int Splice(FileDescriptor output, int length)
    {
        ArgumentNullException.ThrowIfNull(output);
        using var fd = Use();
        using var o = output.Use();
        nint n;
        while (Interrupted(n = Libc.splice(fd.Fd, null, o.Fd, null, (nuint)length, Libc.SPLICE_F_NONBLOCK))) { }
        if (n < 0) throw new KernelException("splice", Errno.Last, $"fd {fd.Fd} to fd {o.Fd}");
        return (int)n;
    }

    /// <summary>Reads until buffer is full or end of file; returns the bytes read.</summary>
    public int ReadFull(Span<byte> buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = Read(buffer[total..]);
            if (n == 0) break;
            total += n;
        }
        return total;
    }

    /// <summary>write(2) once: the number of bytes written.</summary>
    public unsafe int Write(ReadOnlySpan<byte> data)
    {
        using var fd = Use();
        nint n;
        fixed (byte* p = data)
        {
            while (Interrupted(n = Libc.write(fd.Fd, p, (nuint)data.Length))) { }
        }
        if (n < 0) throw new KernelException("write", Errno.Last, $"fd {fd.Fd}");
        return (int)n;
    }

    /// <summary>Writes all of data, continuing after short writes.</summary>
    public void WriteAll(ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
            data = data[Write(data)..];
    }

    /// <summary>pread(2) once at offset, leaving the file position alone.</summary>
    public unsafe int PRead(Span<byte> buffer, long offset)
    {
        using var fd = Use();
        nint n;
        fixed (byte* p = buffer)
        {
            while (Interrupted(n = Libc.pread(fd.Fd, p, (nuint)buffer.Length, offset))) { }
        }
        if (n < 0) throw new KernelException("pread", Errno.Last, $"fd {fd.Fd} at offset {offset}");
        return (int)n;
    }

    /// <summary>pwrite(2) once at offset, leaving the file position alone.</summary>
    public unsafe int PWrite(ReadOnlySpan<byte> data, long offset)
    {
        using var fd = Use();
        nint n;
        fixed (byte* p = data)
        {
            while (Interrupted(n = Libc.pwrite(fd.Fd, p, (nuint)data.Length, offset))) { }
        }
        if (n < 0) throw new KernelException("pwrite", Errno.Last, $"fd {fd.Fd} at offset {offset}");
        return (int)n;
    }

    /// <summary>lseek(2): the resulting offset.</summary>
    public long Seek(long offset, SeekOrigin origin)
    {
        using var fd = Use();
        int whence = origin switch
        {
            SeekOrigin.Begin => Libc.SEEK_SET,
            SeekOrigin.Current => Libc.SEEK_CUR,
            SeekOrigin.End => Libc.SEEK_END,
            _ => throw new ArgumentOutOfRangeException(nameof(origin)),
        };
        long r = Libc.lseek(fd.Fd, offset, whence);
        if (r < 0) throw new KernelException("lseek", Errno.Last, $"fd {fd.Fd} to {offset} from {origin}");
        return r;
    }

    /// <summary>The current file position (lseek(fd, 0, SEEK_CUR)).</summary>
    public long Position => Seek(0, SeekOrigin.Current);

    /// <summary>ftruncate(2): sets the file's size (a memfd starts at 0 and must be sized before mmap).</summary>
    public void SetLength(long length)
    {
        using var fd = Use();
        int r;
        while (Interrupted(r = Libc.ftruncate(fd.Fd, length))) { }
        if (r != 0) throw new KernelException("ftruncate", Errno.Last, $"fd {fd.Fd} to {length} bytes");
    }

    /// <summary>fsync(2); works on a directory opened read-only too (makes new names in it durable).</summary>
    public void Sync()
    {
        using var fd = Use();
        int r;
        while (Interrupted(r = Libc.fsync(fd.Fd))) { }
        if (r != 0) throw new KernelException("fsync", Errno.Last, $"fd {fd.Fd}");
    }

    // ---- metadata and flags ----

    /// <summary>fstat(2).</summary>
    public unsafe FileStatus Stat()
    {
        using var fd = Use();
        stat st;
        if (Libc.fstat(fd.Fd, &st) != 0) throw new KernelException("fstat", Errno.Last, $"fd {fd.Fd}");
        return FileStatus.From(in st);
    }

    /// <summary>fstatfs(2)'s f_type: the magic of the filesystem the file is on (OVERLAYFS_SUPER_MAGIC 0x794c7630...).</summary>
    public unsafe long FileSystemType()
    {
        using var fd = Use();
        byte* buf = stackalloc byte[Libc.StatfsSize];
        if (Libc.fstatfs(fd.Fd, buf) != 0) throw new KernelException("fstatfs", Errno.Last, $"fd {fd.Fd}");
        return *(long*)buf;
    }

    /// <summary>fcntl(2) with an integer argument; returns the call's non-negative result.</summary>
    public int Fcntl(int command, long argument = 0)
    {
        using var fd = Use();
        int r;
        // F_SETLKW and F_OFD_SETLKW sleep and may be interrupted; the other commands never are.
        while (Interrupted(r = Libc.fcntl(fd.Fd, command, argument))) { }
        if (r < 0) throw new KernelException($"fcntl({FcntlName(command)})", Errno.Last, $"fd {fd.Fd}");
        return r;
    }

    /// <summary>
    /// poll(2) with a zero timeout: the events pending on this descriptor now (POLLIN 0x1, POLLOUT 0x4, POLLERR 0x8,
    /// POLLHUP 0x10). On a pipe, POLLERR on a write end means no reader is left, POLLHUP on a read end no writer.
    /// </summary>
    public unsafe short PollNow(short events)
    {
        using var fd = Use();
        var entry = new pollfd { fd = fd.Fd, events = events };
        int r;
        while (Interrupted(r = Libc.poll(&entry, 1, 0))) { }
        if (r < 0) throw new KernelException("poll", Errno.Last, $"fd {fd.Fd}");
        return entry.revents;
    }

    /// <summary>The open file status flags (F_GETFL): access mode, O_APPEND, O_NONBLOCK, ...</summary>
    public OpenFlags StatusFlags
    {
        get => (OpenFlags)Fcntl(Libc.F_GETFL);
        set => Fcntl(Libc.F_SETFL, (int)value);
    }

    /// <summary>Whether FD_CLOEXEC is set (F_GETFD/F_SETFD).</summary>
    public bool CloseOnExec
    {
        get => (Fcntl(Libc.F_GETFD) & Libc.FD_CLOEXEC) != 0;
        set => Fcntl(Libc.F_SETFD, value ? Libc.FD_CLOEXEC : 0);
    }

    /// <summary>dup(2) as F_DUPFD_CLOEXEC: a new owned descriptor for the same open file.</summary>
    public FileDescriptor Duplicate() => Own(Fcntl(Libc.F_DUPFD_CLOEXEC, 0));

    /// <summary>dup3(2): makes newFd refer to this open file (closing what newFd was). The caller owns
    /// newFd's fate: the returned object owns it only when own is true.</summary>
    public FileDescriptor DuplicateTo(int newFd, bool closeOnExec = true, bool own = true)
    {
        using var fd = Use();
        int r;
        while (Interrupted(r = Libc.dup3(fd.Fd, newFd, closeOnExec ? Libc.O_CLOEXEC : 0))) { }
        if (r < 0) throw new KernelException("dup3", Errno.Last, $"fd {fd.Fd} to {newFd}");
        return own ? Own(r) : Borrow(r);
    }

    /// <summary>ioctl(2) with an integer (or pointer-sized) argument; returns the non-negative result.</summary>
    public int Ioctl(ulong request, nint argument)
    {
        using var fd = Use();
        int r = Libc.ioctl(fd.Fd, request, argument);
        if (r < 0) throw new KernelException($"ioctl(0x{request:x})", Errno.Last, $"fd {fd.Fd}");
        return r;
    }

    /// <summary>ioctl(2) whose argument points at a buffer the kernel reads or fills.</summary>
    public unsafe int Ioctl(ulong request, Span<byte> argument)
    {
        fixed (byte* p = argument) return Ioctl(request, (nint)p);
    }

    private static string FcntlName(int command) => command switch
    {
        Libc.F_DUPFD => "F_DUPFD", Libc.F_GETFD => "F_GETFD", Libc.F_SETFD => "F_SETFD",
        Libc.F_GETFL => "F_GETFL", Libc.F_SETFL => "F_SETFL", Libc.F_GETOWN => "F_GETOWN",
        Libc.F_SETOWN => "F_SETOWN", Libc.F_DUPFD_CLOEXEC => "F_DUPFD_CLOEXEC",
        Libc.F_GETPIPE_SZ => "F_GETPIPE_SZ", Libc.F_SETPIPE_SZ => "F_SETPIPE_SZ",
        Libc.F_GET_SEALS => "F_GET_SEALS", Libc.F_ADD_SEALS => "F_ADD_SEALS",
        Libc.F_GETLEASE => "F_GETLEASE", Libc.F_SETLEASE => "F_SETLEASE",
        _ => command.ToString(),
    };

    public override string ToString() => IsClosed ? "fd (closed)" : $"fd {(int)handle}";
}
