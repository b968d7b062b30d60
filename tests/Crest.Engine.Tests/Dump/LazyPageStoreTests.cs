// The pages a lazy dump keeps for the lazy-pages daemon: copied runs and runs held by pipes, read by task and
// address, never consumed by reading (a task that forked before it got its memory asks for a page twice).
using Crest.Engine.Memory;
using Crest.Kernel.Files;

namespace Crest.Engine.Tests.Dump;

public sealed class LazyPageStoreTests
{
    private const int Page = 4096;

    private static byte[] Pages(params byte[] fills)
    {
        var data = new byte[fills.Length * Page];
        for (int i = 0; i < fills.Length; i++) data.AsSpan(i * Page, Page).Fill(fills[i]);
        return data;
    }

    [Fact]
    public void PipeRunsAreReadWithoutBeingConsumedAndCopiedRunsAlongside()
    {
        using var store = new LazyPageStore();
        var (read, write) = FileDescriptor.CreatePipe();
        using (write) write.WriteAll(Pages(1, 2, 3, 4));
        // One pipe: [0x10000, +2 pages) then [0x30000, +2 pages) of task 7.
        store.AddPipe(7, read, [(0x10000, 2 * Page), (0x30000, 2 * Page)]);
        store.Add(7, 0x20000, Pages(9, 10));
        Assert.Equal(6, store.Pages);
        Assert.Equal(4, store.SplicedPages);

        var into = new byte[8 * Page];
        for (int round = 0; round < 2; round++)
        {
            Assert.Equal(Page, store.Read(7, 0x31000, 8, into));
            Assert.Equal(4, into[0]);
            Assert.Equal(4, into[Page - 1]);
            Assert.Equal(2 * Page, store.Read(7, 0x10000, 8, into)); // up to the end of the run
            Assert.Equal(1, into[0]);
            Assert.Equal(2, into[Page]);
            Assert.Equal(Page, store.Read(7, 0x21000, 1, into));
            Assert.Equal(10, into[5]);
        }
        Assert.Equal(0, store.Read(7, 0x40000, 1, into)); // not kept
        Assert.Equal(0, store.Read(8, 0x10000, 1, into)); // another task
        Assert.Equal(Page, store.Read(7, 0x30000, 8, into.AsSpan(0, Page))); // as much as fits
        Assert.Equal(3, into[0]);
    }

    [Fact]
    public void OverlappingRunsAreRefused()
    {
        using var store = new LazyPageStore();
        store.Add(7, 0x10000, Pages(1, 2));
        Assert.Throws<ArgumentException>(() => store.Add(7, 0x11000, Pages(3)));
    }
}
