using Crest.Engine.Tests.Dump;
using Crest.Images;
using Crest.Images.Protos;
using Crest.Kernel.Tests.Fixtures;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Restore;

/// <summary>Guard regions (MADV_GUARD_INSTALL) and classic PROT_NONE guards come back after dump, kill and restore.</summary>
[Collection("Children of the test process")]
public class GuardRegionTests
{
    private const ulong Page = 4096;

    [Fact]
    public void GuardRegionsAndGuardMappingsSurviveRestore()
    {
        using var fixture = FixtureProcess.Start("guard_pages");
        Assert.False(fixture.Ready.ContainsKey("nomadvguard"), "this kernel refuses MADV_GUARD_INSTALL (Linux 6.13+ needed)");
        ulong area = fixture.ReadyAddress("area"), fpriv = fixture.ReadyAddress("fpriv"), fshared = fixture.ReadyAddress("fshared");
        int pid = fixture.Pid;
        string dir = NewImagesDir();
        try
        {
            DumpAndKill(fixture, dir);
            string mmImage = Path.Combine(dir, $"mm-{pid}.img");
            // crit keeps our extension field as unknown and still decodes the image.
            using (var decoded = Crit.Decode(mmImage))
                Assert.True(decoded.RootElement.GetProperty("entries")[0].GetProperty("vmas").GetArrayLength() > 0);
            MmEntry mm;
            using (var reader = ImageReader.Open(mmImage, ImageKinds.Mm))
                mm = reader.ReadEntries(MmEntry.Parser).Single();
            var guarded = mm.Vmas.Single(v => v.Start == area);
            Assert.Equal([area + 2 * Page, area + 3 * Page, area + 5 * Page, area + 7 * Page], guarded.CrestGuardRanges.ToArray());
            Assert.Equal([fpriv + Page, fpriv + 2 * Page], mm.Vmas.Single(v => v.Start == fpriv).CrestGuardRanges.ToArray());
            Assert.Equal([fshared + Page, fshared + 2 * Page], mm.Vmas.Single(v => v.Start == fshared).CrestGuardRanges.ToArray());
            Assert.Equal(3, mm.Vmas.Count(v => v.CrestGuardRanges.Count > 0));

            using var restored = RestoreDetached(dir);
            Assert.Equal(pid, restored.Pid);
            AssertPass(Verify(restored, fixture));
            Assert.Contains("faults=6", fixture.Output);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
