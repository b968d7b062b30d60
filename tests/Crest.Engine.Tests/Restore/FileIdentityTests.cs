using System.Text.Json;
using Crest.Engine.Files;
using Crest.Engine.Restore;
using Crest.Engine.Tests.Dump;
using Crest.Kernel.Tests.Fixtures;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Restore;

// Issue 3: a mapped file that is not the one dumped (replaced by another of the same size, truncated, an ELF
// with another build id) is refused on restore, naming the path and what changed, and no task is left.
[Collection("Children of the test process")]
public class FileIdentityTests
{
    private static JsonElement RegEntry(JsonDocument files, string name) =>
        files.RootElement.GetProperty("entries").EnumerateArray()
            .Where(e => e.TryGetProperty("reg", out _)).Select(e => e.GetProperty("reg"))
            .First(r => r.GetProperty("name").GetString() == name);

    [Fact]
    public void MappedFileReplacedByAnotherOfTheSameSizeIsRefused()
    {
        using var images = new ScratchDirectory();
        string dir = images.Path;
        string data = Path.Combine(dir, "data.bin"), log = Path.Combine(dir, "log.txt");
        File.WriteAllBytes(data, new byte[16384]);
        using var fixture = FixtureProcess.Start("restore_state", data, log);
        var e = FailsCleanlyAfter(fixture, dir, () =>
        {
            // Same size, same bytes as at dump time, but another inode renamed over the path.
            string replacement = data + ".new";
            File.Copy(data, replacement);
            File.Move(replacement, data, overwrite: true);
        });
        Assert.Contains(data, e.Message);
        Assert.Contains("another file", e.Message);
    }

    [Fact]
    public void TruncatedMappedFileIsRefused()
    {
        using var images = new ScratchDirectory();
        string dir = images.Path;
        string data = Path.Combine(dir, "data.bin"), log = Path.Combine(dir, "log.txt");
        File.WriteAllBytes(data, new byte[16384]);
        using var fixture = FixtureProcess.Start("restore_state", data, log);
        var e = FailsCleanlyAfter(fixture, dir, () =>
        {
            using (var f = File.OpenWrite(data)) f.SetLength(12288);
        });
        Assert.Contains(data, e.Message);
        Assert.Contains("size 12288, image says 16384", e.Message);
    }

    [Fact]
    public void MappedElfWithAnotherBuildIdIsRefused()
    {
        string dir = NewImagesDir();
        string data = Path.Combine(dir, "data.elf"), log = Path.Combine(dir, "log.txt");
        // An ELF file (a fixture binary) as the mapped data file, at least the 8 KiB the fixture maps.
        byte[] elf = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "fixtures", "restore_counter"));
        if (elf.Length < 16384) Array.Resize(ref elf, 16384);
        File.WriteAllBytes(data, elf);
        uint[] buildId = ElfBuildId.ReadPath(data, elf.Length) ?? throw new InvalidOperationException("the fixture has no build id");
        using var fixture = FixtureProcess.Start("restore_state", data, log);
        try
        {
            DumpAndKill(fixture, dir);
            using (var files = Crit.Decode(Path.Combine(dir, "files.img")))
            {
                var reg = RegEntry(files, data);
                Assert.Equal(buildId.Select(w => (long)w), reg.GetProperty("build_id").EnumerateArray().Select(w => w.GetInt64()));
                Assert.False(reg.TryGetProperty("crest_ino", out _)); // Crest's extension: crit skips it
                Assert.Equal(0, RegEntry(files, "/dev/null").TryGetProperty("build_id", out var none) ? none.GetArrayLength() : 0);
            }
            string children = Children();
            // Same inode, same size, one byte of the build id note changed in place.
            byte[] now = File.ReadAllBytes(data);
            byte[] id = buildId.SelectMany(BitConverter.GetBytes).ToArray();
            int at = now.AsSpan().IndexOf(id.AsSpan(0, 16));
            Assert.True(at > 0);
            now[at] ^= 0xff;
            using (var f = new FileStream(data, FileMode.Open, FileAccess.Write)) f.Write(now);
            var e = FailsCleanly(dir, fixture.Pid, children);
            Assert.Contains(data, e.Message);
            Assert.Contains("build id", e.Message);
            Assert.Contains(ElfBuildId.Format(buildId), e.Message);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void UnchangedFilesRestoreAndTheExeHasItsBuildIdInTheImage()
    {
        string dir = NewImagesDir();
        string data = Path.Combine(dir, "data.bin"), log = Path.Combine(dir, "log.txt");
        File.WriteAllBytes(data, System.Text.Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("0123456789abcdef", 1024))));
        using var fixture = FixtureProcess.Start("restore_state", data, log);
        try
        {
            DumpAndKill(fixture, dir);
            Crit.Decode(Path.Combine(dir, $"mm-{fixture.Pid}.img")).Dispose();
            using (var files = Crit.Decode(Path.Combine(dir, "files.img")))
            {
                var exe = files.RootElement.GetProperty("entries").EnumerateArray()
                    .Where(e => e.TryGetProperty("reg", out _)).Select(e => e.GetProperty("reg"))
                    .First(r => r.GetProperty("name").GetString()!.EndsWith("/restore_state", StringComparison.Ordinal));
                Assert.True(exe.GetProperty("build_id").GetArrayLength() >= 4); // 16 (md5/uuid) or 20 (sha1) bytes
                Assert.False(RegEntry(files, data).TryGetProperty("build_id", out _)); // text: not an ELF file
            }
            using var restored = RestoreDetached(dir);
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void BuildIdReaderSurvivesTruncatedAndCorruptElfFiles()
    {
        string dir = NewImagesDir();
        try
        {
            byte[] elf = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "fixtures", "restore_counter"));
            string copy = Path.Combine(dir, "elf");
            File.WriteAllBytes(copy, elf);
            uint[] id = ElfBuildId.ReadPath(copy, elf.Length) ?? throw new InvalidOperationException("no build id");
            Assert.Equal(id.Length * 8, ElfBuildId.Format(id).Length);
            Assert.True(elf.AsSpan().IndexOf(id.SelectMany(BitConverter.GetBytes).Take(16).ToArray()) > 0);
            var random = new Random(3);
            for (int round = 0; round < 300; round++)
            {
                byte[] bad = (byte[])elf.Clone();
                int length = round < 100 ? random.Next(0, Math.Min(bad.Length, 4096)) : bad.Length;
                if (round >= 100)
                    for (int k = 0; k < 8; k++) bad[random.Next(0, Math.Min(bad.Length, 2048))] = (byte)random.Next(256);
                File.WriteAllBytes(copy, bad.AsSpan(0, length).ToArray());
                _ = ElfBuildId.ReadPath(copy, length); // null or an id: never throws, never reads past the end
            }
            Assert.Null(ElfBuildId.ReadPath("/nonexistent/elf", 0));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
