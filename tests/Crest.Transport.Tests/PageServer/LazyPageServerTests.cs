// The lazy-pages session of the page-server protocol over a real TCP connection: the dump's LazyPageServer
// answering PS_IOV_GET from its kept pages, the daemon's LazyPageClient asking in pipelined batches. A request
// that crosses the end of a kept run gets a short answer and the client asks again for the rest; the session
// succeeds only with PS_IOV_CLOSE; a request for a page that was not kept ends it on both sides.
using System.Net;
using System.Net.Sockets;
using Crest.Images.Pages;
using Crest.Transport.PageServer;

namespace Crest.Transport.Tests.PageServer;

public sealed class LazyPageServerTests
{
    private const int Page = 4096;

    /// <summary>Kept runs of task 42: [0x10000, +4 pages) and [0x14000, +2 pages) (adjacent, two runs), [0x40000, +1).</summary>
    private sealed class Store : ILazyPageStore
    {
        private readonly List<(ulong Vaddr, int Pages)> _runs = [(0x10000, 4), (0x14000, 2), (0x40000, 1)];

        public long Pages => 7;

        public static byte Fill(ulong vaddr) => (byte)(vaddr / Page);

        public int Read(ulong pagemapId, ulong vaddr, uint nrPages, Span<byte> into)
        {
            if (pagemapId != 42) return 0;
            foreach (var (start, pages) in _runs)
            {
                ulong end = start + (ulong)pages * Page;
                if (vaddr < start || vaddr >= end) continue;
                int n = (int)Math.Min((end - vaddr) / Page, nrPages);
                for (int i = 0; i < n; i++) into.Slice(i * Page, Page).Fill(Fill(vaddr + (ulong)(i * Page)));
                return n * Page;
            }
            return 0;
        }
    }

    private static (Task<LazyServeSummary?> Server, LazyPageClient Client) Start()
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        int port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        var server = Task.Run(() =>
        {
            using var accepted = listener.Accept();
            listener.Dispose();
            using var stream = new NetworkStream(accepted);
            return LazyPageServer.Serve(stream, new Store());
        });
        var client = LazyPageClient.Connect("127.0.0.1", port, null, TimeSpan.FromSeconds(10));
        return (server, client);
    }

    [Fact]
    public async Task PipelinedRequestsGetTheirPagesAndShortAnswersAreAskedAgain()
    {
        var (server, client) = Start();
        using (client)
        {
            var into = new byte[9 * Page];
            // 6 pages across two kept runs (a short answer, then the rest), then 1 page elsewhere, then 2 again.
            client.Fetch([(42, 0x10000, 6), (42, 0x40000, 1), (42, 0x12000, 2)], into);
            for (int i = 0; i < 6; i++) Assert.Equal(Store.Fill(0x10000 + (ulong)(i * Page)), into[i * Page + 7]);
            Assert.Equal(Store.Fill(0x40000), into[6 * Page]);
            Assert.Equal(Store.Fill(0x12000), into[7 * Page + 4095]);
            Assert.Equal(Store.Fill(0x13000), into[8 * Page]);
            client.Finish();
        }
        var summary = await server.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.NotNull(summary);
        Assert.Equal(4, summary.Requests); // the crossing request took two answers
        Assert.Equal(9, summary.PagesServed);
    }

    [Fact]
    public async Task AConnectionClosedWithoutCloseFailsTheServer()
    {
        var (server, client) = Start();
        using (client)
        {
            var into = new byte[Page];
            client.Fetch([(42, 0x40000, 1)], into);
        }
        var e = await Assert.ThrowsAsync<PageServerException>(() => server.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Contains("every page", e.Message); // a reset or an end of stream, never a success
    }

    [Fact]
    public async Task AConnectionClosedBeforeItsFirstRequestIsNoSession()
    {
        var (server, client) = Start();
        client.Dispose();
        // Nothing was served (a daemon that refused the dump's certificate closes so): the dump may wait for another.
        Assert.Null(await server.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task AFirstRequestForAPageThatWasNotKeptIsNoSession()
    {
        var (server, client) = Start();
        using (client)
        {
            var e = Assert.Throws<PageServerException>(() => client.Fetch([(42, 0x80000, 1)], new byte[Page]));
            Assert.Contains("closed the connection", e.Message);
        }
        // A daemon of other images got nothing: the dump may wait for the right one.
        Assert.Null(await server.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task ARequestForAPageThatWasNotKeptEndsTheSessionOnBothSides()
    {
        var (server, client) = Start();
        using (client)
        {
            var into = new byte[Page];
            client.Fetch([(42, 0x40000, 1)], into);
            var e = Assert.Throws<PageServerException>(() => client.Fetch([(42, 0x80000, 1)], into));
            Assert.Contains("closed the connection", e.Message);
            // Broken for good: no later request goes out.
            Assert.Throws<PageServerException>(() => client.Fetch([(42, 0x40000, 1)], into));
        }
        var s = await Assert.ThrowsAsync<PageServerException>(() => server.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Contains("kept no page at 0x80000", s.Message);
    }
}
