using System.Text;
using Crest.Engine.Dump;
using Crest.Engine.Files;
using Crest.Engine.Restore;
using Crest.Images.Protos;
using Crest.Kernel.Files;
using Crest.Kernel.Proc;

namespace Crest.Engine.Tests.Dump;

// Union filesystems (UnionMounts.cs): branch lists from mountinfo and sysfs, branch paths translated to paths
// through the union (what AUFS makes necessary: its map_files and fd links name the branch file), and the
// overlayfs copy-up rule of the restore identity check. AUFS is not in this kernel: its layouts are written out.
public class UnionPathTests
{
    private static UnionLayout Aufs(string mountPoint, params string[] branches) => new(UnionKind.Aufs, 90, mountPoint, "/", branches);

    [Fact]
    public void OverlayBranchesAreTheUpperDirThenTheLowerDirsInOrder() =>
        Assert.Equal(["/u", "/l1", "/l2"], UnionPaths.OverlayBranches("rw,lowerdir=/l1:/l2,upperdir=/u,workdir=/w,uuid=on"));

    [Fact]
    public void OverlayBranchesUndoTheKernelsOctalEscapesAndTheUsersBackslashes() =>
        // The user wrote lowerdir=/a\:b:/c (a colon in a name); show_options printed the backslash as \134, a comma as \054.
        Assert.Equal(["/u,x y", "/a:b", "/c"], UnionPaths.OverlayBranches(@"rw,lowerdir=/a\134:b:/c,upperdir=/u\054x\040y,workdir=/w"));

    [Fact]
    public void OverlayDataOnlyLayersAreNotBranches() =>
        Assert.Equal(["/l1", "/l2"], UnionPaths.OverlayBranches("ro,lowerdir=/l1:/l2::/data1::/data2,redirect_dir=follow,metacopy=on"));

    [Fact]
    public void OverlayLayersAddedOneByOneAreBranches() =>
        Assert.Equal(["/u", "/l1", "/l2"], UnionPaths.OverlayBranches("rw,lowerdir+=/l1,lowerdir+=/l2,datadir+=/d,upperdir=/u,workdir=/w"));

    [Fact]
    public void RelativeLayersAreLeftOut() =>
        Assert.Empty(UnionPaths.OverlayBranches("rw,lowerdir=a,upperdir=b,workdir=c"));

    [Theory]
    [InlineData("/var/lib/docker/aufs/diff/def/bin/sh", "/bin/sh")]
    [InlineData("/var/lib/docker/aufs/diff/abc/etc/hosts", "/etc/hosts")]
    [InlineData("/var/lib/docker/aufs/diff/abc", "/")]
    [InlineData("/var/lib/docker/aufs/diff/abcd/x", null)] // a sibling of a branch with a longer name
    [InlineData("/etc/passwd", null)]
    public void AufsBranchPathsBecomeRootRelative(string branchPath, string? expected) =>
        Assert.Equal(expected, UnionPaths.ToUnionPath(Aufs("/", "/var/lib/docker/aufs/diff/abc", "/var/lib/docker/aufs/diff/def"), branchPath));

    [Fact]
    public void AUnionMountedBelowTheRootPrefixesItsMountPoint()
    {
        var layout = Aufs("/srv/union", "/branches/rw/", "/branches/ro");
        Assert.Equal("/srv/union/usr/lib/libx.so", UnionPaths.ToUnionPath(layout, "/branches/ro/usr/lib/libx.so"));
        Assert.Equal("/srv/union/f", UnionPaths.ToUnionPath(layout, "/branches/rw/f"));
        Assert.Equal("/srv/union", UnionPaths.ToUnionPath(layout, "/branches/rw"));
    }

    [Fact]
    public void TheLongestBranchThatHoldsThePathWins() =>
        // A branch nested inside another branch's directory: its files are its own, not the outer branch's.
        Assert.Equal("/u/f", UnionPaths.ToUnionPath(Aufs("/u", "/b", "/b/inner"), "/b/inner/f"));

    [Fact]
    public void ABindMountOfASubdirectoryShowsOnlyThatPart()
    {
        var layout = new UnionLayout(UnionKind.Overlay, 50, "/m", "/sub", ["/upper", "/lower"]);
        Assert.Equal("/m/f", UnionPaths.ToUnionPath(layout, "/lower/sub/f"));
        Assert.Equal("/m", UnionPaths.ToUnionPath(layout, "/upper/sub"));
        Assert.Null(UnionPaths.ToUnionPath(layout, "/upper/other/f"));
        Assert.Null(UnionPaths.ToUnionPath(layout, "/upper/subway/f"));
    }

    [Theory]
    [InlineData("rw,relatime,si=4476a910a24617e6", "4476a910a24617e6")]
    [InlineData("rw,si=abc,dio", "abc")]
    [InlineData("rw,relatime", null)]
    [InlineData("rw,si=xyz", null)]
    public void AufsSuperblockIdComesFromTheSiOption(string options, string? expected) =>
        Assert.Equal(expected, UnionPaths.AufsSuperblockId(options));

    [Theory]
    [InlineData("/var/lib/docker/aufs/diff/abc=rw\n", "/var/lib/docker/aufs/diff/abc")]
    [InlineData("/with=equals=ro+wh\n", "/with=equals")]
    [InlineData("=rw\n", null)]
    [InlineData("garbage", null)]
    public void AufsBranchFilesGiveThePathBeforeThePermission(string brFile, string? expected) =>
        Assert.Equal(expected, UnionPaths.AufsBranchPath(brFile));

    [Fact]
    public void UnionMountsComeFromMountInfoWithAufsBranchesFromSysfs()
    {
        string mountinfo = string.Join('\n',
            "22 1 0:33 / / rw,relatime - aufs none rw,si=4476a910a24617e6",
            "44 22 0:39 / /tmp/o rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w,uuid=on",
            "45 22 0:39 /sub /tmp/o2 rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w,uuid=on",
            "46 22 254:0 / /data rw - ext4 /dev/vda rw",
            "");
        var asked = new List<string>();
        var unions = UnionMounts.FromMountInfo(ProcMountInfo.Parse(Encoding.UTF8.GetBytes(mountinfo)), si =>
        {
            asked.Add(si);
            return ["/var/lib/docker/aufs/diff/top", "/var/lib/docker/aufs/diff/base"];
        });
        Assert.Equal(["4476a910a24617e6"], asked);
        Assert.Equal([22, 44, 45], unions.Layouts.Select(l => l.MountId));
        Assert.Equal(("/bin/sh", 22), Pick(unions.ToUnionPath("/var/lib/docker/aufs/diff/base/bin/sh", null)));
        // Two mounts of one overlay: the one the object is on (its fdinfo mnt_id) names it.
        Assert.Equal(("/tmp/o/sub/f", 44), Pick(unions.ToUnionPath("/u/sub/f", null)));
        Assert.Equal(("/tmp/o2/f", 45), Pick(unions.ToUnionPath("/u/sub/f", 45)));
        Assert.Null(unions.ToUnionPath("/data/x", 46));
    }

    [Fact]
    public void UnionMountsAreReadOncePerMountNamespace()
    {
        var byNamespace = new Dictionary<string, UnionMounts>();
        var first = UnionMounts.Read(Environment.ProcessId, byNamespace);
        Assert.Same(first, UnionMounts.Read(Environment.ProcessId, byNamespace));
        Assert.Equal(new FileInfo("/proc/self/ns/mnt").LinkTarget, Assert.Single(byNamespace.Keys));
    }

    private static (string, int?) Pick2((string Path, FileStatus Status, int? MntId) r) => (r.Path, r.MntId);

    private static (string, int)? Pick((string Path, UnionLayout Layout)? t) => t is { } v ? (v.Path, v.Layout.MountId) : null;

    [Fact]
    public void ABranchPathIsDumpedAsThePathThroughTheUnion()
    {
        // What an AUFS mapping looks like: map_files names the branch file; the same file is visible in the union.
        string root = Path.Combine(Path.GetTempPath(), $"crest-union-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(Path.Combine(root, "ro", "bin"));
            Directory.CreateDirectory(Path.Combine(root, "union", "bin"));
            string branchFile = Path.Combine(root, "ro", "bin", "tool");
            File.WriteAllBytes(branchFile, new byte[5000]);
            File.WriteAllBytes(Path.Combine(root, "union", "bin", "tool"), new byte[5000]);
            var unions = new UnionMounts([new UnionLayout(UnionKind.Aufs, 90, Path.Combine(root, "union"), "/", [Path.Combine(root, "rw"), Path.Combine(root, "ro")])]);
            var held = RegularFiles.TryStat(branchFile)!.Value;

            var (name, status, mntId) = RegularFiles.Resolve("task 1 mapping 1000-2000", branchFile, held, 33, unions);
            Assert.Equal(Path.Combine(root, "union", "bin", "tool"), name);
            Assert.Equal(RegularFiles.TryStat(name)!.Value.Inode, status.Inode);
            Assert.Equal(90, mntId);

            // The union shows another file there (another size): refused, naming both paths.
            File.WriteAllBytes(Path.Combine(root, "union", "bin", "tool"), new byte[10]);
            var e = Assert.Throws<DumpException>(() => RegularFiles.Resolve("task 1 mapping 1000-2000", branchFile, held, 33, unions));
            Assert.Contains(branchFile, e.Message);
            Assert.Contains(Path.Combine(root, "union", "bin", "tool"), e.Message);

            // An overlay layer path that still names the object, off the overlay's mount: a file the task opened
            // in the layer directory itself, kept as it is.
            var overlay = new UnionMounts([new UnionLayout(UnionKind.Overlay, 44, Path.Combine(root, "union"), "/", [Path.Combine(root, "ro")])]);
            Assert.Equal(branchFile, RegularFiles.Resolve("task 1 fd 3", branchFile, held, 33, overlay).Path);
            // The same path with the object on the overlay's own mount (fdinfo mnt_id 44): a layer path the kernel
            // gave for an overlay file, as kernels before 4.2 did for fds; named through the overlay.
            File.WriteAllBytes(Path.Combine(root, "union", "bin", "tool"), new byte[5000]);
            Assert.Equal((Path.Combine(root, "union", "bin", "tool"), (int?)44), Pick2(RegularFiles.Resolve("task 1 fd 3", branchFile, held, 44, overlay)));
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }

    [Fact]
    public void OnOverlayfsAnotherInodeWithTheSameSizeAndMtimeIsACopyUp()
    {
        var file = new RegFileEntry { Size = 100, CrestDev = 0x27, CrestIno = 11, CrestMtimeNs = 1_700_000_000_123_456_789UL };
        FileStatus Now(long size, long seconds, long nanoseconds) =>
            new() { Device = 0x27, Inode = 12, Size = size, Mode = 0x81a4, ModifyTimeSeconds = seconds, ModifyTimeNanoseconds = nanoseconds };
        Assert.True(RestoreFileIdentity.IsCopyUp(file, Now(100, 1_700_000_000, 123_456_789), onOverlayfs: true));
        Assert.False(RestoreFileIdentity.IsCopyUp(file, Now(100, 1_700_000_000, 123_456_789), onOverlayfs: false));
        Assert.False(RestoreFileIdentity.IsCopyUp(file, Now(100, 1_700_000_001, 123_456_789), onOverlayfs: true));
        Assert.False(RestoreFileIdentity.IsCopyUp(file, Now(99, 1_700_000_000, 123_456_789), onOverlayfs: true));
        Assert.False(RestoreFileIdentity.IsCopyUp(new RegFileEntry { Size = 100, CrestDev = 0x27, CrestIno = 11 }, Now(100, 1_700_000_000, 123_456_789), onOverlayfs: true));
    }
}
