// mm-PID.img: the address space (CRIU's MmEntry). Each VMA of /proc/PID/smaps becomes a VmaEntry with
// CRIU's prot/flags/status bits; file mappings name their file by id in files.img (shmid) after a check that
// the path still names the mapped object (stat through /proc/PID/map_files against stat of the path: the
// device in the maps line is the overlayfs superblock's, not what stat reports, when the layers are on
// different filesystems), or, for a branch path of a union mount, the path through the union (UnionMounts.cs).
// mm fields come from /proc/PID/stat (fields 26-52), /proc/PID/auxv and /proc/PID/exe; brk and dumpable
// were asked of the task itself (CoreDumper). What cannot be restored by reopening a path is refused with
// the mapping named: shared anonymous memory, SysV shm, memfd, deleted files, hugetlb, device mappings.
using Crest.Engine.Dump;
using Crest.Engine.Files;
using Crest.Engine.Processes;
using Crest.Images.Protos;
using Crest.Kernel.Files;
using Crest.Kernel.Proc;

namespace Crest.Engine.Memory;

/// <summary>A VMA as it goes into the image, and whether its pages are dumped.</summary>
internal sealed record DumpedVma(Vma Vma, VmaEntry Entry, PageSelection Pages);

/// <summary>Which pages of a VMA go to pages-*.img.</summary>
internal enum PageSelection
{
    /// <summary>None (shared file mappings: the file holds them; vdso/vvar: the kernel provides them).</summary>
    None,

    /// <summary>Every present or swapped page (private anonymous memory, heap, stack).</summary>
    Anonymous,

    /// <summary>Only the copied-on-write pages of a private file mapping (present or swapped, not file pages).</summary>
    PrivateCopies,
}

internal static class VmaDumper
{
    // CRIU's VMA status bits (crit's mmap.status).
    public const uint VMA_AREA_REGULAR = 1 << 0, VMA_AREA_STACK = 1 << 1, VMA_AREA_VSYSCALL = 1 << 2, VMA_AREA_VDSO = 1 << 3,
        VMA_AREA_HEAP = 1 << 5, VMA_FILE_PRIVATE = 1 << 6, VMA_FILE_SHARED = 1 << 7, VMA_ANON_SHARED = 1 << 8,
        VMA_ANON_PRIVATE = 1 << 9, VMA_AREA_VVAR = 1 << 12;

    private const uint PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4;
    private const uint MAP_SHARED = 1, MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20, MAP_GROWSDOWN = 0x100, MAP_NORESERVE = 0x4000;
    private const uint O_RDONLY = 0, O_RDWR = 2;

    // madvise(2) advice numbers; VmaEntry.madv has bit N set when advice N applies.
    private const int MADV_RANDOM = 1, MADV_SEQUENTIAL = 2, MADV_DONTFORK = 10, MADV_MERGEABLE = 12, MADV_HUGEPAGE = 14,
        MADV_NOHUGEPAGE = 15, MADV_DONTDUMP = 16, MADV_WIPEONFORK = 18;

    public static IReadOnlyList<SmapsVma> ReadSmaps(int pid) => ProcSmaps.Parse(ProcFile.ReadAll(pid, "smaps"));

    /// <summary>
    /// /proc/PID/maps in smaps' shape, without counters or VmFlags: enough to choose the pages to dump, and cheap,
    /// where smaps walks every page table for its counters (tens of ms a GiB of small pages).
    /// </summary>
    public static IReadOnlyList<SmapsVma> ReadMaps(int pid) => ProcSmaps.Parse(ProcFile.ReadAll(pid, "maps"));

    /// <summary>
    /// The VMAs for the image (<paramref name="final"/>, from smaps) must be those whose pages were dumped
    /// (<paramref name="paged"/>, from maps earlier, the task frozen in between); they take the guard regions the
    /// page dump found.
    /// </summary>
    public static void TakeGuardRanges(int pid, IReadOnlyList<DumpedVma> paged, IReadOnlyList<DumpedVma> final)
    {
        if (paged.Count != final.Count)
            throw new DumpException($"Task {pid}: the memory map changed during the dump ({paged.Count} VMAs, then {final.Count}).");
        for (int i = 0; i < final.Count; i++)
        {
            var (a, b) = (paged[i], final[i]);
            if (a.Vma.Start != b.Vma.Start || a.Vma.End != b.Vma.End || a.Vma.Permissions != b.Vma.Permissions || a.Pages != b.Pages)
                throw new DumpException($"Task {pid}: the memory map changed during the dump (0x{a.Vma.Start:x}-0x{a.Vma.End:x}, then 0x{b.Vma.Start:x}-0x{b.Vma.End:x}).");
            b.Entry.CrestGuardRanges.AddRange(a.Entry.CrestGuardRanges);
        }
    }

    /// <summary>Classify every VMA; throws DumpException naming the first one that cannot be dumped.</summary>
    /// <param name="crestTracks">The task holds Crest's dirty-page tracker (DirtyTracking.cs): VMAs registered for
    /// write-protect are its doing, not the task's, and are dumped as plain memory.</param>
    /// <param name="unions">The task's union mounts: a mapped file named by a branch path is named through the union.</param>
    public static List<DumpedVma> Collect(int pid, IReadOnlyList<SmapsVma> smaps, FileTable files, UnionMounts unions, bool crestTracks = false)
    {
        var result = new List<DumpedVma>(smaps.Count);
        foreach (var s in smaps)
        {
            var vma = s.Vma;
            string what = $"task {pid} mapping {vma.Start:x}-{vma.End:x}";
            var flags = s.VmFlags;
            bool shared = (vma.Permissions & VmaPermissions.Shared) != 0;
            uint prot = ((vma.Permissions & VmaPermissions.Read) != 0 ? PROT_READ : 0)
                | ((vma.Permissions & VmaPermissions.Write) != 0 ? PROT_WRITE : 0)
                | ((vma.Permissions & VmaPermissions.Execute) != 0 ? PROT_EXEC : 0);
            var entry = new VmaEntry
            {
                Start = vma.Start,
                End = vma.End,
                Pgoff = vma.Offset,
                Shmid = 0,
                Prot = prot,
                Flags = (shared ? MAP_SHARED : MAP_PRIVATE)
                    | ((flags & VmFlags.GrowsDown) != 0 ? MAP_GROWSDOWN : 0)
                    | ((flags & VmFlags.NoReserve) != 0 ? MAP_NORESERVE : 0),
                Fd = -1,
                Madv = Madvise(flags),
            };
            var pages = PageSelection.None;
            switch (vma.Kind)
            {
                case VmaKind.Vdso:
                    entry.Status = VMA_AREA_REGULAR | VMA_AREA_VDSO;
                    entry.Flags |= MAP_ANONYMOUS;
                    break;
                case VmaKind.Vvar or VmaKind.VvarVclock:
                    entry.Status = VMA_AREA_REGULAR | VMA_AREA_VVAR;
                    entry.Flags |= MAP_ANONYMOUS;
                    break;
                case VmaKind.Vsyscall:
                    entry.Status = VMA_AREA_VSYSCALL;
                    entry.Flags |= MAP_ANONYMOUS;
                    break;
                case VmaKind.Heap or VmaKind.Stack or VmaKind.Anonymous or VmaKind.AnonNamed:
                    if (shared)
                        throw new DumpException($"{what}: shared anonymous memory is not supported yet.");
                    CheckPlainMemory(what, crestTracks ? flags & ~VmFlags.UffdWp : flags);
                    entry.Status = VMA_AREA_REGULAR | VMA_ANON_PRIVATE
                        | (vma.Kind == VmaKind.Heap ? VMA_AREA_HEAP : 0)
                        | (vma.Kind == VmaKind.Stack ? VMA_AREA_STACK : 0);
                    entry.Flags |= MAP_ANONYMOUS;
                    pages = PageSelection.Anonymous;
                    break;
                case VmaKind.File:
                {
                    string path = vma.Path!;
                    if (vma.IsDeleted)
                        throw new DumpException($"{what}: the mapped file {path} was deleted; mappings of deleted files are not supported.");
                    if (path.StartsWith("/memfd:", StringComparison.Ordinal) || path.StartsWith("/SYSV", StringComparison.Ordinal)
                        || path.StartsWith("anon_inode:", StringComparison.Ordinal) || !path.StartsWith('/'))
                        throw new DumpException($"{what}: unsupported mapping of {path}.");
                    CheckPlainMemory(what, crestTracks ? flags & ~VmFlags.UffdWp : flags);
                    // The mapped object as the task's namespace names it: through map_files (on overlayfs the
                    // overlay inode, whose device is not the one maps prints when the layers are on different
                    // filesystems). Without map_files, the device and inode of the maps line.
                    string mapFile = $"/proc/{pid}/map_files/{vma.Start:x}-{vma.End:x}";
                    var held = RegularFiles.TryStat(mapFile) ?? MapsIdentity(what, vma, path);
                    if (!held.IsRegularFile)
                        throw new DumpException($"{what}: unsupported mapping of {path} (mode {Convert.ToString(held.Mode, 8)}).");
                    int? mntId = RegularFiles.MountIdOf(mapFile);
                    var (name, st, nameMntId) = RegularFiles.Resolve(what, path, held, mntId, unions);
                    uint openFlags = shared && (flags & VmFlags.MayWrite) != 0 ? O_RDWR : O_RDONLY;
                    entry.Shmid = files.AddShared(name, openFlags, () => RegularFiles.Describe(name, openFlags, 0, st, nameMntId, mapFile));
                    entry.Fdflags = openFlags;
                    entry.Status = VMA_AREA_REGULAR | (shared ? VMA_FILE_SHARED : VMA_FILE_PRIVATE);
                    pages = shared ? PageSelection.None : PageSelection.PrivateCopies;
                    break;
                }
                default:
                    throw new DumpException($"{what}: unsupported mapping {vma.Name ?? vma.Kind.ToString()}.");
            }
            result.Add(new DumpedVma(vma, entry, pages));
        }
        return result;
    }

    public static MmEntry BuildMm(int pid, TaskState state, IReadOnlyList<DumpedVma> vmas, FileTable files, UnionMounts unions)
    {
        var stat = state.Stat;
        string exe = new FileInfo($"/proc/{pid}/exe").LinkTarget ?? throw new DumpException($"Task {pid} has no executable (/proc/{pid}/exe).");
        uint exeId = RegularFiles.AddByPath(files, $"task {pid} exe", $"/proc/{pid}/exe", exe, O_RDONLY, unions);
        var mm = new MmEntry
        {
            MmStartCode = stat.StartCode,
            MmEndCode = stat.EndCode,
            MmStartData = stat.StartData,
            MmEndData = stat.EndData,
            MmStartStack = stat.StartStack,
            MmStartBrk = stat.StartBrk,
            MmBrk = state.Brk,
            MmArgStart = stat.ArgStart,
            MmArgEnd = stat.ArgEnd,
            MmEnvStart = stat.EnvStart,
            MmEnvEnd = stat.EnvEnd,
            ExeFileId = exeId,
            Dumpable = state.Dumpable,
            ThpDisabled = state.ThpDisabled,
        };
        foreach (var a in ProcAuxv.Parse(ProcFile.ReadAll(pid, "auxv")))
        {
            mm.MmSavedAuxv.Add(a.Type);
            mm.MmSavedAuxv.Add(a.Value);
        }
        foreach (var v in vmas) mm.Vmas.Add(v.Entry);
        return mm;
    }

    /// <summary>The status of <paramref name="path"/> when it names the device and inode of the maps line; refused otherwise.</summary>
    private static FileStatus MapsIdentity(string what, Vma vma, string path)
    {
        var st = RegularFiles.TryStat(path)
            ?? throw new DumpException($"{what}: the mapped file {path} was deleted; mappings of deleted files are not supported.");
        if (FileStatus.Major(st.Device) != vma.DevMajor || FileStatus.Minor(st.Device) != vma.DevMinor || st.Inode != vma.Inode)
            throw new DumpException($"{what}: {path} now names another file than the mapped one (inode {vma.Inode}, now {st.Inode}).");
        return st;
    }

    private static void CheckPlainMemory(string what, VmFlags flags)
    {
        if ((flags & VmFlags.HugeTlb) != 0) throw new DumpException($"{what}: hugetlb mappings are not supported yet.");
        if ((flags & (VmFlags.Io | VmFlags.PfnMap)) != 0) throw new DumpException($"{what}: device (I/O) mappings cannot be dumped.");
        if ((flags & (VmFlags.UffdMissing | VmFlags.UffdWp | VmFlags.UffdMinor)) != 0) throw new DumpException($"{what}: userfaultfd-registered memory is not supported.");
    }

    private static ulong Madvise(VmFlags flags)
    {
        ulong m = 0;
        if ((flags & VmFlags.RandRead) != 0) m |= 1UL << MADV_RANDOM;
        if ((flags & VmFlags.SeqRead) != 0) m |= 1UL << MADV_SEQUENTIAL;
        if ((flags & VmFlags.DontCopy) != 0) m |= 1UL << MADV_DONTFORK;
        if ((flags & VmFlags.Mergeable) != 0) m |= 1UL << MADV_MERGEABLE;
        if ((flags & VmFlags.HugePage) != 0) m |= 1UL << MADV_HUGEPAGE;
        if ((flags & VmFlags.NoHugePage) != 0) m |= 1UL << MADV_NOHUGEPAGE;
        if ((flags & VmFlags.DontDump) != 0) m |= 1UL << MADV_DONTDUMP;
        if ((flags & VmFlags.WipeOnFork) != 0) m |= 1UL << MADV_WIPEONFORK;
        return m;
    }
}
