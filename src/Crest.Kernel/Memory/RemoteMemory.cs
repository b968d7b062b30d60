// Another task's memory, read and written from Crest with process_vm_readv(2) /
// process_vm_writev(2) (Linux 3.2). The caller needs PTRACE_MODE_ATTACH_REALCREDS over the task
// (root, or same creds and not undumpable); the task does not have to be stopped.
//
// Kernel contract this file relies on (mm/process_vm_access.c):
//  - at most IOV_MAX (1024) iovecs per side per call, and at most MAX_RW_COUNT bytes per call
//    (longer vectors are silently cut, which would look like a short count);
//  - a remote page that cannot be pinned ends the transfer: the call returns the bytes copied
//    before it (possibly in the middle of an iovec, at a page boundary), or -1 with errno
//    (EFAULT, ENOMEM, ESRCH, EPERM) when nothing was copied.
// So the loop below sends batches of at most 1024 ranges / MAX_RW_COUNT bytes, and after a short
// count restarts exactly where the kernel stopped; a fault there fails that call at its first
// byte, which gives the errno and the address.
using Crest.Kernel.Interop;

namespace Crest.Kernel.Memory;

public static class RemoteMemory
{
    /// <summary>Reads buffer.Length bytes at address of pid; throws RemoteMemoryException if any is unreadable.</summary>
    public static void Read(int pid, ulong address, Span<byte> buffer) =>
        ReadVectored(pid, [new RemoteRange(address, (ulong)buffer.Length)], buffer);

    /// <summary>Writes data at address of pid; throws RemoteMemoryException if any byte is unwritable.</summary>
    public static void Write(int pid, ulong address, ReadOnlySpan<byte> data) =>
        WriteVectored(pid, [new RemoteRange(address, (ulong)data.Length)], data);

    /// <summary>Reads the ranges, in order, packed back to back into buffer (whose length must be
    /// the sum of their lengths). Throws RemoteMemoryException at the first unreadable byte.</summary>
    public static void ReadVectored(int pid, ReadOnlySpan<RemoteRange> ranges, Span<byte> buffer)
    {
        RemoteTransfer t = TryReadVectored(pid, ranges, buffer);
        if (!t.Complete) throw new RemoteMemoryException("process_vm_readv", pid, t, (ulong)buffer.Length);
    }

    /// <summary>Writes data, packed back to back, into the ranges in order. Throws
    /// RemoteMemoryException at the first unwritable byte.</summary>
    public static void WriteVectored(int pid, ReadOnlySpan<RemoteRange> ranges, ReadOnlySpan<byte> data)
    {
        RemoteTransfer t = TryWriteVectored(pid, ranges, data);
        if (!t.Complete) throw new RemoteMemoryException("process_vm_writev", pid, t, (ulong)data.Length);
    }

    /// <summary>Like ReadVectored, but a fault ends the transfer without throwing: the result says how
    /// many bytes arrived and where it stopped. Argument errors still throw.</summary>
    public static RemoteTransfer TryReadVectored(int pid, ReadOnlySpan<RemoteRange> ranges, Span<byte> buffer) =>
        TryReadVectored(pid, ranges, buffer, Libc.MAX_RW_COUNT);

    /// <summary>TryReadVectored with a smaller per-call byte limit, so tests can see calls split.</summary>
    internal static unsafe RemoteTransfer TryReadVectored(int pid, ReadOnlySpan<RemoteRange> ranges, Span<byte> buffer, long maxBytesPerCall)
    {
        CheckLengths(ranges, (ulong)buffer.Length);
        fixed (byte* local = buffer) return Transfer(write: false, pid, ranges, local, (ulong)maxBytesPerCall);
    }

    /// <summary>Like WriteVectored, but a fault ends the transfer without throwing.</summary>
    public static unsafe RemoteTransfer TryWriteVectored(int pid, ReadOnlySpan<RemoteRange> ranges, ReadOnlySpan<byte> data)
    {
        CheckLengths(ranges, (ulong)data.Length);
        fixed (byte* local = data) return Transfer(write: true, pid, ranges, local, Libc.MAX_RW_COUNT);
    }

    private static void CheckLengths(ReadOnlySpan<RemoteRange> ranges, ulong localLength)
    {
        ulong total = 0;
        foreach (RemoteRange r in ranges)
        {
            if (r.Address + r.Length < r.Address)
                throw new ArgumentException($"remote range {r.Address:x}+{r.Length} wraps around the address space", nameof(ranges));
            total += r.Length;
        }
        if (total != localLength)
            throw new ArgumentException($"the ranges cover {total} bytes but the local buffer has {localLength}", nameof(ranges));
    }

    private static unsafe RemoteTransfer Transfer(bool write, int pid, ReadOnlySpan<RemoteRange> ranges, byte* local, ulong maxBytesPerCall)
    {
        iovec* remote = stackalloc iovec[Libc.IOV_MAX];
        ulong done = 0;
        int index = 0;       // current range
        ulong within = 0;    // bytes of ranges[index] already moved
        while (true)
        {
            while (index < ranges.Length && within == ranges[index].Length)
            {
                index++;
                within = 0;
            }
            if (index == ranges.Length)
                return new RemoteTransfer(done, true, 0, default);

            // Build one batch from the current position.
            int count = 0;
            ulong batch = 0;
            int i = index;
            ulong offset = within;
            while (i < ranges.Length && count < Libc.IOV_MAX && batch < maxBytesPerCall)
            {
                ulong len = Math.Min(ranges[i].Length - offset, maxBytesPerCall - batch);
                if (len > 0)
                {
                    remote[count].iov_base = (nint)(ranges[i].Address + offset);
                    remote[count].iov_len = (nuint)len;
                    count++;
                    batch += len;
                }
                if (len < ranges[i].Length - offset) break;   // the rest of this range goes in the next call
                i++;
                offset = 0;
            }

            var localIov = new iovec { iov_base = (nint)(local + done), iov_len = (nuint)batch };
            nint n = write
                ? Libc.process_vm_writev(pid, &localIov, 1, remote, (ulong)count, 0)
                : Libc.process_vm_readv(pid, &localIov, 1, remote, (ulong)count, 0);
            if (n <= 0)
            {
                // Nothing moved: the byte at the current position is the fault (n == 0 for a
                // non-empty batch does not happen; report it as EFAULT rather than loop).
                Errno error = n < 0 ? Errno.Last : new Errno(Errno.EFAULT);
                return new RemoteTransfer(done, false, ranges[index].Address + within, error);
            }

            // Advance by n bytes through the ranges.
            done += (ulong)n;
            ulong left = (ulong)n;
            while (left > 0)
            {
                ulong room = ranges[index].Length - within;
                if (left < room)
                {
                    within += left;
                    left = 0;
                }
                else
                {
                    left -= room;
                    index++;
                    within = 0;
                }
            }
        }
    }
}
