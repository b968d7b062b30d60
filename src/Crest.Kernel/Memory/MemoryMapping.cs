// A mapping in Crest's own address space: mmap(2), mprotect(2), madvise(2), mremap(2) (Linux 2.0;
// MREMAP_DONTUNMAP 5.7), munmap(2). The object owns the range [Address, Address + Length) and
// unmaps it once, on Dispose; Remap moves or resizes it and the object follows.
using System.Runtime.InteropServices;
using Crest.Kernel.Files;
using Crest.Kernel.Interop;

namespace Crest.Kernel.Memory;

public sealed class MemoryMapping : SafeHandle
{
    private ulong _length;

    private MemoryMapping(nint address, ulong length) : base(0, ownsHandle: true)
    {
        SetHandle(address);
        _length = length;
    }

    public override bool IsInvalid => handle == 0 || handle == Libc.MAP_FAILED;

    /// <summary>Start of the mapping.</summary>
    public ulong Address
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsClosed, this);
            return (ulong)handle;
        }
    }

    /// <summary>Length in bytes as requested (the kernel rounds the mapping up to whole pages).</summary>
    public ulong Length => _length;

    public static int PageSize => Environment.SystemPageSize;

    /// <summary>mmap(2) of private anonymous memory.</summary>
    public static MemoryMapping Anonymous(ulong length, MemoryProtection protection = MemoryProtection.Read | MemoryProtection.Write,
        MapFlags flags = MapFlags.Private) =>
        Map(0, length, protection, flags | MapFlags.Anonymous, null, 0);

    /// <summary>mmap(2) of a file (or memfd) at offset.</summary>
    public static MemoryMapping MapFile(FileDescriptor file, long offset, ulong length, MemoryProtection protection, MapFlags flags) =>
        Map(0, length, protection, flags, file, offset);

    /// <summary>mmap(2) in full: address is a hint, or the place with MAP_FIXED / MAP_FIXED_NOREPLACE.</summary>
    public static MemoryMapping Map(ulong address, ulong length, MemoryProtection protection, MapFlags flags,
        FileDescriptor? file, long offset)
    {
        ArgumentOutOfRangeException.ThrowIfZero(length);
        bool added = false;
        try
        {
            int fd = -1;
            if (file is not null)
            {
                file.DangerousAddRef(ref added);
                fd = file.Fd;
            }
            nint p = Libc.mmap((nint)address, (nuint)length, (int)protection, (int)flags, fd, offset);
            if (p == Libc.MAP_FAILED)
                throw new KernelException("mmap", Errno.Last,
                    $"{length} bytes at 0x{address:x}, prot {protection}, flags {flags}" + (file is null ? "" : $", fd {fd} offset {offset}"));
            return new MemoryMapping(p, length);
        }
        finally
        {
            if (added) file!.DangerousRelease();
        }
    }

    /// <summary>The mapped bytes. Touching a page mapped without Read (or without Write, when
    /// writing) faults, as in C.</summary>
    public unsafe Span<byte> Span
    {
        get
        {
            if (_length > int.MaxValue)
                throw new InvalidOperationException($"mapping of {_length} bytes is too large for one span; use Slice");
            return new Span<byte>((void*)Address, (int)_length);
        }
    }

    /// <summary>A span over part of the mapping.</summary>
    public unsafe Span<byte> Slice(ulong offset, int length)
    {
        if (offset > _length || (ulong)length > _length - offset)
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, +{length}) is outside the {_length}-byte mapping");
        return new Span<byte>((void*)(Address + offset), length);
    }

    /// <summary>mprotect(2) of the whole mapping.</summary>
    public void Protect(MemoryProtection protection) => Protect(0, _length, protection);

    /// <summary>mprotect(2) of [offset, offset + length); offset must be page aligned.</summary>
    public void Protect(ulong offset, ulong length, MemoryProtection protection)
    {
        CheckRange(offset, length);
        if (Libc.mprotect((nint)(Address + offset), (nuint)length, (int)protection) != 0)
            throw new KernelException("mprotect", Errno.Last, $"0x{Address + offset:x}+{length} to {protection}");
    }

    /// <summary>madvise(2) of the whole mapping.</summary>
    public void Advise(MemoryAdvice advice) => Advise(0, _length, advice);

    /// <summary>madvise(2) of [offset, offset + length); offset must be page aligned.</summary>
    public void Advise(ulong offset, ulong length, MemoryAdvice advice)
    {
        CheckRange(offset, length);
        if (Libc.madvise((nint)(Address + offset), (nuint)length, (int)advice) != 0)
            throw new KernelException("madvise", Errno.Last, $"0x{Address + offset:x}+{length} {advice}");
    }

    /// <summary>mremap(2) with MREMAP_MAYMOVE: grows or shrinks the mapping, possibly moving it.</summary>
    public void Resize(ulong newLength) => Remap(newLength, Libc.MREMAP_MAYMOVE, 0);

    /// <summary>mremap(2) with MREMAP_MAYMOVE | MREMAP_FIXED: moves the mapping to newAddress,
    /// replacing whatever was mapped there.</summary>
    public void MoveTo(ulong newAddress, ulong newLength) =>
        Remap(newLength, Libc.MREMAP_MAYMOVE | Libc.MREMAP_FIXED, newAddress);

    private void Remap(ulong newLength, int flags, ulong newAddress)
    {
        ArgumentOutOfRangeException.ThrowIfZero(newLength);
        ulong old = Address;
        nint p = Libc.mremap((nint)old, (nuint)_length, (nuint)newLength, flags, (nint)newAddress);
        if (p == Libc.MAP_FAILED)
            throw new KernelException("mremap", Errno.Last, $"0x{old:x}+{_length} to {newLength} bytes" +
                (newAddress != 0 ? $" at 0x{newAddress:x}" : ""));
        SetHandle(p);
        _length = newLength;
    }

    private void CheckRange(ulong offset, ulong length)
    {
        if (offset > _length || length > _length - offset)
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, +{length}) is outside the {_length}-byte mapping");
    }

    protected override bool ReleaseHandle() => Libc.munmap(handle, (nuint)_length) == 0;

    public override string ToString() => IsClosed ? "mapping (unmapped)" : $"mapping 0x{(ulong)handle:x}+{_length}";
}
