using System.Runtime.InteropServices;
using Crest.Engine.Tests.Dump;
using Crest.Images;
using Crest.Images.Protos;
using Crest.Kernel.Tests.Fixtures;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Restore;

// A process working on an overlayfs mount: its cwd, an fd read-only, an fd appending, a private and a shared
// mapping are all overlay files. Between READY and the dump the test copies two of them up to the upper layer
// through the overlay (an append to the read-only fd's file, a chmod of the privately mapped file) while the
// task holds them. The images must name the overlay paths (never a layer's), and the restored task checks
// itself that every fd and mapping is the overlay file at its path, with its offsets and contents. Three layer
// set-ups, each with a different view of device and inode numbers (see Layers); without origin records, the
// copied-up files change inode between dump and restore, which the restore's identity check must accept.
[Collection("Children of the test process")]
public partial class OverlayFsTests
{
    private const string Original = "lower layer text\n", Appended = "copied up after the open\n";

    public enum Layers
    {
        /// <summary>Every layer on /tmp's filesystem: st_dev is the overlay's, st_ino the layer file's (kept across copy-up).</summary>
        SameFilesystem,

        /// <summary>The lower layer on a tmpfs of its own: stat shows a device per layer, /proc/PID/maps the overlay's.</summary>
        LowerOnItsOwnFilesystem,

        /// <summary>
        /// Every layer on a ramfs, which has no xattrs: overlayfs cannot record a copied-up file's origin, so once its
        /// inode leaves the cache a copied-up file shows the upper file's inode, on the same device.
        /// </summary>
        NoOriginOnCopyUp,
    }

    [Theory]
    [InlineData(Layers.SameFilesystem)]
    [InlineData(Layers.LowerOnItsOwnFilesystem)]
    [InlineData(Layers.NoOriginOnCopyUp)]
    public void FilesAndMappingsOnOverlayfsComeBackAfterACopyUp(Layers layers)
    {
        using var overlay = OverlayMount.Create(layers);
        string dir = NewImagesDir();
        // The fixture runs from the overlay too: its executable and its ELF mappings are overlay files.
        string exe = Path.Combine(overlay.Merged, "bin", "overlay_files");
        using var fixture = FixtureProcess.Start(exe, overlay.Merged);
        try
        {
            File.AppendAllText(Path.Combine(overlay.Merged, "ro.txt"), Appended);
            File.SetUnixFileMode(Path.Combine(overlay.Merged, "map.bin"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
            File.SetUnixFileMode(exe, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute);
            foreach (string copiedUp in new[] { "ro.txt", "map.bin", "log.txt", "shared.bin", "bin/overlay_files" })
                Assert.True(File.Exists(Path.Combine(overlay.Upper, copiedUp)), $"{copiedUp} was not copied up");

            // The branches as this kernel's mountinfo shows them: upperdir on top, then the lower layer.
            var layout = Assert.Single(Crest.Engine.Files.UnionMounts.Read(fixture.Pid).Layouts, l => l.MountPoint == overlay.Merged);
            Assert.Equal([overlay.Upper, overlay.Lower], layout.Branches);

            DumpAndKill(fixture, dir);

            List<FileEntry> files;
            using (var reader = ImageReader.Open(Path.Combine(dir, "files.img"), ImageKinds.Files))
                files = reader.ReadEntries(FileEntry.Parser).ToList();
            var names = files.Where(f => f.Reg is not null).Select(f => f.Reg.Name).ToList();
            foreach (string name in new[] { "ro.txt", "log.txt", "map.bin", "shared.bin", "bin/overlay_files" })
                Assert.Contains(Path.Combine(overlay.Merged, name), names);
            Assert.Contains(overlay.Merged, names);
            Assert.DoesNotContain(names, n => n.StartsWith(overlay.Upper, StringComparison.Ordinal) || n.StartsWith(overlay.Lower, StringComparison.Ordinal));
            foreach (string image in Directory.GetFiles(dir, "*.img").Where(i => !Path.GetFileName(i).StartsWith("pages-", StringComparison.Ordinal)))
                using (Crit.Decode(image)) { }

            if (layers == Layers.NoOriginOnCopyUp)
            {
                // Evict the overlay's inodes: the copied-up map.bin then shows the upper file's inode, which the
                // restore's identity check must take for what it is (same device, size and mtime), not another file.
                var dumped = files.Single(f => f.Reg is { } r && r.Name == Path.Combine(overlay.Merged, "map.bin")).Reg;
                File.WriteAllText("/proc/sys/vm/drop_caches", "2");
                var now = Crest.Engine.Files.RegularFiles.TryStat(Path.Combine(overlay.Merged, "map.bin"))!.Value;
                Assert.Equal(dumped.CrestDev, now.Device);
                Assert.NotEqual(dumped.CrestIno, now.Inode);
            }

            using var restored = RestoreDetached(dir);
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>lower/, upper/, work/ and merged/ under a temporary directory, merged/ an overlay of the other three.</summary>
    internal sealed partial class OverlayMount : IDisposable
    {
        private const int MNT_DETACH = 2;
        private readonly string _base;
        private readonly Layers _layers;

        private OverlayMount(string root, Layers layers)
        {
            _base = root;
            _layers = layers;
        }

        public string Lower => Path.Combine(_base, "lower");
        public string Upper => Path.Combine(_base, "upper");
        public string Merged => Path.Combine(_base, "merged");

        public static OverlayMount Create(Layers layers)
        {
            string root = Path.Combine(Path.GetTempPath(), $"crest-overlay-{Guid.NewGuid():N}");
            Directory.CreateDirectory(root);
            var mount = new OverlayMount(root, layers);
            try
            {
                if (layers == Layers.NoOriginOnCopyUp) Mount("ramfs", root, "ramfs", "");
                foreach (string d in new[] { "lower", "upper", "work", "merged" }) Directory.CreateDirectory(Path.Combine(root, d));
                if (layers == Layers.LowerOnItsOwnFilesystem) Mount("tmpfs", mount.Lower, "tmpfs", "size=16m");
                File.WriteAllText(Path.Combine(mount.Lower, "ro.txt"), Original);
                File.WriteAllText(Path.Combine(mount.Lower, "log.txt"), "");
                var bytes = new byte[3 * 4096];
                for (int i = 0; i < bytes.Length; i++) bytes[i] = (byte)(i * 7 + 3);
                File.WriteAllBytes(Path.Combine(mount.Lower, "map.bin"), bytes);
                File.WriteAllBytes(Path.Combine(mount.Lower, "shared.bin"), new byte[2 * 4096]);
                Directory.CreateDirectory(Path.Combine(mount.Lower, "bin"));
                File.Copy(Path.Combine(AppContext.BaseDirectory, "fixtures", "overlay_files"), Path.Combine(mount.Lower, "bin", "overlay_files"));
                Mount("overlay", mount.Merged, "overlay", $"lowerdir={mount.Lower},upperdir={mount.Upper},workdir={Path.Combine(root, "work")}");
            }
            catch
            {
                mount.Dispose();
                throw;
            }
            return mount;
        }

        public void Dispose()
        {
            Umount2(Merged, MNT_DETACH);
            if (_layers == Layers.LowerOnItsOwnFilesystem) Umount2(Lower, MNT_DETACH);
            if (_layers == Layers.NoOriginOnCopyUp) Umount2(_base, MNT_DETACH);
            Directory.Delete(_base, true);
        }

        private static void Mount(string source, string target, string type, string data)
        {
            if (MountSyscall(source, target, type, 0, data) != 0)
                throw new InvalidOperationException($"mount -t {type} {source} {target} -o {data}: errno {Marshal.GetLastPInvokeError()}");
        }

        [LibraryImport("libc", EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        private static partial int MountSyscall(string source, string target, string type, ulong flags, string data);

        [LibraryImport("libc", EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        private static partial int Umount2(string target, int flags);
    }
}
