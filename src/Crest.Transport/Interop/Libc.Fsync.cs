// open(2), fsync(2), close(2): what the page server needs to make the names of a finished session durable. .NET
// syncs a file it wrote (FileStream.Flush(true)) but cannot open a directory, whose fsync makes renames in it last.
using System.Runtime.InteropServices;

namespace Crest.Transport.Interop;

internal static partial class Libc
{
    public const int O_RDONLY = 0, O_DIRECTORY = 0x10000, O_CLOEXEC = 0x80000;
    public const int EINTR = 4;

    /// <summary>open(2) without a mode (no O_CREAT).</summary>
    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial int open(string path, int flags);

    /// <summary>fsync(2): on a directory, its entries reach the disk.</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int fsync(int fd);

    /// <summary>close(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int close(int fd);

    /// <summary>fsync(2) of <paramref name="directory"/>: the files created and renamed in it survive a crash.</summary>
    /// <exception cref="IOException">Names the call, the directory and the errno.</exception>
    internal static void SyncDirectory(string directory)
    {
        int fd;
        while ((fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 && Marshal.GetLastPInvokeError() == EINTR) { }
        if (fd < 0) throw Failure("open", directory);
        try
        {
            int r;
            while ((r = fsync(fd)) != 0 && Marshal.GetLastPInvokeError() == EINTR) { }
            if (r != 0) throw Failure("fsync", directory);
        }
        finally
        {
            close(fd);
        }
    }

    private static IOException Failure(string call, string path)
    {
        int errno = Marshal.GetLastPInvokeError();
        return new IOException($"{call}({path}): {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})", errno);
    }
}
