using System.Globalization;
using System.Text;
using Crest.Engine.Dump;
using Crest.Engine.Restore;
using Crest.Engine.Tests.Dump;
using Crest.Images;
using Crest.Images.Protos;
using Crest.Kernel.Files;
using Crest.Kernel.Processes;
using Crest.Kernel.Tests.Fixtures;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Restore;

/// <summary>
/// --external at dump, --inherit-fd at restore: a file whose path is gone and a pipe to a logger outside the tree,
/// each handed in by the restoring process, and the failures that name the option to pass.
/// </summary>
[Collection("Children of the test process")]
public class ExternalFileTests
{
    /// <summary>CRIU's id of fd <paramref name="fd"/> of <paramref name="pid"/>: file[MNT_ID:INODE] in hex, from its fdinfo.</summary>
    private static string FileId(int pid, int fd)
    {
        var fields = File.ReadAllLines($"/proc/{pid}/fdinfo/{fd}").Select(l => l.Split(':', 2)).ToDictionary(p => p[0], p => p[1].Trim());
        int mntId = int.Parse(fields["mnt_id"], CultureInfo.InvariantCulture);
        ulong inode = ulong.Parse(fields["ino"], CultureInfo.InvariantCulture);
        return string.Create(CultureInfo.InvariantCulture, $"file[{mntId:x}:{inode:x}]");
    }

    private static string Link(int pid, int fd) => new FileInfo($"/proc/{pid}/fd/{fd}").LinkTarget!;

    /// <summary>A pty master of this process, unlocked, and the path of its slave.</summary>
    private static (FileDescriptor Master, string Slave) OpenPty()
    {
        var master = FileDescriptor.Open("/dev/ptmx", OpenFlags.ReadWrite | OpenFlags.NoCtty | OpenFlags.NonBlock | OpenFlags.CloseOnExec);
        Crest.Kernel.Files.Terminal.SetPtyLocked(master, false);
        return (master, string.Create(CultureInfo.InvariantCulture, $"/dev/pts/{Crest.Kernel.Files.Terminal.GetPtyNumber(master)}"));
    }

    [Fact]
    public void ATerminalHeldOutsideComesBackThroughAnInheritedFd()
    {
        using var imagesDir = new ScratchDirectory();
        string dir = imagesDir.Path;
        var (master, slave) = OpenPty();
        var (newMaster, newSlavePath) = OpenPty();
        try
        {
            using var fixture = FixtureProcess.Start("tty_external", slave);
            var st = FileDescriptor.Open(slave, OpenFlags.ReadOnly | OpenFlags.NoCtty | OpenFlags.CloseOnExec).Stat();
            string id = string.Create(CultureInfo.InvariantCulture, $"tty[{(uint)st.RDevice:x}:{(uint)st.Device:x}]");

            // Neither --shell-job nor --external: refused, naming the id; the fixture runs on.
            var refused = Assert.Throws<DumpException>(() => DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = dir }));
            Assert.Contains($"--external {id}", refused.Message);

            DumpAndKill(fixture, new DumpOptions { Pid = fixture.Pid, ImagesDir = dir, External = [id] });
            Crit.DecodeAll(dir);

            using var handed = FileDescriptor.Open(newSlavePath, OpenFlags.ReadWrite | OpenFlags.NoCtty | OpenFlags.CloseOnExec);
            RestoreAndVerify(dir, fixture, new InheritedFd(handed.Fd, id));

            // The restored process wrote into the terminal handed to the restore, not into the old one.
            var text = new System.Text.StringBuilder();
            var buffer = new byte[256];
            for (int i = 0; i < 500 && !text.ToString().Contains("after restore", StringComparison.Ordinal); i++)
            {
                int n;
                try { n = newMaster.Read(buffer); }
                catch (Crest.Kernel.KernelException e) when (e.Errno.Value == Crest.Kernel.Errno.EAGAIN) { n = 0; }
                if (n > 0) text.Append(System.Text.Encoding.ASCII.GetString(buffer, 0, n));
                else Thread.Sleep(10);
            }
            Assert.Contains("after restore", text.ToString());
        }
        finally
        {
            master.Dispose();
            newMaster.Dispose();
        }
    }

    [Fact]
    public void AFileWhosePathIsGoneComesBackThroughAnInheritedFd()
    {
        using var workDir = new ScratchDirectory();
        using var imagesDir = new ScratchDirectory();
        string work = workDir.Path, dir = imagesDir.Path;
        string gone = Path.Combine(work, "gone");
        Directory.CreateDirectory(gone);
        using var fixture = FixtureProcess.Start("external_files", "file", gone);
        string id = FileId(fixture.Pid, 3);
        Directory.Delete(gone, true);
        Assert.EndsWith("(deleted)", Link(fixture.Pid, 3));

        DumpAndKill(fixture, new DumpOptions { Pid = fixture.Pid, ImagesDir = dir, External = [id] });
        Crit.DecodeAll(dir);
        var reg = FileEntries(dir).Single(f => f.Reg?.Ext == true).Reg;
        Assert.Equal(id, reg.Name);
        Assert.Equal(4ul, reg.Pos);
        using (var decoded = Crit.Decode(Path.Combine(dir, "files.img")))
            Assert.Contains(decoded.RootElement.GetProperty("entries").EnumerateArray(),
                e => e.GetProperty("reg").GetProperty("name").GetString() == id && e.GetProperty("reg").GetProperty("ext").GetBoolean());

        // The replacement: another file with the same contents, open in this process (offset 0, read-only).
        string replacement = Path.Combine(work, "replacement");
        File.WriteAllText(replacement, "0123456789");
        using var handed = FileDescriptor.Open(replacement, OpenFlags.ReadOnly | OpenFlags.CloseOnExec);
        Assert.Equal(fixture.Pid, RestoreAndVerify(dir, fixture, new InheritedFd(handed.Fd, id)));
        Assert.Equal("012345ab89", File.ReadAllText(replacement));
    }

    [Fact]
    public void AnyFileCanBeReplacedByPathWithInheritFd()
    {
        using var workDir = new ScratchDirectory();
        using var imagesDir = new ScratchDirectory();
        string work = workDir.Path, dir = imagesDir.Path;
        using var fixture = FixtureProcess.Start("external_files", "file", work);
        string data = Path.Combine(work, "data");
        DumpAndKill(fixture, dir);
        File.WriteAllText(data, "not this one");

        // CRIU's path form: the dumped path without its leading '/'.
        string replacement = Path.Combine(work, "replacement");
        File.WriteAllText(replacement, "0123456789");
        using var handed = FileDescriptor.Open(replacement, OpenFlags.ReadOnly | OpenFlags.CloseOnExec);
        RestoreAndVerify(dir, fixture, new InheritedFd(handed.Fd, data[1..]));
        Assert.Equal("012345ab89", File.ReadAllText(replacement));
        Assert.Equal("not this one", File.ReadAllText(data));
    }

    [Fact]
    public void ADeletedFileWithoutExternalFailsNamingTheOptionToPass()
    {
        using var workDir = new ScratchDirectory();
        using var imagesDir = new ScratchDirectory();
        string work = workDir.Path, dir = imagesDir.Path;
        using var fixture = FixtureProcess.Start("external_files", "file", work);
        string id = FileId(fixture.Pid, 3);
        File.Delete(Path.Combine(work, "data"));
        var e = Assert.Throws<DumpException>(() => DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = dir }));
        Assert.Contains($"task {fixture.Pid} fd 3: file {Path.Combine(work, "data")} was deleted", e.Message);
        Assert.Contains($"--external {id}", e.Message);
        Assert.Contains($"--inherit-fd fd[N]:{id}", e.Message);

        // A wrong id is named as matching nothing.
        e = Assert.Throws<DumpException>(() => DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = dir, External = ["file[1:2]"] }));
        Assert.Contains($"--external {id} (--external file[1:2] matches no open file)", e.Message);
        Assert.Empty(Directory.GetFiles(dir));
        // The task runs on untouched and still holds its file at offset 4.
        Assert.Equal("PASS", fixture.Verify(SIGUSR1, TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public void ARestoreWithoutTheInheritFdFailsNamingItAndLeavesNoTask()
    {
        using var workDir = new ScratchDirectory();
        using var imagesDir = new ScratchDirectory();
        string work = workDir.Path, dir = imagesDir.Path;
        using var fixture = FixtureProcess.Start("external_files", "file", work);
        string id = FileId(fixture.Pid, 3);
        DumpAndKill(fixture, new DumpOptions { Pid = fixture.Pid, ImagesDir = dir, External = [id] });
        var e = FailsCleanly(dir, fixture.Pid, Children());
        Assert.Contains($"task {fixture.Pid} fd 3 was dumped as the external file {id}", e.Message);
        Assert.Contains($"--inherit-fd fd[N]:{id}", e.Message);

        // An inherited fd that is not open is refused as well.
        var closed = Assert.Throws<RestoreException>(() => RestoreEngine.Run(new RestoreOptions
        {
            ImagesDir = dir, Detached = true, InheritFds = [new InheritedFd(987, id)],
        }));
        Assert.Contains($"--inherit-fd fd[987]:{id}: fd 987 is not open", closed.Message);
        Assert.False(Exists(fixture.Pid));
    }

    [Fact]
    public void APipeToALoggerOutsideTheTreeIsReplacedByOneFromTheRestoringProcess()
    {
        using var workDir = new ScratchDirectory();
        using var imagesDir = new ScratchDirectory();
        string work = workDir.Path, dir = imagesDir.Path;
        string log = Path.Combine(work, "log");
        using var fixture = FixtureProcess.Start("external_files", "logger", log);
        string id = Link(fixture.Pid, 10);
        Assert.StartsWith("pipe:[", id);

        // Without --external, or with a wrong one, the dump refuses and names the fd and the option.
        var e = Assert.Throws<DumpException>(() => DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = dir }));
        Assert.Contains($"task {fixture.Pid} fd 10: {id} is the write end of a pipe also held outside the dumped tree", e.Message);
        Assert.Contains($"--external {id}", e.Message);
        e = Assert.Throws<DumpException>(() => DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = dir, External = ["pipe:[1]"] }));
        Assert.Contains($"--external {id} (--external pipe:[1] matches no open file)", e.Message);
        Assert.Empty(Directory.GetFiles(dir));

        DumpAndKill(fixture, new DumpOptions { Pid = fixture.Pid, ImagesDir = dir, External = [id] });
        Crit.DecodeAll(dir);
        Assert.True(FileEntries(dir).Single(f => f.Pipe is not null).Pipe.CrestExt);

        // The old logger saw the line before the dump; the new pipe is read here.
        var (read, write) = FileDescriptor.CreatePipe();
        using (read)
        {
            using (write)
            {
                RestoreAndVerify(dir, fixture, new InheritedFd(write.Fd, id));
            }
            var buffer = new byte[256];
            int n = read.ReadFull(buffer);
            Assert.Equal("after restore\n", Encoding.ASCII.GetString(buffer, 0, n));
        }
        Assert.Equal("before dump\n", File.ReadAllText(log));
    }
}
