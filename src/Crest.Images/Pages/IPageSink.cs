// Where a dump sends the memory of a task: the local pagemap/pages pair (PageImageWriter) or another end
// that writes that pair itself (a page server, Crest.Transport/PageServer). The dumper talks to both alike.
namespace Crest.Images.Pages;

/// <summary>Receives the pagemap entries of one task in ascending order, with the data of present ones.</summary>
public interface IPageSink : IDisposable
{
    /// <summary>Adds a present entry whose <paramref name="nrPages"/> pages follow through <see cref="WritePageData"/>.</summary>
    void BeginPresent(ulong vaddr, uint nrPages, PagemapFlags extraFlags = PagemapFlags.None);

    /// <summary>The next piece of the data of the entry begun with <see cref="BeginPresent"/>.</summary>
    void WritePageData(ReadOnlySpan<byte> data);

    /// <summary>Adds an entry without data here: PE_PARENT (pages in the parent images) or PE_LAZY alone.</summary>
    void AddWithoutData(ulong vaddr, uint nrPages, PagemapFlags flags);

    /// <summary>Checks that the last entry got all its data (call before Dispose when the dump succeeded).</summary>
    void Complete();
}

/// <summary>A receiver of the memory images of a whole dump, outside the images directory.</summary>
public interface IPageDestination
{
    /// <summary>For messages: "page server 10.0.0.2:12345".</summary>
    string Name { get; }

    /// <summary>Opens the pagemap of <paramref name="pagemapId"/> (a pid); <paramref name="parentHeld"/> tells whether
    /// the destination holds parent images for it, so that unchanged pages may be sent as PE_PARENT entries.</summary>
    IPageSink Open(ulong pagemapId, out bool parentHeld);

    /// <summary>Every page was sent: waits until the destination confirms that it has stored them all.</summary>
    void Finish();
}
