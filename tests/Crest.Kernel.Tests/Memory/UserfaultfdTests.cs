using Crest.Kernel.Arch.X64;
using Crest.Kernel.Files;
using Crest.Kernel.Interop;
using Crest.Kernel.Memory;

namespace Crest.Kernel.Tests.Memory;

// UFFDIO_COPY fills missing pages of a registered range with data from the caller's memory; here the
// userfaultfd serves this process's own mm (restore makes it in the task and takes it over instead).
public class UserfaultfdTests
{
    private static readonly int Page = MemoryMapping.PageSize;

    [Fact]
    public void CopyFillsMissingPagesAndRefusesPresentOnes()
    {
        long fd = Libc.syscall(SyscallNumbers.userfaultfd, 0x80000 /* O_CLOEXEC */);
        Assert.True(fd >= 0, $"userfaultfd: {Errno.Last}");
        using var uffd = Userfaultfd.Adopt(FileDescriptor.Own((int)fd), Environment.ProcessId);
        using var target = MemoryMapping.Anonymous((ulong)(8 * Page));
        byte[] data = new byte[3 * Page];
        new Random(11).NextBytes(data);

        uffd.RegisterMissing(target.Address, (ulong)(8 * Page));
        uffd.Copy(target.Address + (ulong)Page, data);
        var e = Assert.Throws<KernelException>(() => uffd.Copy(target.Address + (ulong)(2 * Page), data.AsSpan(0, Page)));
        Assert.Equal(Errno.EEXIST, e.Errno.Value);
        uffd.Unregister(target.Address, (ulong)(8 * Page));

        Assert.Equal(data, target.Slice((ulong)Page, 3 * Page).ToArray());
        // Unregistered, the untouched pages fault in as zeros again instead of waiting for a copy.
        Assert.All(target.Slice(0, Page).ToArray(), b => Assert.Equal(0, b));
        Assert.All(target.Slice((ulong)(4 * Page), 4 * Page).ToArray(), b => Assert.Equal(0, b));
    }
}
