// Is the file a path names now the one the image describes? Refused, naming the path and what changed, when
// its size, file type or ELF build id differ, or when it is on the same device as at dump but has another
// inode (the path was replaced or renamed over: another file) -- except on overlayfs, where a copy-up to the upper
// layer may change the inode: same size and mtime there pass (IsCopyUp). On another device (another machine or
// filesystem) the inode means nothing: size and build id decide, and the difference is logged at -v4.
using Crest.Diagnostics;
using Crest.Engine.Files;
using Crest.Images.Protos;
using Crest.Kernel.Files;

namespace Crest.Engine.Restore;

internal static class RestoreFileIdentity
{
    private const long OVERLAYFS_SUPER_MAGIC = 0x794c7630;

    /// <summary>
    /// Whether a file of status <paramref name="now"/>, at the path of <paramref name="file"/> and on the same device
    /// but with another inode, is the dumped file copied up to the upper layer of an overlayfs since. overlayfs keeps
    /// st_ino across a copy-up only when it can record the lower file's origin (a file handle of the lower layer,
    /// an xattr on the upper one: Documentation/filesystems/overlayfs.rst, "Inode properties"); without it the
    /// copy shows the upper file's inode. A copy-up keeps the size and the mtime, which a replaced file rarely does.
    /// </summary>
    public static bool IsCopyUp(RegFileEntry file, FileStatus now, bool onOverlayfs) =>
        onOverlayfs && file.HasSize && (ulong)now.Size == file.Size && file.HasCrestMtimeNs
        && (ulong)(now.ModifyTimeSeconds * 1_000_000_000L + now.ModifyTimeNanoseconds) == file.CrestMtimeNs;

    /// <summary>Throw a RestoreException starting with <paramref name="what"/> unless <paramref name="fd"/> is the file <paramref name="file"/> describes.</summary>
    public static void Check(RegFileEntry file, FileDescriptor fd, string what)
    {
        var status = fd.Stat();
        if (file.HasSize && (ulong)status.Size != file.Size)
            throw new RestoreException($"{what} changed since the dump: size {status.Size}, image says {file.Size}");
        if (file.HasMode && file.Mode != 0 && (status.Mode & 0xf000) != (file.Mode & 0xf000))
            throw new RestoreException($"{what} changed since the dump: mode 0{Convert.ToString(status.Mode, 8)}, image says 0{Convert.ToString(file.Mode, 8)}");
        if (file.HasCrestDev && file.HasCrestIno)
        {
            if (status.Device == file.CrestDev && status.Inode != file.CrestIno)
            {
                if (!IsCopyUp(file, status, fd.FileSystemType() == OVERLAYFS_SUPER_MAGIC))
                    throw new RestoreException($"{what} changed since the dump: it is another file (inode {status.Inode}, image says {file.CrestIno} on the same device)");
                Log.Info($"restore: {file.Name} has inode {status.Inode} on the overlayfs, {file.CrestIno} at dump, with the same size and mtime: taken as copied up since");
            }
            if (status.Device != file.CrestDev)
                Log.Debug($"restore: {file.Name} is on device 0x{status.Device:x}, at dump 0x{file.CrestDev:x}: checked by size and build id only");
        }
        if (file.BuildId.Count > 0 && status.IsRegularFile)
        {
            var now = ElfBuildId.Read(fd, status.Size);
            if (now is null || !now.AsSpan().SequenceEqual(file.BuildId.ToArray()))
                throw new RestoreException($"{what} changed since the dump: build id {(now is null ? "none" : ElfBuildId.Format(now))}, image says {ElfBuildId.Format(file.BuildId)}");
        }
    }
}
