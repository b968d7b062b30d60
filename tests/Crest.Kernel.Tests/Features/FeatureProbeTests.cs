using System.Text;
using Crest.Kernel.Features;

namespace Crest.Kernel.Tests.Features;

// Each probe against this machine's kernel (6.18, root): everything the engine relies on is there
// except soft-dirty (this kernel is built without CONFIG_MEM_SOFT_DIRTY).
public class FeatureProbeTests
{
    [Fact]
    public void PidfdOpenAndGetfdArePresent()
    {
        Assert.True(FeatureProbes.ProbePidfdOpen().Present);
        var getfd = FeatureProbes.ProbePidfdGetfd();
        Assert.True(getfd.Present, getfd.ToString());
    }

    [Fact]
    public void ProcessVmReadvCopiesOurOwnMemory() => AssertPresent(FeatureProbes.ProbeProcessVmReadv());

    [Fact]
    public void Clone3SetTidIsRefusedWithEexistForOurOwnPid()
    {
        var clone3 = FeatureProbes.ProbeClone3SetTid();
        Assert.True(clone3.Present, clone3.ToString());
        Assert.Contains("EEXIST", clone3.Detail);
        Assert.Contains("CAP_CHECKPOINT_RESTORE yes", clone3.Detail);
    }

    [Fact]
    public void PrctlMmMapReportsTheStructSize()
    {
        var mm = FeatureProbes.ProbePrctlMmMap();
        Assert.True(mm.Present, mm.ToString());
        Assert.Equal("struct prctl_mm_map is 104 bytes", mm.Detail);
    }

    [Fact]
    public void TimerCreateRestoreIdsAnswers()
    {
        var timers = FeatureProbes.ProbeTimerRestoreIds();
        Assert.True(timers.Present, timers.ToString());
        Assert.Equal("mode off", timers.Detail);
    }

    [Fact]
    public void PagemapScanFindsExactlyTheTouchedPages() => AssertPresent(FeatureProbes.ProbePagemapScan());

    [Fact]
    public void PagemapScanFindsTheInstalledGuardPage() => AssertPresent(FeatureProbes.ProbePagemapScanGuardPages());

    [Fact]
    public void SoftDirtyIsReportedMissingOnThisKernel()
    {
        var softDirty = FeatureProbes.ProbeSoftDirty();
        Assert.False(softDirty.Present);
        Assert.Contains("bit 55 stayed clear after a write", softDirty.Detail);
    }

    [Fact]
    public void UserfaultfdOffersAsyncWriteProtectAndItTracksAWrite()
    {
        var uffd = FeatureProbes.ProbeUserfaultfd();
        Assert.True(uffd.Userfaultfd.Present, uffd.Userfaultfd.ToString());
        Assert.True(uffd.NonCooperative.Present, uffd.NonCooperative.ToString());
        Assert.True(uffd.WriteProtectAsync.Present, uffd.WriteProtectAsync.ToString());
        Assert.NotEqual(0UL, uffd.Features & FeatureProbes.UFFD_FEATURE_WP_ASYNC);
    }

    [Fact]
    public void TcpRepairIsAcceptedOnFreshAndHalfClosedSockets()
    {
        AssertPresent(FeatureProbes.ProbeTcpRepair());
        AssertPresent(FeatureProbes.ProbeTcpHalfClosed());
    }

    [Fact]
    public void FileAndNamespaceProbesArePresent()
    {
        AssertPresent(FeatureProbes.ProbeTimerfd());
        AssertPresent(FeatureProbes.ProbeKcmpEpoll());
        AssertPresent(FeatureProbes.ProbeMapFiles());
        AssertPresent(FeatureProbes.ProbeFdinfoMntId());
        AssertPresent(FeatureProbes.ProbeUserNamespace());
    }

    [Fact]
    public void VdsoLayoutOfThisKernelIsThreeAdjacentAreas()
    {
        var vdso = FeatureProbes.ProbeVdsoLayout();
        Assert.True(vdso.Present, vdso.ToString());
        Assert.Equal("[vvar] 4 pages, [vvar_vclock] 2 pages, [vdso] 2 pages, adjacent", vdso.Detail);
    }

    [Fact]
    public void VdsoLayoutParserHandlesOlderAndOddMaps()
    {
        const string older = """
            55d0c0a00000-55d0c0a02000 r--p 00000000 08:01 1234                       /usr/bin/cat
            7ffd1b5f0000-7ffd1b611000 rw-p 00000000 00:00 0                          [stack]
            7ffd1b7e5000-7ffd1b7e9000 r--p 00000000 00:00 0                          [vvar]
            7ffd1b7e9000-7ffd1b7eb000 r-xp 00000000 00:00 0                          [vdso]   
            ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
            """;
        var areas = FeatureProbes.ParseVdsoLayout(Encoding.ASCII.GetBytes(older));
        Assert.Equal(["[vvar]", "[vdso]"], areas.Select(a => a.Name));
        Assert.Equal(0x7ffd1b7e9000UL, areas[1].Start);
        Assert.Equal(2UL, areas[1].Pages);
        Assert.Equal("[vvar] 4 pages, [vdso] 2 pages, adjacent", FeatureProbes.DescribeVdsoLayout(areas).Detail);

        const string apart = "7f0000002000-7f0000003000 r-xp 00000000 00:00 0 [vdso]\n7f0000000000-7f0000001000 r--p 00000000 00:00 0 [vvar]";
        var split = FeatureProbes.ParseVdsoLayout(Encoding.ASCII.GetBytes(apart));
        Assert.Equal("[vvar] 1 page, [vdso] 1 page, not adjacent", FeatureProbes.DescribeVdsoLayout(split).Detail);

        var none = FeatureProbes.ParseVdsoLayout("garbage\n\n-\n zz-yy r 0 0 0 [vdso]\n"u8);
        Assert.False(FeatureProbes.DescribeVdsoLayout(none).Present);
    }

    private static void AssertPresent(ProbeResult result) => Assert.True(result.Present, result.ToString());
}
