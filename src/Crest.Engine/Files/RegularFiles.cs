// Regular files, directories and the harmless character devices (/dev/null, /dev/zero & co.), as CRIU's
// REG file entries: path, open flags, position, size and mode. A file is only accepted when the path still
// names the very object the task holds (same device and inode, by fstat of /proc/PID/fd/N or
// /proc/PID/map_files against stat of the path); otherwise restore would open something else, so the dump
// refuses, naming the fd or the mapping (deleted and replaced files need ghost/remap images, not done yet).
// Each entry also records the file's identity for the restore to check: CRIU's build_id for ELF files and
// Crest's crest_dev/crest_ino/crest_mtime_ns extension fields.
using Crest.Diagnostics;
using Crest.Engine.Dump;
using Crest.Images.Protos;
using Crest.Kernel;
using Crest.Kernel.Files;
using Crest.Kernel.Proc;

namespace Crest.Engine.Files;

internal static class RegularFiles
{
    /// <summary>Character devices that hold no state, by (major, minor): null, zero, full, random, urandom.</summary>
    private const int ESTALE = 116;

    private static readonly HashSet<(uint, uint)> StatelessDevices = [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9)];

    /// <summary>The status of whatever <paramref name="path"/> names (following a /proc magic link), or null if it is gone.</summary>
    public static FileStatus? TryStat(string path)
    {
        try
        {
            using var fd = FileDescriptor.Open(path, OpenFlags.Path | OpenFlags.CloseOnExec);
            return fd.Stat();
        }
        catch (KernelException e) when (e.Errno.Value is Errno.ENOENT or Errno.ENOTDIR or ESTALE)
        {
            return null;
        }
    }

    /// <summary>
    /// The mount id of the object <paramref name="heldPath"/> reaches (a /proc link of the task): opened with
    /// O_PATH here, its /proc/self/fdinfo names the mount. Null when it cannot be opened.
    /// </summary>
    public static int? MountIdOf(string heldPath)
    {
        try
        {
            using var fd = FileDescriptor.Open(heldPath, OpenFlags.Path | OpenFlags.CloseOnExec);
            return FdInfo.Parse(ProcFile.ReadAll($"/proc/self/fdinfo/{fd.Fd}")).MntId;
        }
        catch (KernelException)
        {
            return null;
        }
    }

    /// <summary>Whether a file of this status can be reopened by path: regular file, directory, stateless device.</summary>
    public static bool IsSupported(FileStatus st) =>
        st.IsRegularFile || st.IsDirectory || (st.IsCharacterDevice && StatelessDevices.Contains((FileStatus.Major(st.RDevice), FileStatus.Minor(st.RDevice))));

    /// <summary>
    /// Check that <paramref name="path"/> still names the object of status <paramref name="held"/>; throws a
    /// DumpException starting with <paramref name="what"/> ("task 12 fd 3") otherwise.
    /// </summary>
    public static void CheckSameFile(string what, string path, FileStatus held, string? advice = null)
    {
        var atPath = TryStat(path);
        string tail = advice is null ? "deleted files are not supported" : advice;
        if (atPath is null)
            throw new DumpException($"{what}: file {path} was deleted, so a restore cannot reopen it; {tail}.");
        if (atPath.Value.Device != held.Device || atPath.Value.Inode != held.Inode)
            throw new DumpException($"{what}: {path} now names another file than the one open (inode {held.Inode}, now {atPath.Value.Inode}){(advice is null ? "" : "; " + advice)}.");
    }

    /// <summary>
    /// The name a restore reopens the object of status <paramref name="held"/> by, which the kernel reported as
    /// <paramref name="reported"/>, and the status the restore will find there. Normally the reported path itself,
    /// checked to name that object still. A path inside a branch of a union mount (UnionMounts.cs) becomes the
    /// path through the union when the kernel is known to report branch paths (AUFS) or when the object is on that
    /// union's mount (<paramref name="mntId"/>, overlayfs): then the union path must show a file of the same type
    /// and size (the branch file is what the union shows there; its device and inode are the branch
    /// filesystem's, not the union's). A layer path of an object on the layer's own filesystem is the task's own
    /// doing (it opened the layer directory, as a container runtime does) and stays as it is.
    /// </summary>
    public static (string Path, FileStatus Status, int? MntId) Resolve(string what, string reported, FileStatus held, int? mntId, UnionMounts unions, string? advice = null)
    {
        if (unions.ToUnionPath(reported, mntId) is { } union)
        {
            if (union.Layout.Kind == UnionKind.Aufs || union.Layout.MountId == mntId)
            {
                var atUnion = TryStat(union.Path)
                    ?? throw new DumpException($"{what}: {reported} lies in a branch of the {union.Layout.Describe()}, but {union.Path} does not exist there.");
                bool sameObject = atUnion.Device == held.Device && atUnion.Inode == held.Inode;
                if (!sameObject && (atUnion.FileType != held.FileType || (held.IsRegularFile && atUnion.Size != held.Size)))
                    throw new DumpException($"{what}: {reported} lies in a branch of the {union.Layout.Describe()}, but {union.Path} is another file there (mode {Convert.ToString(atUnion.Mode, 8)} size {atUnion.Size}, held mode {Convert.ToString(held.Mode, 8)} size {held.Size}).");
                Log.Info($"dump: {what}: branch path {reported} is {union.Path} through the {union.Layout.Describe()}");
                return (union.Path, atUnion, union.Layout.MountId);
            }
        }
        CheckSameFile(what, reported, held, advice);
        return (reported, held, mntId);
    }

    /// <summary>
    /// The entry for a file of status <paramref name="st"/>; <paramref name="heldPath"/> (a /proc link of the task)
    /// is read for the build id of a regular ELF file, as the restore checks it.
    /// </summary>
    public static RegFileEntry Describe(string path, uint flags, ulong pos, FileStatus st, int? mntId, string? heldPath = null)
    {
        var entry = new RegFileEntry
        {
            Flags = flags,
            Pos = pos,
            Fown = new FownEntry { Uid = 0, Euid = 0, Signum = 0, PidType = 0, Pid = 0 },
            Name = path,
            MntId = mntId ?? -1,
            Size = (ulong)st.Size,
            Mode = st.Mode,
            CrestDev = st.Device,
            CrestIno = st.Inode,
            CrestMtimeNs = (ulong)(st.ModifyTimeSeconds * 1_000_000_000L + st.ModifyTimeNanoseconds),
        };
        if (heldPath is not null && st.IsRegularFile && ElfBuildId.ReadPath(heldPath, st.Size) is { } buildId)
            entry.BuildId.Add(buildId);
        return entry;
    }

    /// <summary>
    /// A file the task uses other than through a descriptor (its exe, cwd, root, a mapping): <paramref name="heldPath"/>
    /// is the /proc link that reaches the object itself, <paramref name="path"/> the name to reopen.
    /// </summary>
    public static uint AddByPath(FileTable table, string what, string heldPath, string path, uint flags, UnionMounts unions)
    {
        if (path.EndsWith(" (deleted)", StringComparison.Ordinal))
            throw new DumpException($"{what}: file {path[..^" (deleted)".Length]} was deleted; deleted files are not supported.");
        var held = TryStat(heldPath) ?? throw new DumpException($"{what}: {heldPath} cannot be opened.");
        if (!IsSupported(held))
            throw new DumpException($"{what}: unsupported file kind ({path}, mode {Convert.ToString(held.Mode, 8)}).");
        var (name, status, mntId) = Resolve(what, path, held, MountIdOf(heldPath), unions);
        return table.AddShared(name, flags, () => Describe(name, flags, 0, status, mntId, heldPath));
    }
}
