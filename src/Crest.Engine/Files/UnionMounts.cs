// Union filesystems: overlayfs (Linux 3.18) and AUFS (out of tree, never in mainline). A union shows a stack
// of branch directories (overlayfs: upperdir on top, then each lowerdir) as one tree. Where the kernel names
// an object through the branch it lives in (AUFS: /proc/PID/map_files and maps give the branch file,
// /branches/rw/usr/bin/x, not /usr/bin/x), the path has to be translated back to the union's tree before a
// restore can reopen it; this file holds that translation and where the branch lists come from:
//   overlayfs  mountinfo super options: upperdir=, lowerdir=a:b (":" separates, "\:" is a colon, "::" starts
//              the data-only layers, which hold contents only and are never visible by name), or lowerdir+=
//              and datadir+= one layer each (Linux 6.7 fsconfig); show_options octal-escapes ",= \t\n\\".
//   AUFS       mountinfo super option si=ID; /sys/fs/aufs/si_ID/brN holds "PATH=PERM" for branch N, br0 on top.
// What overlayfs on 6.18 reports (measured, tests/Crest.Engine.Tests/Restore/OverlayFsTests.cs): fd links,
// map_files links and maps all name the overlay path; stat of a path, fstat of an fd and stat through a
// map_files link agree (the overlay inode, its st_ino kept across copy-up); but /proc/PID/maps prints the
// overlay superblock's device, which is not what stat reports when the layers are on different filesystems
// (a pseudo device per layer). Older kernels printed the real layer file in maps. So identity is taken from
// the map_files link, and the branch translation applies wherever a layer path shows up anyway.
using Crest.Diagnostics;
using Crest.Kernel.Proc;

namespace Crest.Engine.Files;

internal enum UnionKind
{
    Overlay,
    Aufs,
}

/// <summary>
/// One mount of a union filesystem: where it is mounted, which directory of the union it shows (mountinfo's
/// root field, "/" unless bind-mounted from inside), and its branch directories, the top-most first.
/// </summary>
internal sealed record UnionLayout(UnionKind Kind, int MountId, string MountPoint, string Root, IReadOnlyList<string> Branches)
{
    public string Describe() => $"{(Kind == UnionKind.Overlay ? "overlayfs" : "aufs")} mount {MountId} at {MountPoint}";
}

/// <summary>The pure part: branch lists from mount options and branch paths to union paths.</summary>
internal static class UnionPaths
{
    /// <summary>
    /// The path through the union of <paramref name="path"/> when it lies inside one of the branches of
    /// <paramref name="layout"/> (the longest branch that contains it, on a path component boundary), or null
    /// when it is in none or in a part of the union this mount does not show.
    /// </summary>
    public static string? ToUnionPath(UnionLayout layout, string path)
    {
        string? branch = null;
        foreach (string b in layout.Branches)
        {
            if (IsUnder(path, b) && (branch is null || Trim(b).Length > Trim(branch).Length)) branch = b;
        }
        if (branch is null) return null;
        string inUnion = "/" + path[Trim(branch).Length..].TrimStart('/');
        if (!IsUnder(inUnion, layout.Root)) return null;
        string rest = inUnion[Trim(layout.Root).Length..];
        if (rest.Length == 0 || rest == "/") return layout.MountPoint;
        return Trim(layout.MountPoint) + rest;
    }

    /// <summary>Whether <paramref name="path"/> is <paramref name="dir"/> or inside it (both absolute).</summary>
    public static bool IsUnder(string path, string dir)
    {
        string d = Trim(dir);
        if (d.Length == 0) return path.StartsWith('/');
        return path.StartsWith(d, StringComparison.Ordinal) && (path.Length == d.Length || path[d.Length] == '/');
    }

    /// <summary>
    /// overlayfs branches from the super options of its mountinfo line: upperdir first, then the lower layers
    /// in order. Data-only layers are left out (nothing in them has a name in the union), and so are relative
    /// paths (mount(2) took them relative to the mounter's cwd, which is not known any more).
    /// </summary>
    public static IReadOnlyList<string> OverlayBranches(string superOptions)
    {
        string? upper = null;
        var lower = new List<string>();
        foreach (string option in superOptions.Split(','))
        {
            int eq = option.IndexOf('=');
            if (eq < 0) continue;
            string key = option[..eq], value = Unescape(option[(eq + 1)..]);
            switch (key)
            {
                case "upperdir":
                    upper = value;
                    break;
                case "lowerdir+":
                    lower.Add(value);
                    break;
                case "lowerdir":
                    lower.AddRange(SplitLowerDirs(value));
                    break;
            }
        }
        var branches = new List<string>();
        if (upper is not null) branches.Add(upper);
        branches.AddRange(lower);
        return branches.Where(b => b.StartsWith('/')).ToList();
    }

    /// <summary>"a:b\:c::data" → a, b:c (the layers before "::"; a backslash takes the next character as is).</summary>
    private static IEnumerable<string> SplitLowerDirs(string value)
    {
        var current = new System.Text.StringBuilder();
        for (int i = 0; i < value.Length; i++)
        {
            char c = value[i];
            if (c == '\\' && i + 1 < value.Length)
            {
                current.Append(value[++i]);
            }
            else if (c == ':')
            {
                yield return current.ToString();
                current.Clear();
                if (i + 1 < value.Length && value[i + 1] == ':') yield break;
            }
            else
            {
                current.Append(c);
            }
        }
        if (current.Length > 0) yield return current.ToString();
    }

    /// <summary>The AUFS superblock id of <c>si=ID</c> in the super options, or null.</summary>
    public static string? AufsSuperblockId(string superOptions)
    {
        foreach (string option in superOptions.Split(','))
        {
            if (option.StartsWith("si=", StringComparison.Ordinal) && option.Length > 3 && option[3..].All(Uri.IsHexDigit))
                return option[3..];
        }
        return null;
    }

    /// <summary>The branch path of an AUFS brN file ("/var/lib/docker/aufs/diff/ID=rw\n"): what precedes the last '='.</summary>
    public static string? AufsBranchPath(string brFile)
    {
        string line = brFile.TrimEnd('\n');
        int eq = line.LastIndexOf('=');
        return eq > 0 && line.StartsWith('/') ? line[..eq] : null;
    }

    private static string Trim(string dir) => dir.Length > 1 ? dir.TrimEnd('/') : dir == "/" ? "" : dir;

    private static string Unescape(string s) => s.Contains('\\') ? ProcText.Utf8(ProcText.UnescapeOctal(System.Text.Encoding.UTF8.GetBytes(s))) : s;
}

/// <summary>The union mounts a task sees (its /proc/PID/mountinfo), with their branches.</summary>
internal sealed class UnionMounts(IReadOnlyList<UnionLayout> layouts)
{
    public static readonly UnionMounts None = new([]);

    public IReadOnlyList<UnionLayout> Layouts { get; } = layouts;

    /// <summary>The union mounts of <paramref name="pid"/>'s mount namespace; AUFS branches read from sysfs.</summary>
    public static UnionMounts Read(int pid) =>
        FromMountInfo(ProcMountInfo.Parse(ProcFile.ReadAll(pid, "mountinfo")), ReadAufsBranches);

    /// <summary>
    /// As <see cref="Read"/>, once per mount namespace (by its /proc/PID/ns/mnt link) in <paramref name="byNamespace"/>:
    /// a container host's mountinfo runs to thousands of lines, and a tree's processes mostly share one namespace.
    /// </summary>
    public static UnionMounts Read(int pid, Dictionary<string, UnionMounts> byNamespace)
    {
        string ns = new FileInfo($"/proc/{pid}/ns/mnt").LinkTarget ?? "";
        if (ns.Length > 0 && byNamespace.TryGetValue(ns, out var known)) return known;
        var unions = Read(pid);
        if (ns.Length > 0) byNamespace[ns] = unions;
        return unions;
    }

    /// <param name="aufsBranches">The branch paths of an AUFS superblock id, br0 first.</param>
    public static UnionMounts FromMountInfo(IReadOnlyList<MountInfo> mounts, Func<string, IReadOnlyList<string>> aufsBranches)
    {
        var layouts = new List<UnionLayout>();
        foreach (var m in mounts)
        {
            if (m.FsType == "overlay")
            {
                var branches = UnionPaths.OverlayBranches(m.SuperOptions);
                if (branches.Count > 0) layouts.Add(new UnionLayout(UnionKind.Overlay, m.MountId, m.MountPoint, m.Root, branches));
            }
            else if (m.FsType == "aufs" && UnionPaths.AufsSuperblockId(m.SuperOptions) is { } si)
            {
                var branches = aufsBranches(si);
                if (branches.Count > 0) layouts.Add(new UnionLayout(UnionKind.Aufs, m.MountId, m.MountPoint, m.Root, branches));
            }
        }
        return layouts.Count == 0 ? None : new UnionMounts(layouts);
    }

    /// <summary>
    /// The union path of a path that lies in a branch, and the mount it goes through: the mount the object is
    /// on (<paramref name="mntId"/>) if that is a union, else the first union mount that translates it.
    /// </summary>
    public (string Path, UnionLayout Layout)? ToUnionPath(string path, int? mntId)
    {
        (string, UnionLayout)? first = null;
        foreach (var layout in Layouts)
        {
            if (UnionPaths.ToUnionPath(layout, path) is not { } translated) continue;
            if (layout.MountId == mntId) return (translated, layout);
            first ??= (translated, layout);
        }
        return first;
    }

    private static IReadOnlyList<string> ReadAufsBranches(string si)
    {
        var branches = new List<string>();
        for (int n = 0; n < 1000; n++)
        {
            string br = $"/sys/fs/aufs/si_{si}/br{n}";
            if (!File.Exists(br)) break;
            if (UnionPaths.AufsBranchPath(File.ReadAllText(br)) is { } path) branches.Add(path);
            else Log.Warning($"dump: {br}: not a branch line, ignored");
        }
        return branches;
    }
}
