// clone3 is not called for real from the test process (the child would be a copy of the .NET
// runtime). These calls are built so that the kernel refuses them at a check that reads a specific
// field of struct clone_args: each errno proves that field reached the kernel at its offset.
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Interop;

namespace Crest.Kernel.Tests.Interop;

public class Clone3Tests
{
    private const int SIGCHLD = 17;

    [Fact]
    public unsafe void AskingForOurOwnPidIsRefusedAsTaken()
    {
        int pid = Environment.ProcessId;
        var args = new clone_args { exit_signal = SIGCHLD, set_tid = (ulong)&pid, set_tid_size = 1 };
        Assert.Equal(Errno.EEXIST, Clone3(&args, (nuint)sizeof(clone_args)));
    }

    [Fact]
    public unsafe void SetTidIsReadFromTheGivenAddress()
    {
        var args = new clone_args { exit_signal = SIGCHLD, set_tid = 8, set_tid_size = 1 };
        Assert.Equal(Errno.EFAULT, Clone3(&args, (nuint)sizeof(clone_args)));
    }

    [Fact]
    public unsafe void SetTidOutsideThePidRangeIsInvalid()
    {
        int pid = int.MaxValue;
        var args = new clone_args { exit_signal = SIGCHLD, set_tid = (ulong)&pid, set_tid_size = 1 };
        Assert.Equal(Errno.EINVAL, Clone3(&args, (nuint)sizeof(clone_args)));
    }

    [Fact]
    public unsafe void SetTidSizeWithoutAnArrayIsInvalid()
    {
        var args = new clone_args { exit_signal = SIGCHLD, set_tid_size = 1 };
        Assert.Equal(Errno.EINVAL, Clone3(&args, (nuint)sizeof(clone_args)));
    }

    [Fact]
    public unsafe void IntoCgroupNeedsACgroupDirectory()
    {
        // A pipe is no cgroup: the kernel looks the cgroup fd up and refuses it.
        var (read, write) = Crest.Kernel.Files.FileDescriptor.CreatePipe();
        using (read)
        using (write)
        {
            var args = new clone_args { flags = Libc.CLONE_INTO_CGROUP, exit_signal = SIGCHLD, cgroup = (ulong)read.Fd };
            Assert.Equal(Errno.EBADF, Clone3(&args, (nuint)sizeof(clone_args)));
            // The cgroup field lies beyond VER1: a VER1-sized struct cannot ask for CLONE_INTO_CGROUP.
            Assert.Equal(Errno.EINVAL, Clone3(&args, Libc.CLONE_ARGS_SIZE_VER1));
        }
    }

    [Fact]
    public unsafe void ASizeBelowTheFirstVersionIsInvalid()
    {
        int pid = Environment.ProcessId;
        var args = new clone_args { exit_signal = SIGCHLD, set_tid = (ulong)&pid, set_tid_size = 1 };
        Assert.Equal(Errno.EINVAL, Clone3(&args, Libc.CLONE_ARGS_SIZE_VER0 - 8));
        Assert.Equal(Errno.EINVAL, Clone3(&args, 0));
    }

    /// <summary>Runs clone3 expecting failure; should it ever succeed, the child leaves at once.</summary>
    private static unsafe int Clone3(clone_args* args, nuint size)
    {
        long r = Libc.clone3(args, size);
        if (r == 0) Libc.syscall(SyscallNumbers.exit_group, 111);
        Assert.True(r < 0, $"clone3 created child {r}");
        return Errno.Last.Value;
    }
}
