using Crest.Kernel.Proc;

namespace Crest.Kernel.Tests.Proc;

public class ProcStatTests
{
    [Fact]
    public void CommWithParenthesesAndSpacesEndsAtTheLastParenthesis()
    {
        var stat = ProcStat.Parse(ProcSamples.Read("stat.awkward.txt"));
        Assert.Equal(18872, stat.Pid);
        Assert.Equal("(a) b)c", stat.Comm);
        Assert.Equal('S', stat.State);
        Assert.Equal(18870, stat.Ppid);
        Assert.Equal(18864, stat.Pgrp);
        Assert.Equal(3091, stat.Session);
        Assert.Equal(0, stat.TtyNr);
        Assert.Equal(-1, stat.Tpgid);
        Assert.Equal(4194304u, stat.Flags);
        Assert.Equal(110ul, stat.MinFlt);
        Assert.Equal(20, stat.Priority);
        Assert.Equal(1, stat.NumThreads);
        Assert.Equal(323547ul, stat.StartTime);
        Assert.Equal(2555904ul, stat.VSize);
        Assert.Equal(365ul, stat.Rss);
        Assert.Equal(ulong.MaxValue, stat.RssLim);
        Assert.Equal(94273619730432ul, stat.StartCode);
        Assert.Equal(94273619732373ul, stat.EndCode);
        Assert.Equal(140727431267504ul, stat.StartStack);
        Assert.Equal(6ul, stat.SigIgnore);
        Assert.Equal(1ul, stat.WChan);
        Assert.Equal(17, stat.ExitSignal);
        Assert.Equal(0, stat.Processor);
        Assert.Equal(0u, stat.RtPriority);
        Assert.Equal(0u, stat.Policy);
        Assert.Equal(94273619742160ul, stat.StartData);
        Assert.Equal(94273619742968ul, stat.EndData);
        Assert.Equal(94274104729600ul, stat.StartBrk);
        Assert.Equal(140727431268820ul, stat.ArgStart);
        Assert.Equal(140727431268845ul, stat.ArgEnd);
        Assert.Equal(140727431268845ul, stat.EnvStart);
        Assert.Equal(140727431270377ul, stat.EnvEnd);
        Assert.Equal(0, stat.ExitCode);
    }

    [Fact]
    public void CommWithANewlineAndNoTrailingNewlineAndNegativeFields()
    {
        var stat = ProcStat.Parse(ProcSamples.Read("stat.newline-comm.txt"));
        Assert.Equal(4242, stat.Pid);
        Assert.Equal("x\ny) z)", stat.Comm);
        Assert.Equal('R', stat.State);
        Assert.Equal(34816, stat.TtyNr);
        Assert.Equal(-7, stat.CUTime);
        Assert.Equal(-8, stat.CSTime);
        Assert.Equal(1, stat.Processor);
        Assert.Equal(-1, stat.ExitCode);
    }

    [Theory]
    [InlineData("", "no \"(comm)\"")]
    [InlineData("12 (x) S 1 2 3", "missing tty_nr")]
    [InlineData("12 (x) SS 1", "state is not one character")]
    [InlineData("x (y) S", "bad pid")]
    public void BrokenStatNamesTheProblem(string text, string problem)
    {
        var e = Assert.Throws<ProcParseException>(() => ProcStat.Parse(System.Text.Encoding.UTF8.GetBytes(text)));
        Assert.Equal(ProcFileKind.Stat, e.Kind);
        Assert.StartsWith(problem, e.Problem);
        Assert.StartsWith("/proc/PID/stat", e.Message);
    }

    [Fact]
    public void OutOfRangeNumberIsAParseError()
    {
        string text = File.ReadAllText(Path.Combine(ProcSamples.Directory, "stat.awkward.txt")).Replace(" 18870 ", " 99999999999 ");
        var e = Assert.Throws<ProcParseException>(() => ProcStat.Parse(System.Text.Encoding.UTF8.GetBytes(text)));
        Assert.Equal("ppid out of range", e.Problem);
    }
}
