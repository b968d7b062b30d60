// process_vm_readv(2) / process_vm_writev(2) (Linux 3.2), one segment each, for the injector's scratch pages
// and for reading the task's [vdso]. Declared here, privately, until the memory interop family lands.
using System.Runtime.InteropServices;
using Crest.Kernel.Interop;

namespace Crest.Kernel.Injection;

internal static unsafe partial class RemoteScratch
{
    [StructLayout(LayoutKind.Sequential)]
    private struct scratch_iovec
    {
        public void* iov_base;
        public nuint iov_len;
    }

    /// <summary>process_vm_readv(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    private static partial nint process_vm_readv(int pid, scratch_iovec* local_iov, ulong liovcnt, scratch_iovec* remote_iov, ulong riovcnt, ulong flags);

    /// <summary>process_vm_writev(2).</summary>
    [LibraryImport("libc", SetLastError = true)]
    private static partial nint process_vm_writev(int pid, scratch_iovec* local_iov, ulong liovcnt, scratch_iovec* remote_iov, ulong riovcnt, ulong flags);

    /// <summary>Read exactly buffer.Length bytes at <paramref name="address"/> in task <paramref name="pid"/>.</summary>
    internal static void Read(int pid, ulong address, Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            var local = new scratch_iovec { iov_base = p, iov_len = (nuint)buffer.Length };
            var remote = new scratch_iovec { iov_base = (void*)address, iov_len = (nuint)buffer.Length };
            nint n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
            if (n < 0) throw new KernelException("process_vm_readv", pid, Errno.Last, $"0x{address:x}+{buffer.Length}");
            if (n != buffer.Length) throw new KernelException("process_vm_readv", pid, new Errno(Errno.EFAULT), $"short read {n} of {buffer.Length} at 0x{address:x}");
        }
    }

    /// <summary>Write all of <paramref name="data"/> at <paramref name="address"/> in task <paramref name="pid"/>.</summary>
    internal static void Write(int pid, ulong address, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            var local = new scratch_iovec { iov_base = p, iov_len = (nuint)data.Length };
            var remote = new scratch_iovec { iov_base = (void*)address, iov_len = (nuint)data.Length };
            nint n = process_vm_writev(pid, &local, 1, &remote, 1, 0);
            if (n < 0) throw new KernelException("process_vm_writev", pid, Errno.Last, $"0x{address:x}+{data.Length}");
            if (n != data.Length) throw new KernelException("process_vm_writev", pid, new Errno(Errno.EFAULT), $"short write {n} of {data.Length} at 0x{address:x}");
        }
    }
}
