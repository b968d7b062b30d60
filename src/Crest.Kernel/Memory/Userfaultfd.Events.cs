// The handler side of a userfaultfd (lazy restore): messages read from the fd and the ioctls that resolve
// them. include/uapi/linux/userfaultfd.h:
//
//   struct uffd_msg (32 bytes)   u8 event | u8 reserved1 | u16 reserved2 | u32 reserved3 | union arg (24 bytes)
//     PAGEFAULT 0x12   arg.pagefault { u64 flags; u64 address; u32 ptid }
//     FORK      0x13   arg.fork      { u32 ufd }           a new userfaultfd in the *reader's* fd table
//     REMAP     0x14   arg.remap     { u64 from, to, len }
//     REMOVE    0x15   arg.remove    { u64 start, end }    MADV_DONTNEED / MADV_REMOVE
//     UNMAP     0x16   arg.remove    { u64 start, end }    munmap
//
// UFFDIO_COPY and UFFDIO_ZEROPAGE without DONTWAKE wake the threads waiting on the range. Both fail with
// EAGAIN while an event is queued and unread (mmap_changing), with ESRCH once the mm is gone, with EEXIST
// when the page is present already, with ENOENT when the range is not registered with this fd (any more).
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Crest.Kernel.Files;

namespace Crest.Kernel.Memory;

/// <summary>The kinds of uffd_msg.</summary>
public enum UserfaultfdEvent : byte
{
    PageFault = 0x12,
    Fork = 0x13,
    Remap = 0x14,
    Remove = 0x15,
    Unmap = 0x16,
}

/// <summary>One uffd_msg: <see cref="A"/>, <see cref="B"/>, <see cref="C"/> are the three u64 words of its union.</summary>
public readonly record struct UserfaultfdMessage(UserfaultfdEvent Event, ulong A, ulong B, ulong C)
{
    public const int Size = 32;

    /// <summary>PAGEFAULT: the faulting address (not page aligned).</summary>
    public ulong FaultAddress => B;

    /// <summary>FORK: the new userfaultfd's number in this process.</summary>
    public int ForkFd => (int)(uint)A;

    /// <summary>REMAP: from, to, length.</summary>
    public (ulong From, ulong To, ulong Length) Remap => (A, B, C);

    /// <summary>REMOVE / UNMAP: [start, end).</summary>
    public (ulong Start, ulong End) Range => (A, B);

    public static UserfaultfdMessage Parse(ReadOnlySpan<byte> m) => new((UserfaultfdEvent)m[0],
        BinaryPrimitives.ReadUInt64LittleEndian(m[8..]), BinaryPrimitives.ReadUInt64LittleEndian(m[16..]), BinaryPrimitives.ReadUInt64LittleEndian(m[24..]));
}

public sealed partial class Userfaultfd
{
    /// <summary>UFFD_FEATURE_EVENT_FORK | _EVENT_REMAP | _EVENT_REMOVE | _EVENT_UNMAP: a handler that follows the
    /// task through fork, mremap, MADV_DONTNEED and munmap (EVENT_FORK needs CAP_SYS_PTRACE in the caller of UFFDIO_API).</summary>
    public const ulong NonCooperativeFeatures = (1UL << 1) | (1UL << 2) | (1UL << 3) | (1UL << 6);

    private const ulong UFFDIO_WAKE = 0x8010AA02, UFFDIO_ZEROPAGE = 0xC020AA04;

    [StructLayout(LayoutKind.Sequential)]
    private struct UffdioZeropage
    {
        public ulong Start, Length, Mode;
        public long Zeropage;
    }

    /// <summary>The descriptor (to pass on with SCM_RIGHTS or to poll); still owned by this object.</summary>
    public FileDescriptor Handle => _fd;

    /// <summary>Reads the queued messages into <paramref name="messages"/> without waiting (the fd is made
    /// non-blocking); returns how many, 0 when none is queued.</summary>
    public int ReadMessages(Span<UserfaultfdMessage> messages)
    {
        if ((_fd.StatusFlags & OpenFlags.NonBlock) == 0) _fd.StatusFlags |= OpenFlags.NonBlock;
        Span<byte> buffer = stackalloc byte[UserfaultfdMessage.Size * Math.Min(messages.Length, 64)];
        int n;
        try
        {
            n = _fd.Read(buffer);
        }
        catch (KernelException e) when (e.Errno.Value == Errno.EAGAIN)
        {
            return 0;
        }
        int count = n / UserfaultfdMessage.Size;
        for (int i = 0; i < count; i++) messages[i] = UserfaultfdMessage.Parse(buffer.Slice(i * UserfaultfdMessage.Size, UserfaultfdMessage.Size));
        return count;
    }

    /// <summary>
    /// UFFDIO_COPY of <paramref name="source"/> to <paramref name="destination"/>, waking whoever waits there.
    /// Returns the bytes copied (from the start) and the errno that stopped the copy short (0 when whole).
    /// </summary>
    public unsafe (long Copied, Errno Error) TryCopy(ulong destination, ReadOnlySpan<byte> source)
    {
        fixed (byte* p = source)
        {
            long done = 0, length = source.Length;
            while (done < length)
            {
                var c = new UffdioCopy { Destination = destination + (ulong)done, Source = (ulong)p + (ulong)done, Length = (ulong)(length - done) };
                using var fd = _fd.Use();
                if (Interop.Libc.ioctl(fd.Fd, UFFDIO_COPY, (nint)(&c)) == 0) return (length, new Errno(0));
                var errno = Errno.Last;
                if (c.Copied > 0)
                {
                    done += c.Copied;
                    continue;
                }
                if (errno.Value == Errno.EINTR) continue;
                return (done, errno);
            }
            return (done, new Errno(0));
        }
    }

    /// <summary>UFFDIO_ZEROPAGE over [start, start + length) (waking waiters); the errno, 0 on success.</summary>
    public unsafe Errno TryZeroPage(ulong start, ulong length)
    {
        var z = new UffdioZeropage { Start = start, Length = length };
        using var fd = _fd.Use();
        return Interop.Libc.ioctl(fd.Fd, UFFDIO_ZEROPAGE, (nint)(&z)) < 0 ? Errno.Last : new Errno(0);
    }

    /// <summary>UFFDIO_WAKE over [start, start + length): threads waiting for pages that are present now retry.</summary>
    public unsafe Errno TryWake(ulong start, ulong length)
    {
        var r = new UffdioRange { Start = start, Length = length };
        using var fd = _fd.Use();
        return Interop.Libc.ioctl(fd.Fd, UFFDIO_WAKE, (nint)(&r)) < 0 ? Errno.Last : new Errno(0);
    }
}
