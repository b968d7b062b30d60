using Crest.Kernel;

namespace Crest.Kernel.Tests;

public class ErrnoTests
{
    [Fact]
    public void NamesAndMessagesComeFromTheKernelTable()
    {
        var e = new Errno(Errno.ESRCH);
        Assert.Equal("ESRCH", e.Name);
        Assert.Equal("ESRCH (No such process)", e.ToString());
        Assert.Equal("ERESTART_RESTARTBLOCK", new Errno(516).Name);
    }

    [Fact]
    public void KernelExceptionNamesCallTaskAndErrno()
    {
        var ex = new KernelException("ptrace(PTRACE_SEIZE)", 4242, new Errno(Errno.EPERM));
        Assert.Equal("ptrace(PTRACE_SEIZE, 4242): EPERM (Operation not permitted)", ex.Message);
        var open = new KernelException("open", new Errno(Errno.ENOENT), "/proc/1/maps");
        Assert.Equal("open(): ENOENT (No such file or directory): /proc/1/maps", open.Message);
    }
}
