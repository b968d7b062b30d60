// Terminal ioctls (ioctl_tty(2), ioctl_console... <asm-generic/ioctls.h>) on a descriptor of a tty or pty end:
// termios with arbitrary speeds (TCGETS2/TCSETS2, Linux 2.6.20), the locked termios (TIOCGLCKTRMIOS), window
// size, pty number and lock (TIOCGPTN, TIOCGPTLCK Linux 3.8), packet mode (TIOCGPKT, 3.8), exclusive mode
// (TIOCGEXCL, 3.8), the slave opened from its master (TIOCGPTPEER, 4.13), session and foreground group.
// On a pty master, the termios, window size, session and group calls act on its slave (tty_pair_get_tty).
using System.Buffers.Binary;
using Crest.Kernel.Interop;

namespace Crest.Kernel.Files;

/// <summary>struct termios2 of x86_64: four flag words, the line discipline, 19 control characters, two speeds.</summary>
public sealed record Termios(uint InputFlags, uint OutputFlags, uint ControlFlags, uint LocalFlags, byte Line, byte[] ControlChars,
    uint InputSpeed, uint OutputSpeed)
{
    public const int Size = 44, ControlCharCount = 19;

    public const uint ICANON = 0x2, ISIG = 0x1, ECHO = 0x8, ECHOE = 0x10, ECHOK = 0x20, ECHONL = 0x40, ECHOCTL = 0x200,
        ECHOKE = 0x800, IEXTEN = 0x8000;

    /// <summary>
    /// Input processing: IGNBRK BRKINT IGNPAR PARMRK INPCK ISTRIP INLCR IGNCR ICRNL IUCLC IMAXBEL IUTF8; not the flow
    /// control bits IXON IXANY IXOFF, whose change a pty in packet mode reports to its master (TIOCPKT_DOSTOP/NOSTOP).
    /// </summary>
    public const uint InputProcessing = 0x7fff & ~0x1c00u;

    public const int VMIN = 6, VTIME = 5, VEOL = 11, VEOL2 = 16;

    public static Termios Parse(ReadOnlySpan<byte> raw) => new(
        BinaryPrimitives.ReadUInt32LittleEndian(raw), BinaryPrimitives.ReadUInt32LittleEndian(raw[4..]),
        BinaryPrimitives.ReadUInt32LittleEndian(raw[8..]), BinaryPrimitives.ReadUInt32LittleEndian(raw[12..]),
        raw[16], raw.Slice(17, ControlCharCount).ToArray(),
        BinaryPrimitives.ReadUInt32LittleEndian(raw[36..]), BinaryPrimitives.ReadUInt32LittleEndian(raw[40..]));

    public void WriteTo(Span<byte> raw)
    {
        raw[..Size].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(raw, InputFlags);
        BinaryPrimitives.WriteUInt32LittleEndian(raw[4..], OutputFlags);
        BinaryPrimitives.WriteUInt32LittleEndian(raw[8..], ControlFlags);
        BinaryPrimitives.WriteUInt32LittleEndian(raw[12..], LocalFlags);
        raw[16] = Line;
        ControlChars.AsSpan(0, Math.Min(ControlChars.Length, ControlCharCount)).CopyTo(raw[17..]);
        BinaryPrimitives.WriteUInt32LittleEndian(raw[36..], InputSpeed);
        BinaryPrimitives.WriteUInt32LittleEndian(raw[40..], OutputSpeed);
    }
}

/// <summary>struct winsize.</summary>
public readonly record struct WindowSize(ushort Rows, ushort Columns, ushort XPixels, ushort YPixels);

public static class Terminal
{
    private const ulong TCGETS2 = 0x802C542A, TCSETS2 = 0x402C542B, TIOCGLCKTRMIOS = 0x5456, TIOCSLCKTRMIOS = 0x5457,
        TIOCGWINSZ = 0x5413, TIOCSWINSZ = 0x5414, TIOCGPTN = 0x80045430, TIOCSPTLCK = 0x40045431,
        TIOCGPKT = 0x80045438, TIOCGPTLCK = 0x80045439, TIOCGEXCL = 0x80045440, TIOCPKT = 0x5420,
        TIOCEXCL = 0x540C, TIOCNXCL = 0x540D, TIOCGPGRP = 0x540F, TIOCSPGRP = 0x5410, TIOCGSID = 0x5429,
        TIOCINQ = 0x541B, TIOCOUTQ = 0x5411, TIOCGPTPEER = 0x5441;

    /// <summary>Whether <paramref name="fd"/> is a terminal (TCGETS2 succeeds, as isatty(3) checks).</summary>
    public static bool IsTerminal(FileDescriptor fd)
    {
        Span<byte> raw = stackalloc byte[Termios.Size];
        try
        {
            fd.Ioctl(TCGETS2, raw);
            return true;
        }
        catch (KernelException e) when (e.Errno.Value is Errno.ENOTTY or Errno.EINVAL)
        {
            return false;
        }
    }

    public static Termios GetTermios(FileDescriptor fd)
    {
        Span<byte> raw = stackalloc byte[Termios.Size];
        fd.Ioctl(TCGETS2, raw);
        return Termios.Parse(raw);
    }

    /// <summary>TCSETS2: at once, nothing drained or flushed.</summary>
    public static void SetTermios(FileDescriptor fd, Termios termios)
    {
        Span<byte> raw = stackalloc byte[Termios.Size];
        termios.WriteTo(raw);
        fd.Ioctl(TCSETS2, raw);
    }

    /// <summary>TIOCGLCKTRMIOS (struct termios: no speeds, which come back 0).</summary>
    public static Termios GetLockedTermios(FileDescriptor fd)
    {
        Span<byte> raw = stackalloc byte[Termios.Size];
        raw.Clear();
        fd.Ioctl(TIOCGLCKTRMIOS, raw);
        raw[36..].Clear();
        return Termios.Parse(raw);
    }

    /// <summary>TIOCSLCKTRMIOS (needs CAP_SYS_ADMIN).</summary>
    public static void SetLockedTermios(FileDescriptor fd, Termios termios)
    {
        Span<byte> raw = stackalloc byte[Termios.Size];
        termios.WriteTo(raw);
        fd.Ioctl(TIOCSLCKTRMIOS, raw);
    }

    public static WindowSize GetWindowSize(FileDescriptor fd)
    {
        Span<byte> raw = stackalloc byte[8];
        fd.Ioctl(TIOCGWINSZ, raw);
        return new WindowSize(BinaryPrimitives.ReadUInt16LittleEndian(raw), BinaryPrimitives.ReadUInt16LittleEndian(raw[2..]),
            BinaryPrimitives.ReadUInt16LittleEndian(raw[4..]), BinaryPrimitives.ReadUInt16LittleEndian(raw[6..]));
    }

    public static void SetWindowSize(FileDescriptor fd, WindowSize size)
    {
        Span<byte> raw = stackalloc byte[8];
        BinaryPrimitives.WriteUInt16LittleEndian(raw, size.Rows);
        BinaryPrimitives.WriteUInt16LittleEndian(raw[2..], size.Columns);
        BinaryPrimitives.WriteUInt16LittleEndian(raw[4..], size.XPixels);
        BinaryPrimitives.WriteUInt16LittleEndian(raw[6..], size.YPixels);
        fd.Ioctl(TIOCSWINSZ, raw);
    }

    /// <summary>TIOCGPTN on a pty master: the index of its slave (/dev/pts/N).</summary>
    public static int GetPtyNumber(FileDescriptor master) => GetInt(master, TIOCGPTN);

    public static bool GetPtyLocked(FileDescriptor master) => GetInt(master, TIOCGPTLCK) != 0;

    public static void SetPtyLocked(FileDescriptor master, bool locked) => SetInt(master, TIOCSPTLCK, locked ? 1 : 0);

    public static bool GetPacketMode(FileDescriptor master) => GetInt(master, TIOCGPKT) != 0;

    public static void SetPacketMode(FileDescriptor master, bool on) => SetInt(master, TIOCPKT, on ? 1 : 0);

    public static bool GetExclusive(FileDescriptor fd) => GetInt(fd, TIOCGEXCL) != 0;

    public static void SetExclusive(FileDescriptor fd, bool on) => fd.Ioctl(on ? TIOCEXCL : TIOCNXCL, 0);

    /// <summary>TIOCGSID: the session of the terminal (on a master, of its slave); 0 when it has none.</summary>
    public static int GetSession(FileDescriptor fd)
    {
        try
        {
            return GetInt(fd, TIOCGSID);
        }
        catch (KernelException e) when (e.Errno.Value == Errno.ENOTTY)
        {
            return 0;
        }
    }

    /// <summary>TIOCGPGRP: the foreground process group (on a master, of its slave); 0 when none.</summary>
    public static int GetForegroundGroup(FileDescriptor fd)
    {
        try
        {
            return GetInt(fd, TIOCGPGRP);
        }
        catch (KernelException e) when (e.Errno.Value == Errno.ENOTTY)
        {
            return 0;
        }
    }

    /// <summary>tcsetpgrp(3): the caller must have the terminal as its controlling terminal.</summary>
    public static void SetForegroundGroup(FileDescriptor fd, int pgrp) => SetInt(fd, TIOCSPGRP, pgrp);

    /// <summary>TIOCINQ: bytes the next reads can take (in canonical mode: complete lines only).</summary>
    public static int InputQueued(FileDescriptor fd) => GetInt(fd, TIOCINQ);

    /// <summary>TIOCOUTQ: bytes written and not yet sent on.</summary>
    public static int OutputQueued(FileDescriptor fd) => GetInt(fd, TIOCOUTQ);

    /// <summary>TIOCGPTPEER: a new open file description of the slave of <paramref name="master"/> (fails with EIO while locked).</summary>
    public static FileDescriptor OpenPeer(FileDescriptor master, OpenFlags flags) =>
        FileDescriptor.Own(master.Ioctl(TIOCGPTPEER, (nint)(int)flags));

    private static unsafe int GetInt(FileDescriptor fd, ulong request)
    {
        int value = 0;
        fd.Ioctl(request, (nint)(&value));
        return value;
    }

    private static unsafe void SetInt(FileDescriptor fd, ulong request, int value) => fd.Ioctl(request, (nint)(&value));

    /// <summary>
    /// Run <paramref name="action"/> with SIGTTOU blocked in the calling thread, as a process outside the foreground
    /// group must to change a terminal it controls (tcsetpgrp, TCSETS) without being stopped.
    /// </summary>
    public static unsafe void WithoutSigttou(Action action)
    {
        ArgumentNullException.ThrowIfNull(action);
        var set = stackalloc ulong[16];
        var old = stackalloc ulong[16];
        for (int i = 0; i < 16; i++) set[i] = old[i] = 0;
        set[0] = 1UL << (Libc.SIGTTOU - 1);
        int r = Libc.pthread_sigmask(0 /* SIG_BLOCK */, set, old);
        if (r != 0) throw new KernelException("pthread_sigmask", new Errno(r), "SIG_BLOCK SIGTTOU");
        try
        {
            action();
        }
        finally
        {
            Libc.pthread_sigmask(2 /* SIG_SETMASK */, old, null);
        }
    }
}
