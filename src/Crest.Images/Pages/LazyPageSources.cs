// Post-copy migration (ENGINE.md §5, lazy-pages): the pages a dump leaves out of its images (PE_LAZY entries
// without data) stay with the dump's source, which serves them over the page-server protocol until the
// destination's lazy-pages daemon has them all. These two interfaces let the engine (which keeps and
// consumes the pages) and the transport (which carries them) meet without knowing each other.
namespace Crest.Images.Pages;

/// <summary>The pages a lazy dump kept for serving, by task (the pagemap id) and address in the dumped task.</summary>
public interface ILazyPageStore
{
    /// <summary>
    /// Copies the kept pages of <paramref name="pagemapId"/> from <paramref name="vaddr"/> on into <paramref name="into"/>:
    /// at most <paramref name="nrPages"/> of them, as many as fit, and no further than the end of the kept run that holds
    /// <paramref name="vaddr"/>. Returns the bytes copied: 0 when no kept run holds it. Reading keeps the pages.
    /// </summary>
    int Read(ulong pagemapId, ulong vaddr, uint nrPages, Span<byte> into);

    /// <summary>Pages kept in all.</summary>
    long Pages { get; }
}

/// <summary>The lazy-pages daemon's end of a connection to the dump's source (PS_IOV_GET requests).</summary>
public interface IRemotePageSource : IDisposable
{
    /// <summary>For messages: "page server 10.0.0.1:12345".</summary>
    string Name { get; }

    /// <summary>The connection's descriptor, for poll: the source sends nothing unasked, so readable between requests
    /// means it closed the connection (its dump died).</summary>
    int PollFd { get; }

    /// <summary>
    /// Fetches every request (pages of task <c>PagemapId</c> at its dumped address <c>Vaddr</c>) into
    /// <paramref name="into"/>, one after the other, in one round trip. Throws IOException when the source is gone
    /// or does not hold a requested page.
    /// </summary>
    void Fetch(IReadOnlyList<(ulong PagemapId, ulong Vaddr, uint NrPages)> requests, Span<byte> into);

    /// <summary>Every page is in: tells the source it may end (PS_IOV_CLOSE) and waits for its answer.</summary>
    void Finish();
}
