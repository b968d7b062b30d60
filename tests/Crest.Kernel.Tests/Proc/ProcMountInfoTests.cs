using System.Text;
using Crest.Kernel.Proc;

namespace Crest.Kernel.Tests.Proc;

public class ProcMountInfoTests
{
    [Fact]
    public void CapturedMountInfoParses()
    {
        var mounts = ProcMountInfo.Parse(ProcSamples.Read("mountinfo.txt"));
        Assert.NotEmpty(mounts);
        var proc = mounts[0];
        Assert.Equal((22, 27, 0u, 21u, "/", "/proc", "rw,relatime"), (proc.MountId, proc.ParentId, proc.Major, proc.Minor, proc.Root, proc.MountPoint, proc.MountOptions));
        Assert.Equal(("proc", "proc", "rw"), (proc.FsType, proc.Source, proc.SuperOptions));
        Assert.Null(proc.SharedGroup);
        Assert.Contains(mounts, m => m.MountPoint == "/" );
    }

    [Fact]
    public void EscapesOptionalFieldsAndEmptySource()
    {
        var m = ProcMountInfo.Parse(ProcSamples.Read("mountinfo.awkward.txt"));
        Assert.Equal(5, m.Count);
        Assert.Equal((int?)5, m[0].SharedGroup);
        Assert.Equal(("ext4", "/dev/root", 254u), (m[1].FsType, m[1].Source, m[1].Major));

        Assert.Equal("/mnt/with space", m[2].MountPoint);
        Assert.Equal(((int?)null, (int?)3, (int?)7), (m[2].SharedGroup, m[2].MasterGroup, m[2].PropagateFrom));
        Assert.Equal(("tmpfs", "", "rw,size=1024k"), (m[2].FsType, m[2].Source, m[2].SuperOptions));

        Assert.Equal("/sub\tdir", m[3].Root);
        Assert.Equal("/mnt/new\nline\\back", m[3].MountPoint);
        Assert.True(m[3].Unbindable);
        Assert.Equal(("fuse.sshfs", "user@host:/a b", "ro"), (m[3].FsType, m[3].Source, m[3].MountOptions));

        Assert.Equal(((int?)9, (int?)2), (m[4].SharedGroup, m[4].MasterGroup));
        Assert.Equal(["future:1"], m[4].OtherOptionalFields);
        Assert.Equal("rw,lowerdir=/l,upperdir=/u,workdir=/w", m[4].SuperOptions);
    }

    [Fact]
    public void EmptyMountInfoIsEmpty() => Assert.Empty(ProcMountInfo.Parse([]));

    [Theory]
    [InlineData("22 27 0:21 / /proc rw,relatime shared:5 proc proc rw", "missing \"-\" separator")]
    [InlineData("22 27 021 / /proc rw - proc proc rw", "device is not major:minor")]
    [InlineData("22 27 0:21 / /proc rw shared:x - proc proc rw", "bad shared peer group")]
    [InlineData("22 27 0:21 / /proc rw -", "missing filesystem type")]
    public void BrokenMountInfoNamesTheProblem(string text, string problem)
    {
        var e = Assert.Throws<ProcParseException>(() => ProcMountInfo.Parse(Encoding.ASCII.GetBytes(text)));
        Assert.Equal((ProcFileKind.MountInfo, 1, problem), (e.Kind, e.Line, e.Problem));
    }
}

public class ProcTimersTests
{
    [Fact]
    public void CapturedTimerHasSignalValueAndClock()
    {
        var t = Assert.Single(ProcTimers.Parse(ProcSamples.Read("timers.awkward.txt")));
        Assert.Equal(new PosixTimerInfo(0, 35, 0x55, SigevNotify.Signal, false, 18872, 1), t);
        Assert.Equal(0, t.SigevNotifyValue);
    }

    [Fact]
    public void ThreadTargetedAndSilentTimers()
    {
        var timers = ProcTimers.Parse(ProcSamples.Read("timers.multi.txt"));
        Assert.Equal([2, 1, 0], timers.Select(t => t.Id));
        Assert.Equal(new PosixTimerInfo(2, 14, 0, SigevNotify.Signal, true, 11382, 7), timers[0]);
        Assert.Equal(4, timers[0].SigevNotifyValue);
        Assert.Equal((SigevNotify.None, 1, 0), (timers[1].Notify, timers[1].SigevNotifyValue, timers[1].ClockId));
        Assert.Empty(ProcTimers.Parse([]));
    }

    [Theory]
    [InlineData("signal: 14/0\n", "line before the first ID:")]
    [InlineData("ID: 1\nsignal: 14/0\nClockID: 0\n", "timer 1 lacks signal:, notify: or ClockID:")]
    [InlineData("ID: 1\nsignal: 14/0\nnotify: bogus/pid.1\nClockID: 0\n", "unknown notify kind")]
    [InlineData("ID: 1\nsignal: 14/0\nnotify: signal/pgid.1\nClockID: 0\n", "notify target is neither pid nor tid")]
    public void BrokenTimersNamesTheProblem(string text, string problem)
    {
        var e = Assert.Throws<ProcParseException>(() => ProcTimers.Parse(Encoding.ASCII.GetBytes(text)));
        Assert.Equal((ProcFileKind.Timers, problem), (e.Kind, e.Problem));
    }
}

public class ProcLimitsTests
{
    [Fact]
    public void EveryRowMapsToItsRlimitNumber()
    {
        var limits = ProcLimits.Parse(ProcSamples.Read("limits.txt"));
        Assert.Equal(Enumerable.Range(0, 16), limits.Select(l => l.Resource));
        Assert.Equal(new ProcLimit(ProcLimits.RLIMIT_CPU, "Max cpu time", ProcLimit.Unlimited, ProcLimit.Unlimited, "seconds"), limits[0]);
        Assert.Equal(new ProcLimit(ProcLimits.RLIMIT_STACK, "Max stack size", 8388608, ProcLimit.Unlimited, "bytes"), limits[3]);
        Assert.Equal((20000ul, 20000ul, "files"), (limits[ProcLimits.RLIMIT_NOFILE].Soft, limits[7].Hard, limits[7].Units));
        Assert.Equal(("Max nice priority", ""), (limits[ProcLimits.RLIMIT_NICE].Name, limits[13].Units));
        Assert.Equal("us", limits[ProcLimits.RLIMIT_RTTIME].Units);
    }

    [Fact]
    public void EmptyLimitsIsEmpty() => Assert.Empty(ProcLimits.Parse([]));

    [Fact]
    public void UnknownResourceIsKeptWithoutANumber()
    {
        var text = "Limit                     Soft Limit           Hard Limit           Units     \nMax future thing          7                    unlimited            widgets   \n"u8;
        Assert.Equal(new ProcLimit(-1, "Max future thing", 7, ProcLimit.Unlimited, "widgets"), Assert.Single(ProcLimits.Parse(text)));
    }

    [Theory]
    [InlineData("Max cpu time  1 2 s\n", "no \"Limit\" header")]
    [InlineData("Limit x\nMax cpu time              1\n", "missing hard limit")]
    [InlineData("Limit x\nMax cpu time              1 lots s\n", "bad limit")]
    public void BrokenLimitsNamesTheProblem(string text, string problem)
    {
        var e = Assert.Throws<ProcParseException>(() => ProcLimits.Parse(Encoding.ASCII.GetBytes(text)));
        Assert.Equal((ProcFileKind.Limits, problem), (e.Kind, e.Problem));
    }
}

public class ProcAuxvTests
{
    [Fact]
    public void CapturedAuxvEndsAtAtNull()
    {
        var auxv = ProcAuxv.Parse(ProcSamples.Read("auxv.bin"));
        Assert.Equal(22, auxv.Count);
        Assert.Equal(new AuxvEntry(AuxvType.AT_SYSINFO_EHDR, 140336772526080), auxv[0]);
        Assert.Equal(new AuxvEntry(AuxvType.AT_PAGESZ, 4096), auxv.Single(e => e.Type == AuxvType.AT_PAGESZ));
        Assert.Equal(94273619731888ul, auxv.Single(e => e.Type == AuxvType.AT_ENTRY).Value);
        Assert.DoesNotContain(auxv, e => e.Type == AuxvType.AT_NULL);
    }

    [Fact]
    public void EmptyAuxvOfAKernelThreadIsEmpty() => Assert.Empty(ProcAuxv.Parse([]));

    [Fact]
    public void OddLengthMissingTerminatorAndTrailingDataAreErrors()
    {
        byte[] good = ProcSamples.Read("auxv.bin");
        Assert.Equal("length 367 is not a multiple of 16",
            Assert.Throws<ProcParseException>(() => ProcAuxv.Parse(good.AsSpan(0, good.Length - 1))).Problem);
        Assert.Equal("no AT_NULL at the end",
            Assert.Throws<ProcParseException>(() => ProcAuxv.Parse(good.AsSpan(0, good.Length - 16))).Problem);
        Assert.Equal("data after AT_NULL",
            Assert.Throws<ProcParseException>(() => ProcAuxv.Parse([.. good, .. new byte[16]])).Problem);
    }
}
