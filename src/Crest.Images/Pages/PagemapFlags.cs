// Flags of a pagemap entry (CRIU images/pagemap.proto, criu/include/pagemap.h).
namespace Crest.Images.Pages;

/// <summary>Where the pages of one pagemap entry live.</summary>
[Flags]
public enum PagemapFlags : uint
{
    None = 0,
    /// <summary>PE_PARENT: the pages are in the parent images (pre-dump chain), not in this pages file.</summary>
    Parent = 1,
    /// <summary>PE_LAZY: the pages are served on demand by lazy-pages (userfaultfd) after restore starts.</summary>
    Lazy = 2,
    /// <summary>PE_PRESENT: the pages' contents follow in this image's pages-N.img, in entry order.</summary>
    Present = 4,
}

/// <summary>One pagemap entry: <see cref="NrPages"/> pages from <see cref="Vaddr"/>.</summary>
/// <param name="Index">The entry's index in the pagemap image (the head is entry 0, so pages start at 1).</param>
/// <param name="PagesOffset">Byte offset of the entry's data in pages-N.img; -1 when not present there.</param>
public readonly record struct PagemapRecord(int Index, ulong Vaddr, uint NrPages, PagemapFlags Flags, long PagesOffset)
{
    public long Length => (long)NrPages * PageImageWriter.PageSize;
    public bool IsPresent => (Flags & PagemapFlags.Present) != 0;
}
