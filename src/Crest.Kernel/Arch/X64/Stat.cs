// struct stat as the x86_64 kernel fills it (arch/x86/include/uapi/asm/stat.h); glibc's layout on
// x86_64 is the same 144 bytes.
using System.Runtime.InteropServices;

namespace Crest.Kernel.Arch.X64;

#pragma warning disable CS8981 // kernel struct names are lower case, as in C
[StructLayout(LayoutKind.Sequential)]
internal struct stat
{
    public ulong st_dev;
    public ulong st_ino;
    public ulong st_nlink;
    public uint st_mode;
    public uint st_uid;
    public uint st_gid;
    public int __pad0;
    public ulong st_rdev;
    public long st_size;
    public long st_blksize;
    public long st_blocks;
    public long st_atime;
    public long st_atime_nsec;
    public long st_mtime;
    public long st_mtime_nsec;
    public long st_ctime;
    public long st_ctime_nsec;
    public long __unused0, __unused1, __unused2;
}
