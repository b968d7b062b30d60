using Crest.Kernel.Files;

namespace Crest.Kernel.Tests.Files;

/// <summary>The terminal ioctls on a pty of our own: what is set reads back the same, through either end.</summary>
public class TerminalTests
{
    private static (FileDescriptor Master, FileDescriptor Slave) OpenPty()
    {
        var master = FileDescriptor.Open("/dev/ptmx", OpenFlags.ReadWrite | OpenFlags.NoCtty | OpenFlags.CloseOnExec);
        Terminal.SetPtyLocked(master, false);
        return (master, Terminal.OpenPeer(master, OpenFlags.ReadWrite | OpenFlags.NoCtty | OpenFlags.NonBlock | OpenFlags.CloseOnExec));
    }

    [Fact]
    public void TermiosAndWindowSizeReadBackThroughTheMaster()
    {
        var (master, slave) = OpenPty();
        using (master)
        using (slave)
        {
            Assert.True(Terminal.IsTerminal(slave));
            var termios = Terminal.GetTermios(slave);
            var cc = (byte[])termios.ControlChars.Clone();
            cc[2] = 0x08;
            // BOTHER in place of the CBAUD bits: the speeds are taken from c_ispeed / c_ospeed as they are.
            const uint CBAUD = 0x100f, BOTHER = 0x1000;
            var changed = termios with
            {
                LocalFlags = termios.LocalFlags & ~Termios.ECHO, ControlChars = cc,
                ControlFlags = (termios.ControlFlags & ~CBAUD) | BOTHER, OutputSpeed = 12345, InputSpeed = 12345,
            };
            Terminal.SetTermios(slave, changed);
            var back = Terminal.GetTermios(master);
            Assert.Equal(changed.LocalFlags, back.LocalFlags);
            Assert.Equal(cc, back.ControlChars);
            Assert.Equal(12345u, back.OutputSpeed);

            Terminal.SetWindowSize(slave, new WindowSize(33, 77, 5, 7));
            Assert.Equal(new WindowSize(33, 77, 5, 7), Terminal.GetWindowSize(master));
        }
    }

    [Fact]
    public void PacketModeLockAndExclusiveAreReported()
    {
        var (master, slave) = OpenPty();
        using (master)
        using (slave)
        {
            Assert.False(Terminal.GetPacketMode(master));
            Terminal.SetPacketMode(master, true);
            Assert.True(Terminal.GetPacketMode(master));
            Terminal.SetExclusive(slave, true);
            Assert.True(Terminal.GetExclusive(slave));
            Terminal.SetPtyLocked(master, true);
            Assert.True(Terminal.GetPtyLocked(master));
            var e = Assert.Throws<KernelException>(() => Terminal.OpenPeer(master, OpenFlags.ReadWrite | OpenFlags.NoCtty | OpenFlags.CloseOnExec));
            Assert.Equal(Errno.EIO, e.Errno.Value);
            Assert.Equal(0, Terminal.GetSession(master));
        }
    }

    [Fact]
    public void AFileIsNotATerminal()
    {
        using var file = FileDescriptor.Open("/dev/null", OpenFlags.ReadOnly | OpenFlags.CloseOnExec);
        Assert.False(Terminal.IsTerminal(file));
    }
}
