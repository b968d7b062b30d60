using System.Text;
using Crest.Kernel.Proc;

namespace Crest.Kernel.Tests.Proc;

public class ProcFdInfoTests
{
    private static FdInfo Sample(string name) => FdInfo.Parse(ProcSamples.Read(name));

    [Fact]
    public void EventFdCountIsHexWithIdAndSemaphore()
    {
        var info = Sample("fdinfo.eventfd.txt");
        Assert.Equal((0L, 02u, (int?)17, (ulong?)26), (info.Pos, info.Flags, info.MntId, info.Ino));
        Assert.Equal(new EventFdInfo(5, 1, true), info.EventFd);
        Assert.Empty(info.EpollTargets);
        Assert.Null(info.TimerFd);
        Assert.Empty(info.Other);
    }

    [Fact]
    public void EpollListsEveryTarget()
    {
        Assert.Equal(new EpollTarget(3, 0x1d, 0x1234, 0, 0x1a, 0x10), Assert.Single(Sample("fdinfo.epoll.txt").EpollTargets));
        var two = Sample("fdinfo.epoll-two.txt");
        Assert.Equal(Convert.ToUInt32("2000002", 8), two.Flags);
        Assert.Equal(
            [new EpollTarget(5, 0x80000019, 7, 0, 0x98be, 0xf), new EpollTarget(3, 0x1d, 0x1234, 0, 0x1a, 0x10)],
            two.EpollTargets);
    }

    [Fact]
    public void SignalFdMaskHasSigusr1AndSigterm()
    {
        // Bit n-1 is signal n: SIGUSR1 = 10, SIGTERM = 15.
        Assert.Equal((1ul << 9) | (1ul << 14), Sample("fdinfo.signalfd.txt").SignalMask);
    }

    [Fact]
    public void TimerFdHasClockTicksAndBothTimespecs()
    {
        var t = Sample("fdinfo.timerfd.txt").TimerFd;
        Assert.NotNull(t);
        Assert.Equal((1, 0ul, 0u), (t.ClockId, t.Ticks, t.SettimeFlags));
        Assert.Equal((98L, 950745755L), (t.ValueSeconds, t.ValueNanoseconds));
        Assert.Equal((1L, 500L), (t.IntervalSeconds, t.IntervalNanoseconds));
    }

    [Fact]
    public void InotifyWatchesCarryTheirFileHandles()
    {
        var w = Assert.Single(Sample("fdinfo.inotify.txt").InotifyWatches);
        Assert.Equal((1, 0xb1e648ul, 0xfe00000u, 0x300u, 0u), (w.Wd, w.Ino, w.Sdev, w.Mask, w.IgnoredMask));
        Assert.NotNull(w.Handle);
        Assert.Equal((8, 1), (w.Handle.Bytes, w.Handle.Type));
        Assert.Equal(Convert.FromHexString("48e6b100c3ba1f35"), w.Handle.Handle);
        Assert.Equal([2, 1], Sample("fdinfo.inotify-two.txt").InotifyWatches.Select(x => x.Wd));
    }

    [Fact]
    public void FanotifyGroupAndMountAndInodeMarks()
    {
        var f = Sample("fdinfo.fanotify.txt").Fanotify;
        Assert.NotNull(f);
        Assert.Equal((0u, 0x8000u), (f.Flags, f.EventFlags));
        Assert.Equal(2, f.Marks.Count);
        var mount = f.Marks[0];
        Assert.Equal((FanotifyMarkKind.Mount, (int?)0x1b, 0u, 0x20ul), (mount.Kind, mount.MntId, mount.MFlags, mount.Mask));
        Assert.Null(mount.Sdev);
        Assert.Null(mount.Handle);
        var inode = f.Marks[1];
        Assert.Equal((FanotifyMarkKind.Inode, (ulong?)0x3c570, (uint?)0xfe00000, 0x28ul), (inode.Kind, inode.Ino, inode.Sdev, inode.Mask));
        Assert.Equal(Convert.FromHexString("70c5030000000000"), inode.Handle!.Handle);
    }

    [Fact]
    public void FanotifyMountNamespaceMarkOnTheLastLineWithoutNewline()
    {
        // Captured on 6.18: the kernel prints this mark without a trailing newline.
        var f = Sample("fdinfo.fanotify-mntns.txt").Fanotify!;
        Assert.Equal(0x4000u, f.Flags);
        var mark = Assert.Single(f.Marks);
        Assert.Equal((FanotifyMarkKind.MountNamespace, (ulong?)4026531832, 0x3000000ul), (mark.Kind, mark.MntNs, mark.Mask));
        Assert.Null(mark.Sdev);
    }

    [Fact]
    public void FanotifySuperblockMark()
    {
        var f = FdInfo.Parse("pos:\t0\nflags:\t02\nfanotify flags:10 event-flags:0\nfanotify sdev:fe00001 mflags:1 mask:20 ignored_mask:8\n"u8).Fanotify!;
        Assert.Equal(new FanotifyMark(FanotifyMarkKind.Superblock, null, null, null, 0xfe00001, 1, 0x20, 8, null), Assert.Single(f.Marks));
    }

    [Fact]
    public void PosixAndFlockLocks()
    {
        var posix = Assert.Single(Sample("fdinfo.lock.txt").Locks);
        Assert.Equal(new FileLockInfo(1, "POSIX", "ADVISORY", "WRITE", 18872, 0xfe, 0, 11658946, 0, 99), posix);
        var flock = Assert.Single(Sample("fdinfo.flock.txt").Locks);
        Assert.Equal(("FLOCK", "READ", (long?)null), (flock.Type, flock.Access, flock.End));
        Assert.Equal(Convert.ToUInt32("102002", 8), Sample("fdinfo.flock.txt").Flags);
    }

    [Fact]
    public void PidFdPtyAndPlainFiles()
    {
        var pidfd = Sample("fdinfo.pidfd.txt");
        Assert.Equal((int?)18872, pidfd.PidfdPid);
        Assert.Equal([18872], pidfd.PidfdNsPid);
        Assert.Equal(Convert.ToUInt32("2000002", 8), pidfd.Flags);
        Assert.Equal((int?)0, Sample("fdinfo.pty.txt").TtyIndex);
        var memfd = Sample("fdinfo.memfd.txt");
        Assert.Equal((0, Convert.ToUInt32("2100002", 8), (ulong?)89), (memfd.MntId ?? -1, memfd.Flags, memfd.Ino));
        Assert.Null(memfd.EventFd);
        Assert.Empty(memfd.Other);
    }

    [Fact]
    public void UnknownLinesAreKept()
    {
        var info = FdInfo.Parse("pos:\t10\nflags:\t0100000\nmnt_id:\t5\nino:\t9\nSqMask:\t0x3f\nmap_type:\t1\n  free form line\n"u8);
        Assert.Equal(10, info.Pos);
        Assert.Equal([new("SqMask", "0x3f"), new("map_type", "1"), new KeyValuePair<string, string>("free form line", "")], info.Other);
    }

    [Theory]
    [InlineData("", "no pos line")]
    [InlineData("pos:\t0\nflags:\t0\nfanotify mnt_id:1b mflags:0 mask:20 ignored_mask:0\n", "fanotify marks without the fanotify flags line")]
    [InlineData("pos:\t0\nflags:\t0\nfanotify flags:0 event-flags:0\nfanotify mflags:0 mask:20 ignored_mask:0\n", "missing sdev")]
    [InlineData("pos:\t0\n", "no flags line")]
    [InlineData("pos:\t0\nflags:\t09\n", "bad flags")]
    [InlineData("pos:\t0\nflags:\t0\nclockid: 1\n", "timerfd clockid without it_value and it_interval")]
    [InlineData("pos:\t0\nflags:\t0\nit_value: 1, 2\n", "it_value is not (seconds, nanoseconds)")]
    [InlineData("pos:\t0\nflags:\t0\ninotify wd:1 ino:1 sdev:0 mask:1 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:00\n", "f_handle length does not match fhandle-bytes")]
    [InlineData("pos:\t0\nflags:\t0\ntfd: 3 events: 1d data: 1 pos:0 ino:1a\n", "missing sdev")]
    [InlineData("pos:\t0\nflags:\t0\nlock:\t1: POSIX ADVISORY WRITE 1 fe:00 0 EOF\n", "lock device is not MAJ:MIN:INODE")]
    public void BrokenFdInfoNamesTheProblem(string text, string problem)
    {
        var e = Assert.Throws<ProcParseException>(() => FdInfo.Parse(Encoding.ASCII.GetBytes(text)));
        Assert.Equal((ProcFileKind.FdInfo, problem), (e.Kind, e.Problem));
    }
}
