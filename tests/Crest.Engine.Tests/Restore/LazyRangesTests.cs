using Crest.Engine.Restore;
using Xunit;

namespace Crest.Engine.Tests.Restore;

public sealed class LazyRangesTests
{
    private const ulong Page = 4096;

    private static LazyRanges Scattered(int count) =>
        new(Enumerable.Range(0, count).Select(i => new LazyRun((ulong)i * 2 * Page, (ulong)i * 2 * Page + Page, 0, i * (long)Page)));

    [Fact]
    public void TakingRunsFromTheFrontLeavesTheRestInOrder()
    {
        var set = Scattered(5);
        set.Remove(set.First.Start, set.First.End);
        set.Remove(set.First.Start, set.First.Start + Page / 2 + Page / 2);
        Assert.Equal(3, set.Count);
        Assert.Equal(4 * Page, set.First.Start);
        Assert.Equal(3 * Page, set.Bytes);
        Assert.True(set.TryFind(8 * Page, out var last));
        Assert.Equal(4 * (long)Page, last.Offset);
        Assert.False(set.TryFind(0, out _));
    }

    [Fact]
    public void RemovingInsideARunSplitsItAndKeepsTheOffsets()
    {
        var set = new LazyRanges([new LazyRun(0, 8 * Page, 1, 100 * (long)Page)]);
        set.Remove(2 * Page, 3 * Page);
        Assert.Equal(2, set.Count);
        Assert.Equal(new LazyRun(0, 2 * Page, 1, 100 * (long)Page), set[0]);
        Assert.Equal(new LazyRun(3 * Page, 8 * Page, 1, 103 * (long)Page), set[1]);
        set.Remove(0, 4 * Page);
        Assert.Equal(new LazyRun(4 * Page, 8 * Page, 1, 104 * (long)Page), set.First);
        Assert.Equal(1, set.Count);
    }

    [Fact]
    public void ARemovalAcrossManyRunsAfterTheHeadDropsThemAll()
    {
        var set = Scattered(10);
        set.Remove(set.First.Start, set.First.End);
        set.Remove(6 * Page, 13 * Page); // runs at 6, 8, 10, 12
        Assert.Equal(new[] { 2 * Page, 4 * Page, 14 * Page, 16 * Page, 18 * Page }, Enumerable.Range(0, set.Count).Select(i => set[i].Start));
    }

    [Fact]
    public void MoveAndKeepStartFromTheLiveRunsOnly()
    {
        var set = Scattered(4); // 0, 2, 4, 6
        set.Remove(0, Page);
        set.Move(2 * Page, 20 * Page, 2 * Page);
        Assert.Equal(new[] { 4 * Page, 6 * Page, 20 * Page }, Enumerable.Range(0, set.Count).Select(i => set[i].Start));
        set.Keep([(5 * Page, 30 * Page)]);
        Assert.Equal(new[] { 6 * Page, 20 * Page }, Enumerable.Range(0, set.Count).Select(i => set[i].Start));
        Assert.Equal(2 * Page, set.Clone().Bytes);
    }

    [Fact]
    public void TakingTensOfThousandsOfRunsOneByOneEndsEmpty()
    {
        var set = Scattered(50_000);
        int taken = 0;
        while (!set.IsEmpty)
        {
            set.Remove(set.First.Start, set.First.End);
            taken++;
        }
        Assert.Equal(50_000, taken);
        Assert.Equal(0, set.Count);
    }
}
