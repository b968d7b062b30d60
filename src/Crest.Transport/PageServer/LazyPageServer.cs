// The source's end of post-copy migration (dump --lazy-pages): after the dump, the pages it kept (PE_LAZY
// entries, Crest.Engine/Memory/LazyPageStore.cs) are served to the one lazy-pages daemon that connects, in
// CRIU's page-server protocol (PageServerProtocol.cs):
//
//   lazy-pages daemon                                        dump (this)
//   PS_IOV_GET   {nr_pages, vaddr, dst_id = pid << 8 | 1}  ---->
//                                                          <----  PS_IOV_ADD_F|PE_PRESENT {n, vaddr, dst_id} + n pages
//   (n may be less than asked: the kept run ends there, or MaxAnswer; the daemon asks again for the rest)
//   ...
//   PS_IOV_CLOSE                                           ---->  every page is in at the destination
//                                                          <----  i32 0
//
// Requests may be pipelined (the daemon sends several before it reads the answers); answers come in order. The
// session succeeds only with PS_IOV_CLOSE: a connection that ends before it means the destination's tasks may
// miss pages (their daemon kills them), and the dump fails. A connection that ends before its first request (a
// daemon that refused this end's TLS certificate, or any stranger), or whose first request is refused (a daemon of
// other images), was given nothing: no session, the caller may wait for the next one. A request for a page this dump did not keep is a
// protocol error: the connection is closed (as CRIU's page server does), which the daemon sees as a broken source.
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Authentication;
using Crest.Images.Pages;
using static Crest.Transport.PageServer.PageServerProtocol;

namespace Crest.Transport.PageServer;

/// <summary>What one lazy session served.</summary>
public sealed record LazyServeSummary(long Requests, long PagesServed, TimeSpan Duration);

public static class LazyPageServer
{
    /// <summary>Largest answer: longer requests get a short one.</summary>
    public const int MaxAnswer = 4 << 20;

    /// <summary>
    /// Serves <paramref name="store"/> on <paramref name="connection"/> until the daemon sends PS_IOV_CLOSE (or
    /// PS_IOV_FORCE_CLOSE). Null when the connection ended, broke or was refused before its first answer (nothing
    /// was served); throws <see cref="PageServerException"/> when the session ends any other way.
    /// </summary>
    public static LazyServeSummary? Serve(Stream connection, ILazyPageStore store, Action<string>? log = null)
    {
        log ??= _ => { };
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Span<byte> header = stackalloc byte[PageServerIov.Size];
        long requests = 0, pages = 0;
        var output = new BufferedStream(connection, 1 << 16);
        // Answers are at most this long (the protocol lets the daemon ask again for the rest).
        var buffer = GC.AllocateUninitializedArray<byte>(MaxAnswer, pinned: true);
        try
        {
            while (true)
            {
                if (!ReadHeader(connection, header, out bool pending))
                {
                    if (requests == 0)
                    {
                        log("lazy-pages: the connection ended before its first request");
                        return null;
                    }
                    throw new PageServerException(
                        $"the lazy-pages daemon closed the connection after {requests} requests ({pages} pages) without saying it had every page: the restored tasks may lack pages");
                }
                var iov = PageServerIov.Read(header);
                switch (iov.Command)
                {
                    case PS_IOV_GET:
                    {
                        var (type, id) = DecodeDstId(iov.DstId);
                        if (type != PagemapType.Task)
                            throw new PageServerException($"PS_IOV_GET for dst_id 0x{iov.DstId:x}: only task pagemaps are served");
                        if (iov.NrPages == 0)
                            throw new PageServerException($"PS_IOV_GET of no pages ({iov})");
                        int got = store.Read(id, iov.Vaddr, iov.NrPages, buffer);
                        var data = buffer.AsSpan(0, got);
                        if (got == 0)
                            throw new PageServerException($"PS_IOV_GET: this dump kept no page at 0x{iov.Vaddr:x} of task {id} ({iov})");
                        uint n = (uint)(data.Length / PageSize);
                        Span<byte> answer = stackalloc byte[PageServerIov.Size];
                        new PageServerIov(EncodeCommand(PS_IOV_ADD_F, (uint)PagemapFlags.Present), n, iov.Vaddr, iov.DstId).Write(answer);
                        output.Write(answer);
                        output.Write(data);
                        requests++;
                        pages += n;
                        // Answers of a pipelined batch go out together; the last one before the daemon waits.
                        if (!pending) output.Flush();
                        break;
                    }
                    case PS_IOV_CLOSE:
                    case PS_IOV_FORCE_CLOSE:
                    {
                        Span<byte> status = stackalloc byte[4];
                        BinaryPrimitives.WriteInt32LittleEndian(status, 0);
                        output.Write(status);
                        output.Flush();
                        log($"lazy-pages: the daemon has every page: {requests} requests, {pages} pages served in {clock.Elapsed.TotalMilliseconds:0} ms");
                        return new LazyServeSummary(requests, pages, clock.Elapsed);
                    }
                    default:
                        throw new PageServerException($"page-server command 0x{iov.Command:x} in a lazy-pages session ({iov})");
                }
            }
        }
        catch (PageServerException e) when (requests == 0)
        {
            // A daemon for other images, say: it got no page, the dump may wait for the right one.
            log($"lazy-pages: the session ended before its first answer: {e.Message}");
            return null;
        }
        catch (Exception e) when (e is IOException and not PageServerException or ObjectDisposedException or SocketException or AuthenticationException)
        {
            if (requests == 0)
            {
                log($"lazy-pages: the connection broke before its first request: {e.InnerException?.Message ?? e.Message}");
                return null;
            }
            throw new PageServerException($"the connection to the lazy-pages daemon broke after {requests} requests ({pages} pages), before it had every page: {e.InnerException?.Message ?? e.Message}", e);
        }
    }

    /// <summary>Reads one command; false at a clean end of the stream. <paramref name="pending"/>: more bytes wait already.</summary>
    private static bool ReadHeader(Stream connection, Span<byte> header, out bool pending)
    {
        int got = 0;
        while (got < header.Length)
        {
            int n = connection.Read(header[got..]);
            if (n == 0)
            {
                pending = false;
                if (got == 0) return false;
                throw new PageServerException($"the connection ended inside a command ({got} of {header.Length} bytes)");
            }
            got += n;
        }
        pending = connection is NetworkStream { DataAvailable: true };
        return true;
    }
}
