using Crest.Engine.Restore;

namespace Crest.Engine.Tests.Restore;

// The lazy-pages daemon's bookkeeping against a model of one flag and one source offset per page, under random
// copies, discards and moves: a page must never come back once removed, and a moved page keeps its data's offset.
public class LazyRangesModelTests
{
    private const ulong Page = 4096;

    [Fact]
    public void RandomRemovesAndMovesMatchAPageModel()
    {
        var random = new Random(5);
        for (int round = 0; round < 200; round++)
        {
            const int pages = 256;
            var model = new long?[pages]; // source offset of each page still to fill
            var runs = new List<LazyRun>();
            for (int p = 0; p < pages;)
            {
                int length = random.Next(1, 20);
                bool present = random.Next(3) > 0;
                long offset = random.Next(0, 1000) * (long)Page;
                int end = Math.Min(pages, p + length);
                if (present)
                {
                    runs.Add(new LazyRun((ulong)p * Page, (ulong)end * Page, 0, offset));
                    for (int k = p; k < end; k++) model[k] = offset + (k - p) * (long)Page;
                }
                p = end;
            }
            var ranges = new LazyRanges(runs);
            for (int step = 0; step < 30; step++)
            {
                string op = "remove";
                string before = string.Join(" ", ranges.Within(0, pages * Page).Select(r => $"{r.Start / Page}-{r.End / Page}"));
                int a = random.Next(pages), b = random.Next(a, Math.Min(pages, a + 40) + 1);
                if (random.Next(3) == 0)
                {
                    int to = random.Next(0, pages - (b - a) + 1);
                    op = $"move to {to}";
                    ranges.Move((ulong)a * Page, (ulong)to * Page, (ulong)(b - a) * Page);
                    var moved = model[a..b];
                    for (int k = a; k < b; k++) model[k] = null;
                    for (int k = 0; k < b - a; k++) model[to + k] = moved[k];
                }
                else
                {
                    ranges.Remove((ulong)a * Page, (ulong)b * Page);
                    for (int k = a; k < b; k++) model[k] = null;
                }
                for (int k = 0; k < pages; k++)
                {
                    bool found = ranges.TryFind((ulong)k * Page + 17, out var run);
                    Assert.True(model[k].HasValue == found, $"round {round} step {step} page {k}: model {model[k]}, found {found}; last op {op} {a}-{b}: {ranges.Count} runs; before {before}; after {string.Join(" ", ranges.Within(0, pages * Page).Select(r => $"{r.Start / Page}-{r.End / Page}"))}");
                    if (found) Assert.Equal(model[k]!.Value, run.Offset + (long)((ulong)k * Page - run.Start));
                }
                Assert.Equal((ulong)model.Count(m => m.HasValue) * Page, ranges.Bytes);
            }
        }
    }
}
