// A userfaultfd (Linux 4.3) held by Crest for another task's address space: the fd is created inside the
// task (an injected userfaultfd(2), so its context is bound to the task's mm) and taken over with
// pidfd_getfd(2). The ioctls act on the context's mm whoever calls them, and UFFDIO_COPY reads its
// source from the caller's memory: Crest fills the task's missing pages straight from its own mapping
// of a pages image. Unlike a write into an untouched page (fault, zero the page, copy), UFFDIO_COPY
// allocates the page and copies into it without zeroing it first.
//
// Kernel contract (fs/userfaultfd.c, mm/userfaultfd.c):
//  - UFFDIO_API must come first, once per fd; UFFDIO_REGISTER_MODE_MISSING works on anonymous private
//    and shmem VMAs only (not on private file mappings), over whole existing VMAs or parts (which splits);
//  - UFFDIO_COPY fails with EEXIST on a page that is already present; a partial copy returns EAGAIN with
//    the bytes done in uffdio_copy.copy (or -EAGAIN there when the mm was changing: retry);
//  - closing the last reference unregisters every range.
// Dirty-page tracking (DirtyTracking.cs in the engine) uses the same fd kind in write-protect async mode
// (UFFD_FEATURE_WP_ASYNC, Linux 6.7): a write to a protected page is resolved by the kernel at once,
// which clears the page's uffd-wp bit, so nobody has to read the fd; with WP_ASYNC any VMA kind may be
// registered for UFFDIO_REGISTER_MODE_WP.
// Lazy restore (post-copy, Userfaultfd.Events.cs): the non-cooperative events (UFFD_FEATURE_EVENT_FORK, _REMAP,
// _REMOVE: Linux 4.11; _UNMAP: 4.11) are read as 32-byte struct uffd_msg; while an event is queued the kernel
// refuses UFFDIO_COPY/ZEROPAGE with EAGAIN (ctx->mmap_changing), so the handler must read events first.
using System.Runtime.InteropServices;
using Crest.Kernel.Files;

namespace Crest.Kernel.Memory;

public sealed partial class Userfaultfd : IDisposable
{
    private const ulong UFFD_API = 0xAA;
    // include/uapi/linux/userfaultfd.h: _IOWR/_IOR(0xAA, nr, struct).
    private const ulong UFFDIO_API = 0xC018AA3F, UFFDIO_REGISTER = 0xC020AA00, UFFDIO_UNREGISTER = 0x8010AA01,
        UFFDIO_COPY = 0xC028AA03, UFFDIO_WRITEPROTECT = 0xC018AA06;
    private const ulong UFFDIO_REGISTER_MODE_MISSING = 1, UFFDIO_REGISTER_MODE_WP = 2, UFFDIO_COPY_MODE_DONTWAKE = 1;

    /// <summary>UFFD_FEATURE_WP_UNPOPULATED (6.4) | UFFD_FEATURE_WP_ASYNC (6.7): write-protect dirty tracking.</summary>
    public const ulong WriteTrackingFeatures = (1UL << 13) | (1UL << 15);

    [StructLayout(LayoutKind.Sequential)]
    private struct UffdioApi
    {
        public ulong Api, Features, Ioctls;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct UffdioRegister
    {
        public ulong Start, Length, Mode, Ioctls;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct UffdioRange
    {
        public ulong Start, Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct UffdioWriteprotect
    {
        public UffdioRange Range;
        public ulong Mode;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct UffdioCopy
    {
        public ulong Destination, Source, Length, Mode;
        public long Copied;
    }

    private readonly FileDescriptor _fd;

    private Userfaultfd(FileDescriptor fd, int pid)
    {
        _fd = fd;
        Pid = pid;
    }

    /// <summary>The task whose address space the fd serves (for messages).</summary>
    public int Pid { get; }

    /// <summary>
    /// Takes ownership of <paramref name="fd"/>, a fresh userfaultfd created in task <paramref name="pid"/>,
    /// and runs the UFFDIO_API handshake (no optional features).
    /// </summary>
    public static Userfaultfd Adopt(FileDescriptor fd, int pid) => Adopt(fd, pid, 0);

    /// <summary>As <see cref="Adopt(FileDescriptor, int)"/>, asking for <paramref name="features"/> in the handshake.</summary>
    public static unsafe Userfaultfd Adopt(FileDescriptor fd, int pid, ulong features)
    {
        var uffd = new Userfaultfd(fd, pid);
        try
        {
            var api = new UffdioApi { Api = UFFD_API, Features = features };
            uffd.Ioctl(UFFDIO_API, &api, "UFFDIO_API");
            return uffd;
        }
        catch
        {
            uffd.Dispose();
            throw;
        }
    }

    /// <summary>Registers [start, start + length) of the task for missing-page handling.</summary>
    public unsafe void RegisterMissing(ulong start, ulong length)
    {
        var r = new UffdioRegister { Start = start, Length = length, Mode = UFFDIO_REGISTER_MODE_MISSING };
        Ioctl(UFFDIO_REGISTER, &r, $"UFFDIO_REGISTER 0x{start:x}+{length}");
    }

    /// <summary>Takes ownership of <paramref name="fd"/>, a userfaultfd whose handshake was made before (by an earlier Crest).</summary>
    public static Userfaultfd Wrap(FileDescriptor fd, int pid) => new(fd, pid);

    /// <summary>
    /// Registers [start, start + length) for write-protect tracking; the errno when the kernel refuses this
    /// range (EBUSY: another userfaultfd has it; EINVAL: a VMA kind it cannot track), 0 on success.
    /// </summary>
    public unsafe Errno TryRegisterWriteProtect(ulong start, ulong length)
    {
        var r = new UffdioRegister { Start = start, Length = length, Mode = UFFDIO_REGISTER_MODE_WP };
        using var fd = _fd.Use();
        return Interop.Libc.ioctl(fd.Fd, UFFDIO_REGISTER, (nint)(&r)) < 0 ? Errno.Last : new Errno(0);
    }

    /// <summary>
    /// Clears the write protection of [start, start + length) (UFFDIO_WRITEPROTECT without MODE_WP, Linux 5.7): in
    /// async mode the pages count as written again, as if the task had written them.
    /// </summary>
    public unsafe void Unprotect(ulong start, ulong length)
    {
        var w = new UffdioWriteprotect { Range = new UffdioRange { Start = start, Length = length }, Mode = 0 };
        Ioctl(UFFDIO_WRITEPROTECT, &w, $"UFFDIO_WRITEPROTECT 0x{start:x}+{length}");
    }

    /// <summary>Ends the registration of [start, start + length).</summary>
    public unsafe void Unregister(ulong start, ulong length)
    {
        var r = new UffdioRange { Start = start, Length = length };
        Ioctl(UFFDIO_UNREGISTER, &r, $"UFFDIO_UNREGISTER 0x{start:x}+{length}");
    }

    /// <summary>
    /// Fills the missing pages [destination, destination + source.Length) of the task with
    /// <paramref name="source"/> (whole pages, in Crest's memory). Nobody waits on these pages, so no wake-up.
    /// </summary>
    public unsafe void Copy(ulong destination, ReadOnlySpan<byte> source)
    {
        fixed (byte* p = source)
        {
            ulong done = 0, length = (ulong)source.Length;
            while (done < length)
            {
                var c = new UffdioCopy { Destination = destination + done, Source = (ulong)p + done, Length = length - done, Mode = UFFDIO_COPY_MODE_DONTWAKE };
                using var fd = _fd.Use();
                int rc = Interop.Libc.ioctl(fd.Fd, UFFDIO_COPY, (nint)(&c));
                if (rc == 0) return;
                var errno = Errno.Last;
                if (errno.Value == Errno.EAGAIN && c.Copied > 0)
                {
                    done += (ulong)c.Copied;
                    continue;
                }
                if (errno.Value is Errno.EAGAIN or Errno.EINTR) continue;
                throw new KernelException("ioctl(UFFDIO_COPY)", Pid, errno, $"0x{destination + done:x}+{length - done}");
            }
        }
    }

    private unsafe void Ioctl<T>(ulong request, T* argument, string what) where T : unmanaged
    {
        using var fd = _fd.Use();
        if (Interop.Libc.ioctl(fd.Fd, request, (nint)argument) < 0) throw new KernelException($"ioctl({what})", Pid, Errno.Last);
    }

    public void Dispose() => _fd.Dispose();

    public override string ToString() => $"userfaultfd {_fd} for {Pid}";
}
