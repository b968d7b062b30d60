// Reads a whole /proc file. proc and seq_file files report st_size 0 and produce their text on
// read(2), so the only correct way is to read until read returns 0, growing the buffer. openat(2),
// read(2), close(2) go through the raw syscall entry; EINTR is retried here.
using System.Text;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Interop;

namespace Crest.Kernel.Proc;

/// <summary>Whole-file reads of /proc files.</summary>
public static class ProcFile
{
    /// <summary>
    /// Default bound on a file's size: smaps of a process at the default vm.max_map_count (65530
    /// VMAs, about 1.1 KiB each) is about 75 MiB.
    /// </summary>
    public const int DefaultMaxBytes = 128 << 20;

    private const int AT_FDCWD = -100;
    private const int O_RDONLY = 0, O_CLOEXEC = 0x80000;

    /// <summary>Reads /proc/<paramref name="pid"/>/<paramref name="name"/> (name like "maps" or "fdinfo/3").</summary>
    public static byte[] ReadAll(int pid, string name, int maxBytes = DefaultMaxBytes)
        => ReadAll($"/proc/{pid}/{name}", pid, maxBytes);

    /// <summary>
    /// Reads <paramref name="path"/> to end of file. Throws KernelException("open"/"read", pid, errno,
    /// path) on failure, with EFBIG when the file is longer than <paramref name="maxBytes"/>.
    /// </summary>
    public static unsafe byte[] ReadAll(string path, int pid = 0, int maxBytes = DefaultMaxBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxBytes);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(maxBytes, Array.MaxLength);
        byte[] pathBytes = new byte[Encoding.UTF8.GetByteCount(path) + 1];
        Encoding.UTF8.GetBytes(path, pathBytes);
        if (Array.IndexOf(pathBytes, (byte)0) != pathBytes.Length - 1)
            throw new KernelException("open", pid, new Errno(Errno.EINVAL), $"{path}: contains a NUL byte");

        long fd;
        fixed (byte* p = pathBytes)
        {
            do
                fd = Libc.syscall(SyscallNumbers.openat, AT_FDCWD, (long)p, O_RDONLY | O_CLOEXEC);
            while (fd < 0 && Errno.Last.Value == Errno.EINTR);
        }
        if (fd < 0)
            throw new KernelException("open", pid, Errno.Last, path);

        byte[] contents;
        try
        {
            contents = ReadToEnd(fd, path, pid, maxBytes);
        }
        catch
        {
            // The read failure is the error to report; a close failure after it would hide it.
            Libc.syscall(SyscallNumbers.close, fd);
            throw;
        }
        if (Libc.syscall(SyscallNumbers.close, fd) < 0)
            throw new KernelException("close", pid, Errno.Last, path);
        return contents;
    }

    private static unsafe byte[] ReadToEnd(long fd, string path, int pid, int maxBytes)
    {
        // One byte past the bound so that a file of exactly maxBytes is accepted and a longer one is seen.
        long limit = (long)maxBytes + 1;
        byte[] buffer = new byte[Math.Min(4096, limit)];
        int length = 0;
        while (true)
        {
            if (length == buffer.Length)
            {
                if (buffer.Length >= limit)
                    throw new KernelException("read", pid, new Errno(Errno.EFBIG), $"{path}: larger than {maxBytes} bytes");
                Array.Resize(ref buffer, (int)Math.Min(Math.Min((long)buffer.Length * 2, limit), Array.MaxLength));
            }
            long n;
            fixed (byte* b = &buffer[length])
            {
                do
                    n = Libc.syscall(SyscallNumbers.read, fd, (long)b, buffer.Length - length);
                while (n < 0 && Errno.Last.Value == Errno.EINTR);
            }
            if (n < 0)
                throw new KernelException("read", pid, Errno.Last, path);
            if (n == 0)
                break;
            length += (int)n;
        }
        return length == buffer.Length ? buffer : buffer.AsSpan(0, length).ToArray();
    }
}
