// kcmp(2) (Linux 3.5, CONFIG_KCMP): whether two tasks share a kernel object. The dump uses KCMP_FILE to find
// descriptors that refer to one open file description (dup, dup2, fork), which must stay one on restore
// (shared position and status flags). Needs PTRACE_MODE_READ_REALCREDS over both tasks.
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Interop;

namespace Crest.Kernel.Processes;

public static class Kcmp
{
    private const int KCMP_FILE = 0, KCMP_VM = 1, KCMP_FILES = 2, KCMP_FS = 3, KCMP_SIGHAND = 4;

    /// <summary>The kinds of task-wide objects two processes can share through clone flags (CLONE_VM, CLONE_FILES, CLONE_FS, CLONE_SIGHAND).</summary>
    public enum Shared
    {
        Vm = KCMP_VM,
        Files = KCMP_FILES,
        Fs = KCMP_FS,
        Sighand = KCMP_SIGHAND,
    }

    /// <summary>Whether <paramref name="pid1"/> and <paramref name="pid2"/> share their <paramref name="kind"/> object.</summary>
    public static bool SameObject(int pid1, int pid2, Shared kind)
    {
        long r = Libc.syscall(SyscallNumbers.kcmp, pid1, pid2, (int)kind, 0, 0);
        if (r < 0) throw new KernelException($"kcmp(KCMP_{kind.ToString().ToUpperInvariant()})", pid1, Errno.Last, $"against task {pid2}");
        return r == 0;
    }

    /// <summary>Whether fd <paramref name="fd1"/> of <paramref name="pid1"/> and fd <paramref name="fd2"/> of <paramref name="pid2"/> are the same open file description.</summary>
    public static bool SameFile(int pid1, int pid2, int fd1, int fd2)
    {
        long r = Libc.syscall(SyscallNumbers.kcmp, pid1, pid2, KCMP_FILE, fd1, fd2);
        if (r < 0) throw new KernelException("kcmp(KCMP_FILE)", pid1, Errno.Last, $"fd {fd1} against task {pid2} fd {fd2}");
        return r == 0;
    }
}
