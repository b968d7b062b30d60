using Crest.Engine.Tests.Dump;
using Crest.Images;
using Crest.Images.Protos;
using Crest.Kernel.Processes;
using Crest.Kernel.Tests.Fixtures;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Tree;

// An fd table shared by a parent and its child (clone with CLONE_FILES, not CLONE_VM): one files_id in both
// ids images and one fdinfo image; the child is cloned with CLONE_FILES again at restore, so a descriptor
// one of them opens after restore is the other's too. The fixture checks that itself.
[Collection("Children of the test process")]
public class SharedFdTableTests
{
    [Fact]
    public void AnFdTableSharedByCloneFilesIsOneTableAgain()
    {
        using var fixture = FixtureProcess.Start("tree_clone_files");
        int root = fixture.Pid, kid = ProcessTreeTests.Field(fixture, "kid");
        string dir = NewImagesDir();
        try
        {
            DumpAndKill(fixture, dir);
            Crit.DecodeAll(dir);
            TaskKobjIdsEntry Ids(int pid)
            {
                using var reader = ImageReader.Open(Path.Combine(dir, $"ids-{pid}.img"), ImageKinds.Ids);
                return reader.ReadEntries(TaskKobjIdsEntry.Parser).Single();
            }
            Assert.Equal(Ids(root).FilesId, Ids(kid).FilesId);
            Assert.NotEqual(Ids(root).VmId, Ids(kid).VmId);
            Assert.Single(Directory.GetFiles(dir, "fdinfo-*.img"));

            using var restored = RestoreDetached(dir);
            Assert.True(Kcmp.SameObject(kid, root, Kcmp.Shared.Files), "the restored processes have two fd tables");
            Assert.False(Kcmp.SameObject(kid, root, Kcmp.Shared.Vm));
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
