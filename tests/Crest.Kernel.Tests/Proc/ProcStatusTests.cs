using Crest.Kernel.Proc;

namespace Crest.Kernel.Tests.Proc;

public class ProcStatusTests
{
    [Fact]
    public void CapturedStatusHasCredentialsSignalsAndCapabilities()
    {
        var s = ProcStatus.Parse(ProcSamples.Read("status.awkward.txt"));
        Assert.Equal("(a) b)c", s.Name);
        Assert.Equal(0x12u, s.Umask);
        Assert.Equal('S', s.State);
        Assert.Equal(18872, s.Tgid);
        Assert.Equal(0, s.Ngid);
        Assert.Equal(18872, s.Pid);
        Assert.Equal(18870, s.PPid);
        Assert.Equal(0, s.TracerPid);
        Assert.Equal(new ProcIds(0, 0, 0, 0), s.Uid);
        Assert.Equal(new ProcIds(0, 0, 0, 0), s.Gid);
        Assert.Equal(256, s.FdSize);
        Assert.Empty(s.Groups);
        Assert.Equal([18872], s.NsTgid);
        Assert.Equal([18872], s.NsPid);
        Assert.Equal([18864], s.NsPgid);
        Assert.Equal([3091], s.NsSid);
        Assert.Equal(1, s.Threads);
        Assert.Equal(new SignalQueue(4, 96343), s.SigQ);
        Assert.Equal(0ul, s.SigPnd);
        Assert.Equal(0ul, s.ShdPnd);
        Assert.Equal(0ul, s.SigBlk);
        Assert.Equal(6ul, s.SigIgn);
        Assert.Equal(0ul, s.SigCgt);
        Assert.Equal(0ul, s.CapInh);
        Assert.Equal(0x000001fffefffffful, s.CapPrm);
        Assert.Equal(0x000001fffefffffful, s.CapEff);
        Assert.Equal(0x000001fffefffffful, s.CapBnd);
        Assert.Equal(0ul, s.CapAmb);
        Assert.False(s.NoNewPrivs);
        Assert.Equal(0, s.Seccomp);
        Assert.Equal(0, s.SeccompFilters);
        Assert.Equal("vulnerable", s.SpeculationStoreBypass);
        Assert.Equal("always enabled", s.SpeculationIndirectBranch);
        Assert.Equal("3", s.CpusAllowed);
        Assert.Equal("0-1", s.CpusAllowedList);
        Assert.Contains(s.Other, kv => kv.Key == "VmRSS" && kv.Value.EndsWith(" kB"));
        Assert.Contains(s.Other, kv => kv.Key == "Kthread" && kv.Value == "0");
    }

    [Fact]
    public void EscapedNameIsUnescapedAndKeepsItsLeadingSpace()
    {
        var s = ProcStatus.Parse(ProcSamples.Read("status.escaped.txt"));
        Assert.Equal(" a\nb\\c", s.Name);
    }

    [Fact]
    public void GroupsAndNestedNamespaceIds()
    {
        var text = "Name:\tx\nState:\tS (sleeping)\nTgid:\t7\nPid:\t7\nPPid:\t1\nUid:\t1000\t1001\t1002\t1003\n"u8.ToArray()
            .Concat("Gid:\t5\t6\t7\t8\nGroups:\t4 24 27 \nNSpid:\t7\t1\nNoNewPrivs:\t1\nSeccomp:\t2\nFutureKey:\tsomething"u8.ToArray()).ToArray();
        var s = ProcStatus.Parse(text);
        Assert.Equal(new ProcIds(1000, 1001, 1002, 1003), s.Uid);
        Assert.Equal(new ProcIds(5, 6, 7, 8), s.Gid);
        Assert.Equal([4u, 24u, 27u], s.Groups);
        Assert.Equal([7, 1], s.NsPid);
        Assert.True(s.NoNewPrivs);
        Assert.Equal(2, s.Seccomp);
        Assert.Null(s.Umask);
        Assert.Null(s.SigBlk);
        Assert.Equal(new KeyValuePair<string, string>("FutureKey", "something"), Assert.Single(s.Other));
    }

    [Theory]
    [InlineData("", "no Name line")]
    [InlineData("Name:\tx\nState:\tR\nTgid:\t1\nPid:\t1\nPPid:\t0\nUid:\t0\t0\t0\nGid:\t0\t0\t0\t0\n", "missing Uid")]
    [InlineData("Name:\tx\nno colon here\n", "no \"Key:\"")]
    [InlineData("Name:\tx\nSigBlk:\tzz\n", "bad SigBlk")]
    public void BrokenStatusNamesTheProblem(string text, string problem)
    {
        var e = Assert.Throws<ProcParseException>(() => ProcStatus.Parse(System.Text.Encoding.UTF8.GetBytes(text)));
        Assert.Equal(ProcFileKind.Status, e.Kind);
        Assert.Equal(problem, e.Problem);
    }
}
