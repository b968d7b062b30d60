using Crest.Engine.Processes;
using Crest.Kernel.Arch.X64;

namespace Crest.Engine.Tests.Dump;

public class InterruptedSyscallTests
{
    [Theory]
    [InlineData(-512)]
    [InlineData(-513)]
    [InlineData(-514)]
    public void RestartableSyscallsAreReissued(long code)
    {
        var regs = new UserRegs { rax = unchecked((ulong)code), orig_rax = 0, rip = 0x1002 };
        var settled = CoreDumper.SettleInterruptedSyscall(1, regs);
        Assert.Equal(0UL, settled.rax);
        Assert.Equal(0x1000UL, settled.rip);
        Assert.Equal(0UL, settled.orig_rax);
    }

    [Fact]
    public void ARestartBlockBecomesEintr()
    {
        var regs = new UserRegs { rax = unchecked((ulong)-516), orig_rax = 230, rip = 0x1002 };
        var settled = CoreDumper.SettleInterruptedSyscall(1, regs);
        Assert.Equal(unchecked((ulong)-4), settled.rax);
        Assert.Equal(0x1002UL, settled.rip);
    }

    [Fact]
    public void OutsideASyscallNothingChanges()
    {
        var regs = new UserRegs { rax = unchecked((ulong)-512), orig_rax = ulong.MaxValue, rip = 0x1002 };
        Assert.Equal(regs, CoreDumper.SettleInterruptedSyscall(1, regs));
    }
}
