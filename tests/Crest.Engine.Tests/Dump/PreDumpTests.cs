using Crest.Engine.Dump;
using Crest.Images.Pages;
using Crest.Kernel.Tests.Fixtures;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Dump;

// Incremental pre-dump (issue 5): a fixture that never stops rewriting its pages is pre-dumped while it runs;
// each later round writes the pages written since the previous one and PE_PARENT entries for the rest; a
// restore from the last round follows the chain and the fixture finds every page as it left it.
[Collection("Children of the test process")]
public sealed class PreDumpTests : IDisposable
{
    private readonly ScratchDirectory _root = new();

    public void Dispose()
    {
        DumpEngine.StageHook = null;
        _root.Dispose();
    }

    private string Dir(string name) => _root.Sub(name);

    private DumpStatistics PreDump(int pid, string name, string? parent = null) =>
        DumpEngine.Dump(new DumpOptions { Pid = pid, ImagesDir = Dir(name), PreDump = true, ParentLink = parent });

    [Fact]
    public void PreDumpedTaskKeepsRunningAndTheSecondRoundWritesOnlyWhatChanged()
    {
        using var fixture = FixtureProcess.Start("predump_writer", "32", "1");
        var first = PreDump(fixture.Pid, "d1");
        Assert.True(first.PagesWritten >= 32 * 256, $"{first.PagesWritten} pages in the first round");
        Assert.Equal(0UL, first.PagesSkippedParent);
        Thread.Sleep(100);
        var second = PreDump(fixture.Pid, "d2", "../d1");
        Assert.True(second.PagesSkippedParent >= 16 * 256, $"{second.PagesSkippedParent} pages left in the parent");
        Assert.True(second.PagesWritten < first.PagesWritten / 2, $"{second.PagesWritten} pages written in the second round");
        Assert.Equal("../d1", new FileInfo(Path.Combine(_root.Path, "d2", "parent")).LinkTarget);

        // The task holds its tracker (one fd) and nothing else of Crest's; it still runs and its memory is intact.
        var trackers = Directory.GetFiles($"/proc/{fixture.Pid}/fd").Where(IsUserfaultfd).ToList();
        Assert.Single(trackers);
        Assert.DoesNotContain(State(fixture.Pid), "tTZX");
        AssertPass(Verify(fixture.Child, fixture));
    }

    [Fact]
    public void ChainOfThreeRestoresEveryPage()
    {
        using var fixture = FixtureProcess.Start("predump_writer", "32", "4");
        PreDump(fixture.Pid, "d1");
        Thread.Sleep(100);
        PreDump(fixture.Pid, "d2", "../d1");
        Thread.Sleep(100);
        var last = DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = Dir("d3"), ParentLink = "../d2", TrackMemory = true });
        fixture.Child.WaitForExit(TimeSpan.FromSeconds(10));
        Assert.True(last.PagesSkippedParent > 0, "the final dump left no page in the parent images");

        // The tracker is not part of the task: its fds are 0, 1 and 2 only.
        using (var fdinfo = Crit.Decode(Path.Combine(_root.Path, "d3", "fdinfo-1.img")))
            Assert.All(fdinfo.RootElement.GetProperty("entries").EnumerateArray(), e => Assert.True(e.GetProperty("fd").GetInt32() < 3));
        foreach (string name in new[] { "d1", "d2", "d3" }) Crit.DecodeAll(Path.Combine(_root.Path, name));
        using (var pagemap = Crit.Decode(Path.Combine(_root.Path, "d3", $"pagemap-{fixture.Pid}.img")))
            Assert.Contains(pagemap.RootElement.GetProperty("entries").EnumerateArray(), e => e.TryGetProperty("flags", out var f) && f.GetInt32() == (int)PagemapFlags.Parent);

        using var restored = RestoreDetached(Path.Combine(_root.Path, "d3"));
        Assert.DoesNotContain(Directory.GetFiles($"/proc/{restored.Pid}/fd"), IsUserfaultfd);
        AssertPass(Verify(restored, fixture));
    }

    [Fact]
    public void ASparseMappingStaysSparseInLaterRounds()
    {
        // 64 GiB of MAP_NORESERVE with five pages touched: protecting its holes leaves uffd-wp markers that the
        // pagemap counts as swapped pages; a later round that dumped them wrote 64 GiB of zeros.
        using var fixture = FixtureProcess.Start("restore_memory", "16");
        var first = PreDump(fixture.Pid, "d1");
        var second = PreDump(fixture.Pid, "d2", "../d1");
        Assert.True(second.PagesWritten < 1024, $"{second.PagesWritten} pages written in the second round");
        var last = DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = Dir("d3"), ParentLink = "../d2", TrackMemory = true });
        fixture.Child.WaitForExit(TimeSpan.FromSeconds(10));
        Assert.True(last.PagesWritten < 1024, $"{last.PagesWritten} pages written in the final dump (first round: {first.PagesWritten})");

        using var restored = RestoreDetached(Path.Combine(_root.Path, "d3"));
        AssertPass(Verify(restored, fixture));
    }

    [Fact]
    public void ADumpWithoutTheParentAfterAPreDumpLeavesTheMarkersOut()
    {
        // The pre-dump's tracker stays in the task with its markers in the holes; a dump (or another pre-dump) that
        // does not name the parent has nothing to sort them against and wrote the 64 GiB mapping out in full.
        using var fixture = FixtureProcess.Start("restore_memory", "16");
        var first = PreDump(fixture.Pid, "d1");
        var again = PreDump(fixture.Pid, "d2");
        Assert.True(again.PagesWritten <= first.PagesWritten + 16, $"{again.PagesWritten} pages in a second first round (first: {first.PagesWritten})");
        var last = DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = Dir("d3") });
        fixture.Child.WaitForExit(TimeSpan.FromSeconds(10));
        Assert.True(last.PagesWritten <= first.PagesWritten + 16, $"{last.PagesWritten} pages written by the dump (pre-dump: {first.PagesWritten})");
        Crit.DecodeAll(Path.Combine(_root.Path, "d3"));

        using var restored = RestoreDetached(Path.Combine(_root.Path, "d3"));
        AssertPass(Verify(restored, fixture));
    }

    [Fact]
    public void DumpFromAnOlderRoundWritesEveryPage()
    {
        using var fixture = FixtureProcess.Start("predump_writer", "16", "4");
        PreDump(fixture.Pid, "d1");
        Thread.Sleep(50);
        PreDump(fixture.Pid, "d2", "../d1");
        // d1 does not name the tracker any more (it moved at d2): its changes since d1 are unknown.
        var last = DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = Dir("d3"), ParentLink = "../d1", TrackMemory = true });
        fixture.Child.WaitForExit(TimeSpan.FromSeconds(10));
        Assert.Equal(0UL, last.PagesSkippedParent);
        using var restored = RestoreDetached(Path.Combine(_root.Path, "d3"));
        AssertPass(Verify(restored, fixture));
    }

    [Fact]
    public void LeaveRunningDumpTakesTheTrackerAway()
    {
        using var fixture = FixtureProcess.Start("predump_writer", "16", "4");
        PreDump(fixture.Pid, "d1");
        Assert.Contains(" uw", VmFlags(fixture.Pid), StringComparison.Ordinal);
        DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = Dir("d2"), ParentLink = "../d1", TrackMemory = true, LeaveRunning = true });
        Assert.DoesNotContain(Directory.GetFiles($"/proc/{fixture.Pid}/fd"), IsUserfaultfd);
        Assert.DoesNotContain(" uw", VmFlags(fixture.Pid), StringComparison.Ordinal);
        AssertPass(Verify(fixture.Child, fixture));
    }

    [Fact]
    public void ThePagesAreReadOnceTheTaskRunsAgain()
    {
        // The freeze lasts the scan and the arming of the tracker; the copy of the memory comes after the release.
        using var fixture = FixtureProcess.Start("predump_writer", "32", "4");
        string? tracerAtPages = null;
        DumpEngine.StageHook = s =>
        {
            if (s == "pages") tracerAtPages = StatusField(fixture.Pid, "TracerPid");
        };
        var first = PreDump(fixture.Pid, "d1");
        DumpEngine.StageHook = null;
        Assert.Equal("0", tracerAtPages);
        Assert.True(first.PagesWritten >= 32 * 256, $"{first.PagesWritten} pages in the first round");

        // Pages the task rewrote during and after that copy are in the next round; the chain restores them all.
        Thread.Sleep(100);
        var last = DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = Dir("d2"), ParentLink = "../d1", TrackMemory = true });
        fixture.Child.WaitForExit(TimeSpan.FromSeconds(10));
        Assert.True(last.PagesSkippedParent > 0, "the final dump left no page in the parent images");
        using var restored = RestoreDetached(Path.Combine(_root.Path, "d2"));
        AssertPass(Verify(restored, fixture));
    }

    [Theory]
    [InlineData("pages")]
    [InlineData("written")]
    [InlineData("tracking")]
    public void FailedPreDumpLeavesTheTaskAsItWas(string stage)
    {
        using var fixture = FixtureProcess.Start("predump_writer", "16", "4");
        DumpEngine.StageHook = s =>
        {
            if (s == stage) throw new InvalidOperationException($"failure injected at {s}");
        };
        Assert.Throws<DumpException>(() => PreDump(fixture.Pid, "d1"));
        DumpEngine.StageHook = null;
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(_root.Path, "d1")));
        Assert.DoesNotContain(Directory.GetFiles($"/proc/{fixture.Pid}/fd"), IsUserfaultfd);
        Assert.DoesNotContain(" uw", VmFlags(fixture.Pid), StringComparison.Ordinal);

        // A second round that fails keeps the first round's tracker where it was: a retry still knows the changes.
        PreDump(fixture.Pid, "d2");
        string trackerFd = Directory.GetFiles($"/proc/{fixture.Pid}/fd").Single(IsUserfaultfd);
        DumpEngine.StageHook = s =>
        {
            if (s == stage) throw new InvalidOperationException($"failure injected at {s}");
        };
        Assert.Throws<DumpException>(() => PreDump(fixture.Pid, "d3", "../d2"));
        DumpEngine.StageHook = null;
        Assert.Equal(trackerFd, Directory.GetFiles($"/proc/{fixture.Pid}/fd").Single(IsUserfaultfd));
        var retry = PreDump(fixture.Pid, "d4", "../d2");
        Assert.True(retry.PagesSkippedParent > 0, "the retry after a failed round lost the tracker");
        AssertPass(Verify(fixture.Child, fixture));
    }

    private static string StatusField(int pid, string name) =>
        File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith(name + ":", StringComparison.Ordinal))[(name.Length + 1)..].Trim();

    private static bool IsUserfaultfd(string fd) => new FileInfo(fd).LinkTarget == "anon_inode:[userfaultfd]";

    private static string VmFlags(int pid) =>
        string.Join("\n", File.ReadAllLines($"/proc/{pid}/smaps").Where(l => l.StartsWith("VmFlags:", StringComparison.Ordinal)));

    private static string State(int pid)
    {
        string stat = File.ReadAllText($"/proc/{pid}/stat");
        return stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[0];
    }
}
