using Crest.Kernel.Proc;
using Crest.Kernel.Tests.Fixtures;

namespace Crest.Kernel.Tests.Proc;

/// <summary>The parsers against the live /proc files of this test process and of tests/fixtures/proc_awkward.</summary>
public class ProcLiveTests
{
    private static readonly int Self = Environment.ProcessId;

    [Fact]
    public void ThisProcessStatAndStatusAgree()
    {
        var stat = ProcStat.Parse(ProcFile.ReadAll(Self, "stat"));
        var status = ProcStatus.Parse(ProcFile.ReadAll(Self, "status"));
        Assert.Equal(Self, stat.Pid);
        Assert.Equal(Self, status.Pid);
        Assert.Equal(Self, status.Tgid);
        Assert.Equal(stat.Ppid, status.PPid);
        Assert.Equal(stat.Comm, status.Name);
        Assert.True(stat.NumThreads > 1, ".NET runs several threads");
        Assert.Equal(stat.NumThreads, (long)status.Threads!.Value);
        Assert.True(stat.ArgStart < stat.ArgEnd && stat.ArgEnd <= stat.EnvStart && stat.EnvStart < stat.EnvEnd);
        Assert.NotNull(status.CapEff);
        Assert.Equal(Self, status.NsPid[^1]);
    }

    [Fact]
    public void ThisProcessMapsAndSmapsDescribeTheRuntime()
    {
        var maps = ProcMaps.Parse(ProcFile.ReadAll(Self, "maps"));
        var smaps = ProcSmaps.Parse(ProcFile.ReadAll(Self, "smaps"));
        Assert.Contains(maps, v => v.Kind == VmaKind.File && v.Path!.EndsWith("/libcoreclr.so", StringComparison.Ordinal));
        Assert.Contains(maps, v => v.Kind == VmaKind.Stack);
        Assert.Contains(maps, v => v.Kind == VmaKind.Vdso);
        Assert.All(maps, v => Assert.True(v.Start < v.End));
        Assert.All(smaps, s => Assert.True(s.HasVmFlags));
        Assert.All(smaps, s => Assert.Equal((long)(s.Vma.Size / 1024), s.SizeKb));
        // The runtime maps and unmaps memory from other threads, so compare a stable part: the libraries.
        var files = maps.Where(v => v.Kind == VmaKind.File && v.Path!.EndsWith(".so", StringComparison.Ordinal)).Select(v => (v.Start, v.Path)).ToHashSet();
        Assert.Superset(files, smaps.Where(s => s.Vma.Kind == VmaKind.File && s.Vma.Path!.EndsWith(".so", StringComparison.Ordinal)).Select(s => (s.Vma.Start, s.Vma.Path)).ToHashSet());
    }

    [Fact]
    public void ThisProcessLimitsAuxvMountInfoTimersAndFdInfo()
    {
        var limits = ProcLimits.Parse(ProcFile.ReadAll(Self, "limits"));
        Assert.Equal(Enumerable.Range(0, 16), limits.Select(l => l.Resource));

        var auxv = ProcAuxv.Parse(ProcFile.ReadAll(Self, "auxv"));
        Assert.Equal((ulong)Environment.SystemPageSize, auxv.Single(e => e.Type == AuxvType.AT_PAGESZ).Value);

        var mounts = ProcMountInfo.Parse(ProcFile.ReadAll(Self, "mountinfo"));
        Assert.Contains(mounts, m => m.MountPoint == "/proc" && m.FsType == "proc");

        ProcTimers.Parse(ProcFile.ReadAll(Self, "timers"));

        int parsed = 0;
        foreach (string fd in Directory.GetFiles($"/proc/{Self}/fdinfo"))
        {
            byte[] text;
            try
            {
                text = ProcFile.ReadAll(fd, Self);
            }
            catch (KernelException e) when (e.Errno.Value == Errno.ENOENT)
            {
                continue; // closed by another thread since the listing
            }
            var info = FdInfo.Parse(text);
            Assert.True(info.Pos >= 0);
            parsed++;
        }
        Assert.True(parsed >= 3, "stdin, stdout and stderr at least");
    }

    [Fact]
    public void AwkwardProcessFilesParse()
    {
        string dir = Directory.CreateTempSubdirectory("crest-proc-").FullName;
        try
        {
            using var child = FixtureProcess.Start("proc_awkward", dir);
            string ready = child.WaitForLine("READY", FixtureProcess.DefaultTimeout);
            int[] fds = ready.Split(' ')[1..].Select(int.Parse).ToArray();
            Assert.Equal(8, fds.Length);
            CheckAwkwardProcess(child.Pid, dir, fds);
            child.Child.Signal(15);
            var status = child.Child.WaitForExit(FixtureProcess.DefaultTimeout);
            Assert.True(status.Exited && status.ExitCode == 0, $"proc_awkward ended {status}");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static void CheckAwkwardProcess(int pid, string dir, int[] fds)
    {
        // READY is printed just before sigwait: under load the fixture may still be running (R) when we look.
        var stat = ProcStat.Parse(ProcFile.ReadAll(pid, "stat"));
        var deadline = DateTime.UtcNow + FixtureProcess.DefaultTimeout;
        while (stat.State != 'S' && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(5);
            stat = ProcStat.Parse(ProcFile.ReadAll(pid, "stat"));
        }
        Assert.Equal((pid, "(a) b)c", 'S'), (stat.Pid, stat.Comm, stat.State));
        Assert.Equal(Self, stat.Ppid);
        Assert.Equal("(a) b)c", ProcStatus.Parse(ProcFile.ReadAll(pid, "status")).Name);

        var maps = ProcMaps.Parse(ProcFile.ReadAll(pid, "maps"));
        var low = maps.Single(v => v.Start == 0x10000000);
        Assert.Equal((0x10001000ul, VmaKind.Anonymous), (low.End, low.Kind));
        Assert.False(maps.Single(v => v.Path == $"{dir}/with space.bin").IsDeleted);
        Assert.False(maps.Single(v => v.Path == $"{dir}/new\nline.bin").IsDeleted);
        Assert.False(maps.Single(v => v.Path == $"{dir}/ leading.bin").IsDeleted);
        Assert.True(maps.Single(v => v.Path == $"{dir}/gone.bin").IsDeleted);

        var smaps = ProcSmaps.Parse(ProcFile.ReadAll(pid, "smaps"));
        Assert.Equal(maps.Select(v => (v.Start, v.End, v.Kind, v.Path, v.IsDeleted)),
            smaps.Select(s => (s.Vma.Start, s.Vma.End, s.Vma.Kind, s.Vma.Path, s.Vma.IsDeleted)));

        var timer = Assert.Single(ProcTimers.Parse(ProcFile.ReadAll(pid, "timers")));
        Assert.Equal((35, 0x55ul, SigevNotify.Signal, pid, 1), (timer.Signal, timer.SigevValue, timer.Notify, timer.NotifyTarget, timer.ClockId));

        FdInfo Fd(int i) => FdInfo.Parse(ProcFile.ReadAll(pid, $"fdinfo/{fds[i]}"));
        Assert.Equal(new EventFdInfo(5, Fd(0).EventFd!.Id, true), Fd(0).EventFd);
        var target = Assert.Single(Fd(1).EpollTargets);
        Assert.Equal((fds[0], 0x1234ul), (target.Tfd, target.Data));
        Assert.Equal((1ul << 9) | (1ul << 14), Fd(2).SignalMask);
        var timerFd = Fd(3).TimerFd!;
        Assert.Equal((1, 1L, 500L), (timerFd.ClockId, timerFd.IntervalSeconds, timerFd.IntervalNanoseconds));
        Assert.Single(Fd(4).InotifyWatches);
        Assert.Equal(pid, Fd(5).PidfdPid);
        Assert.NotNull(Fd(6).TtyIndex);
        var lockInfo = Assert.Single(Fd(7).Locks);
        Assert.Equal(("POSIX", "WRITE", pid, 0L, (long?)99), (lockInfo.Type, lockInfo.Access, lockInfo.Pid, lockInfo.Start, lockInfo.End));
    }
}
