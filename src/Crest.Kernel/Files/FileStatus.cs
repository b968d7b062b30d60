// What fstat(2) reports about an open file, in managed form. Device numbers are the kernel's
// new_encode_dev() form as stat returns them; Major/Minor split them as glibc's gnu_dev_major/minor.
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Interop;

namespace Crest.Kernel.Files;

public readonly record struct FileStatus(
    ulong Device, ulong Inode, uint Mode, ulong LinkCount, uint Uid, uint Gid, ulong RDevice, long Size,
    long BlockSize, long Blocks, long AccessTimeSeconds, long AccessTimeNanoseconds, long ModifyTimeSeconds,
    long ModifyTimeNanoseconds, long ChangeTimeSeconds, long ChangeTimeNanoseconds)
{
    internal static FileStatus From(in stat st) => new(
        st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_rdev, st.st_size,
        st.st_blksize, st.st_blocks, st.st_atime, st.st_atime_nsec, st.st_mtime, st.st_mtime_nsec,
        st.st_ctime, st.st_ctime_nsec);

    /// <summary>The S_IFMT bits of Mode.</summary>
    public uint FileType => Mode & Libc.S_IFMT;

    public bool IsRegularFile => FileType == Libc.S_IFREG;
    public bool IsDirectory => FileType == Libc.S_IFDIR;
    public bool IsFifo => FileType == Libc.S_IFIFO;
    public bool IsSocket => FileType == Libc.S_IFSOCK;
    public bool IsCharacterDevice => FileType == Libc.S_IFCHR;
    public bool IsSymbolicLink => FileType == Libc.S_IFLNK;

    /// <summary>The permission bits (including setuid/setgid/sticky).</summary>
    public uint Permissions => Mode & 0xFFF;

    public static uint Major(ulong dev) => (uint)(((dev >> 8) & 0xfff) | ((dev >> 32) & ~0xfffUL));
    public static uint Minor(ulong dev) => (uint)((dev & 0xff) | ((dev >> 12) & ~0xffUL));
}
