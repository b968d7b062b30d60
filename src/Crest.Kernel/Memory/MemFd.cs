// memfd_create(2) (Linux 3.17; MFD_NOEXEC_SEAL/MFD_EXEC 6.3): anonymous files for the restore stub
// image and for shared anonymous memory.
using Crest.Kernel.Files;
using Crest.Kernel.Interop;

namespace Crest.Kernel.Memory;

[Flags]
public enum MemFdFlags : uint
{
    None = 0,
    AllowSealing = 0x2,
    HugeTlb = 0x4,
    NoExecSeal = 0x8,
    Exec = 0x10,
}

public static class MemFd
{
    /// <summary>memfd_create(2) with MFD_CLOEXEC. name shows in /proc/PID/fd as "/memfd:NAME" (at most 249 bytes).</summary>
    public static unsafe FileDescriptor Create(string name, MemFdFlags flags = MemFdFlags.None)
    {
        int size = NullTerminatedUtf8.BufferSize(name);
        Span<byte> cname = NullTerminatedUtf8.Encode(name, size <= 1024 ? stackalloc byte[size] : new byte[size]);
        int fd;
        fixed (byte* p = cname) fd = Libc.memfd_create(p, (uint)flags | Libc.MFD_CLOEXEC);
        if (fd < 0) throw new KernelException("memfd_create", Errno.Last, name);
        return FileDescriptor.Own(fd);
    }
}
