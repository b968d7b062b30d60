using Crest.Kernel.Files;
using Crest.Kernel.Processes;

namespace Crest.Kernel.Tests.Processes;

public class KcmpTests
{
    [Fact]
    public void ADuplicateIsTheSameFileAndASecondOpenIsNot()
    {
        using var first = FileDescriptor.Open("/dev/null", OpenFlags.ReadOnly);
        using var dup = first.Duplicate();
        using var second = FileDescriptor.Open("/dev/null", OpenFlags.ReadOnly);
        int self = Environment.ProcessId;
        Assert.True(Kcmp.SameFile(self, self, first.Fd, dup.Fd));
        Assert.False(Kcmp.SameFile(self, self, first.Fd, second.Fd));
    }

    [Fact]
    public void AClosedFdIsAnErrorNamingIt()
    {
        using var fd = FileDescriptor.Open("/dev/null", OpenFlags.ReadOnly);
        int self = Environment.ProcessId;
        var e = Assert.Throws<KernelException>(() => Kcmp.SameFile(self, self, fd.Fd, 100_000));
        Assert.Equal(Errno.EBADF, e.Errno.Value);
    }
}
