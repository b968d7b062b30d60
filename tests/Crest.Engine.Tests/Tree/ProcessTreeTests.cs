using Crest.Engine.Tests.Dump;
using Crest.Images;
using Crest.Images.Protos;
using Crest.Kernel.Tests.Fixtures;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Tree;

/// <summary>Trees of processes: pstree.img, exact pids and parents, sessions, groups, zombies, shared pipes and files.</summary>
[Collection("Children of the test process")]
public class ProcessTreeTests
{
    internal static void DecodeAll(string dir)
    {
        foreach (string image in Directory.GetFiles(dir, "*.img"))
        {
            if (Path.GetFileName(image).StartsWith("pages-", StringComparison.Ordinal)) continue; // raw pages
            Crit.Decode(image).Dispose();
        }
    }

    internal static List<PstreeEntry> ReadPstree(string dir)
    {
        using var reader = ImageReader.Open(Path.Combine(dir, "pstree.img"), ImageKinds.Pstree);
        return reader.ReadEntries(PstreeEntry.Parser).ToList();
    }

    internal static int Field(FixtureProcess fixture, string name) =>
        int.Parse(fixture.Ready[name], System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public void AThreeLevelTreeComesBackWithItsPidsAndParents()
    {
        using var fixture = FixtureProcess.Start("tree_fork");
        int root = fixture.Pid, a = Field(fixture, "a"), b = Field(fixture, "b");
        string dir = NewImagesDir();
        try
        {
            DumpAndKill(fixture, dir);
            DecodeAll(dir);
            var pstree = ReadPstree(dir);
            Assert.Equal(4, pstree.Count);
            Assert.Equal((uint)root, pstree[0].Pid);
            Assert.Equal(0u, pstree[0].Ppid);
            Assert.Equal((uint)root, pstree.Single(e => e.Pid == (uint)a).Ppid);
            Assert.Equal((uint)root, pstree.Single(e => e.Pid == (uint)b).Ppid);
            var c = pstree.Single(e => e.Ppid == (uint)a);
            Assert.All(pstree, e => Assert.Equal((uint)root, e.Sid));   // the fixture leads its own session
            Assert.Equal(4, pstree.Select(e => e.Pid).Distinct().Count());
            Assert.Equal(4, Directory.GetFiles(dir, "pages-*.img").Length);
            Assert.Equal(4, Directory.GetFiles(dir, "fdinfo-*.img").Length);

            using var restored = RestoreDetached(dir);
            Assert.Equal(root, restored.Pid);
            foreach (var e in pstree)
            {
                string stat = File.ReadAllText($"/proc/{e.Pid}/stat");
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (e.Pid != (uint)root) Assert.Equal(e.Ppid.ToString(System.Globalization.CultureInfo.InvariantCulture), fields[1]);
                Assert.Equal(e.Pgid.ToString(System.Globalization.CultureInfo.InvariantCulture), fields[2]);
                Assert.Equal(e.Sid.ToString(System.Globalization.CultureInfo.InvariantCulture), fields[3]);
            }
            AssertPass(Verify(restored, fixture));
            Assert.False(Exists((int)c.Pid));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
