// The kernel structs must have the kernel's sizes and field offsets, or every call using them
// reads garbage. Sizes from the x86_64 UAPI headers.
using System.Runtime.CompilerServices;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Interop;

namespace Crest.Kernel.Tests.Interop;

public class StructLayoutTests
{
    [Fact]
    public unsafe void KernelStructsHaveTheKernelsSizes()
    {
        Assert.Equal(144, sizeof(stat));
        Assert.Equal(16, sizeof(iovec));
        Assert.Equal(88, sizeof(clone_args));
        Assert.Equal(Libc.CLONE_ARGS_SIZE_VER2, sizeof(clone_args));
        Assert.Equal(104, sizeof(prctl_mm_map));
        Assert.Equal(16, sizeof(rlimit64));
        Assert.Equal(56, sizeof(msghdr));
        Assert.Equal(16, sizeof(cmsghdr));
        Assert.Equal(16, sizeof(nlmsghdr));
        Assert.Equal(12, sizeof(sockaddr_nl));
        Assert.Equal(24, sizeof(unix_diag_req));
        Assert.Equal(16, sizeof(unix_diag_msg));
        Assert.Equal(48, sizeof(inet_diag_sockid));
        Assert.Equal(56, sizeof(inet_diag_req_v2));
        Assert.Equal(72, sizeof(inet_diag_msg));
    }

    [Fact]
    public unsafe void FieldOffsetsMatchTheKernel()
    {
        stat st = default;
        Assert.Equal(48, Offset(ref st, ref st.st_size));
        Assert.Equal(72, Offset(ref st, ref st.st_atime));
        clone_args c = default;
        Assert.Equal(64, Offset(ref c, ref c.set_tid));
        Assert.Equal(80, Offset(ref c, ref c.cgroup));
        msghdr m = default;
        Assert.Equal(40, Offset(ref m, ref m.msg_controllen));
        inet_diag_msg d = default;
        Assert.Equal(68, Offset(ref d, ref d.idiag_inode));
    }

    private static long Offset<TStruct, TField>(ref TStruct s, ref TField field) =>
        Unsafe.ByteOffset(ref Unsafe.As<TStruct, byte>(ref s), ref Unsafe.As<TField, byte>(ref field));
}
