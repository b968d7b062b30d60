// The few libc calls the benchmarks measure or need: waitpid(2) that blocks (timing a child to
// the microsecond), prctl(2) PR_SET_CHILD_SUBREAPER, process_vm_readv(2), mmap(2), write(2).
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

[assembly: DisableRuntimeMarshalling]

namespace Crest.Bench;

internal static unsafe partial class Native
{
    public const int EINTR = 4, ECHILD = 10, ESRCH = 3;
    public const int WNOHANG = 1;
    public const int PR_SET_CHILD_SUBREAPER = 36;
    public const int PROT_READ = 1, PROT_WRITE = 2;
    public const int MAP_PRIVATE = 0x02, MAP_ANONYMOUS = 0x20, MAP_POPULATE = 0x8000;
    public const int O_WRONLY = 1, O_CREAT = 0x40, O_TRUNC = 0x200, O_CLOEXEC = 0x80000;
    public const int SIGKILL = 9, SIGTERM = 15;

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    /// <summary>waitpid(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    public static partial int waitpid(int pid, int* status, int options);

    /// <summary>kill(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    public static partial int kill(int pid, int signal);

    /// <summary>prctl(2); every argument passed, as the kernel reads them.</summary>
    [LibraryImport("libc", SetLastError = true)]
    public static partial int prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

    /// <summary>process_vm_readv(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    public static partial nint process_vm_readv(int pid, IoVec* local, nuint localCount, IoVec* remote, nuint remoteCount, nuint flags);

    /// <summary>mmap(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    public static partial void* mmap(void* address, nuint length, int protection, int flags, int fd, nint offset);

    /// <summary>munmap(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    public static partial int munmap(void* address, nuint length);

    /// <summary>open(2) with a NUL-terminated UTF-8 path.</summary>
    [LibraryImport("libc", SetLastError = true)]
    public static partial int open(byte* path, int flags, int mode);

    /// <summary>write(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    public static partial nint write(int fd, void* buffer, nuint count);

    /// <summary>close(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    public static partial int close(int fd);

    public static int Errno => Marshal.GetLastSystemError();

    public static Exception Failure(string call) =>
        new InvalidOperationException($"{call}: {Marshal.GetPInvokeErrorMessage(Errno)} (errno {Errno})");

    /// <summary>Blocking waitpid for one child, EINTR retried; the raw status word.</summary>
    public static int WaitFor(int pid)
    {
        int status;
        while (waitpid(pid, &status, 0) < 0)
            if (Errno != EINTR) throw Failure($"waitpid({pid})");
        return status;
    }

    /// <summary>Reap one child if it has ended; null while it runs.</summary>
    public static int? TryReap(int pid)
    {
        int status;
        int rc = waitpid(pid, &status, WNOHANG);
        if (rc < 0) throw Failure($"waitpid({pid}, WNOHANG)");
        return rc == pid ? status : null;
    }

    /// <summary>Reap every ended child nobody waits for (orphans handed to us as subreaper).</summary>
    public static void ReapOrphans()
    {
        int status;
        while (waitpid(-1, &status, WNOHANG) > 0) { }
    }

    public static string Describe(int status) =>
        (status & 0x7f) == 0 ? $"exited {(status >> 8) & 0xff}" : $"killed by signal {status & 0x7f}";
}
