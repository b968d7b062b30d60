namespace Crest.Kernel.Tests.Interop;

public class ResourceLimitTests
{
    [Fact]
    public void GetrlimitAndPrlimit64AgreeForOurselves()
    {
        foreach (ResourceLimitKind kind in Enum.GetValues<ResourceLimitKind>())
        {
            ResourceLimit own = ResourceLimits.Get(kind);
            Assert.Equal(own, ResourceLimits.Get(0, kind));
            Assert.Equal(own, ResourceLimits.Get(Environment.ProcessId, kind));
        }
    }

    [Fact]
    public void PrlimitOfAChildReadsAndSetsItsLimit()
    {
        using var child = SleepChild.Start();
        child.WaitForSleep();
        ResourceLimit before = ResourceLimits.Get(child.Pid, ResourceLimitKind.NoFile);
        var lowered = new ResourceLimit(64, before.Maximum);
        Assert.Equal(before, ResourceLimits.Set(child.Pid, ResourceLimitKind.NoFile, lowered));
        Assert.Equal(lowered, ResourceLimits.Get(child.Pid, ResourceLimitKind.NoFile));
        Assert.Contains("Max open files            64", File.ReadAllText($"/proc/{child.Pid}/limits"));
    }

    [Fact]
    public void PrlimitOfATaskWithOtherCredsIsEpermWithoutCapSysResource()
    {
        // Crest runs as root without CAP_SYS_RESOURCE in its effective set: prlimit64 on a task
        // whose uids differ must fail with EPERM, which the engine catches to fall back.
        string capEff = File.ReadLines("/proc/self/status").Single(l => l.StartsWith("CapEff:"))["CapEff:".Length..].Trim();
        const int CAP_SYS_RESOURCE = 24;
        Assert.True((Convert.ToUInt64(capEff, 16) & (1UL << CAP_SYS_RESOURCE)) == 0, "this test needs CAP_SYS_RESOURCE absent");
        using var child = SleepChild.StartShell("exec setpriv --reuid=65534 --regid=65534 --clear-groups sleep 30");
        child.WaitForSleep();
        var e = Assert.Throws<KernelException>(() => ResourceLimits.Get(child.Pid, ResourceLimitKind.NoFile));
        Assert.Equal(Errno.EPERM, e.Errno.Value);
        Assert.Equal(child.Pid, e.Task);
        Assert.Equal($"prlimit64(RLIMIT_NOFILE, {child.Pid}): EPERM (Operation not permitted)", e.Message);
    }
}
