// The pages of one task across a chain of (pre-)dumps: an images directory whose pagemap has PE_PARENT
// entries finds those pages in its "parent" directory (a symlink, as CRIU makes it from --prev-images-dir,
// relative to the directory that holds it), whose pagemap may again point further up:
//
//   d3/pagemap-PID.img   [PRESENT a][PARENT b......][PRESENT c]
//        parent -> ../d2           |
//   d2/pagemap-PID.img   [PRESENT b1][PARENT b2...]
//        parent -> ../d1                 |
//   d1/pagemap-PID.img   [PRESENT .........b2.........]
//
// The chain is flattened into runs of present pages, each naming the pages file that holds its data and
// the offset there. A PE_PARENT page that no directory up the chain holds is a broken chain and an error.
// PE_LAZY entries without data (a dump for post-copy migration, whose source serves them over the page-server
// protocol) are refused unless the reader asks for them: they become runs of source LazySource whose offset is
// their address in the dumped task (the address the source is asked for, whatever mremap did since).
namespace Crest.Images.Pages;

/// <summary>Present pages of a task, resolved through the parent chain.</summary>
/// <param name="Runs">Ascending, non-overlapping runs; <see cref="PageRun.Source"/> indexes <paramref name="Sources"/>.</param>
/// <param name="Sources">The pages files the runs read from (the task's own first when it has data).</param>
public sealed record PageChain(IReadOnlyList<PageRun> Runs, IReadOnlyList<PageSource> Sources)
{
    /// <summary>CRIU's name of the link to the previous images directory.</summary>
    public const string ParentLink = "parent";

    /// <summary>Longest chain followed (a loop of links would otherwise never end).</summary>
    public const int MaxDepth = 64;

    /// <summary>The <see cref="PageRun.Source"/> of pages that only the dump's source holds (PE_LAZY without data).</summary>
    public const int LazySource = -1;

    /// <summary>Total bytes of present pages (lazy ones included).</summary>
    public long Bytes => Runs.Sum(r => r.Length);

    /// <summary>Bytes of the runs of <see cref="LazySource"/>.</summary>
    public long LazyBytes => Runs.Where(r => r.Source == LazySource).Sum(r => r.Length);

    /// <summary>
    /// Reads pagemap-<paramref name="pagemapId"/>.img of <paramref name="directory"/> and, for its PE_PARENT
    /// entries, the directories up the chain. PE_LAZY entries without data are refused unless
    /// <paramref name="allowLazy"/> (then they are runs of <see cref="LazySource"/>).
    /// </summary>
    public static PageChain Resolve(string directory, ulong pagemapId, bool allowLazy = false)
    {
        var sources = new List<PageSource>();
        var runs = Resolve(Path.GetFullPath(directory), pagemapId, sources, 0, allowLazy);
        return new PageChain(runs, sources);
    }

    /// <summary>The runs of present pages the images in <paramref name="directory"/> hold for the task, or
    /// null when the directory has no pagemap for it (a parent that knows nothing of this task).</summary>
    public static PageChain? TryResolve(string directory, ulong pagemapId, bool allowLazy = false) =>
        File.Exists(Path.Combine(directory, ImageKinds.FileName(ImageKinds.Pagemap, pagemapId))) ? Resolve(directory, pagemapId, allowLazy) : null;

    private static List<PageRun> Resolve(string directory, ulong pagemapId, List<PageSource> sources, int depth, bool allowLazy = false)
    {
        string name = ImageKinds.FileName(ImageKinds.Pagemap, pagemapId);
        string path = Path.Combine(directory, name);
        if (!File.Exists(path))
            throw new ImageFormatException(name, ImageFormatException.HeaderEntry, 0, $"image {name} is missing from {directory}");
        var records = new List<PagemapRecord>();
        long present;
        string pagesPath;
        using (var pagemap = PagemapReader.Open(path))
        {
            while (pagemap.TryRead(out var record)) records.Add(record);
            present = pagemap.PresentBytes;
            pagesPath = Path.Combine(directory, ImageKinds.FileName(ImageKinds.Pages, pagemap.PagesId));
        }
        int source = -1;
        if (present > 0)
        {
            long available = File.Exists(pagesPath) ? new FileInfo(pagesPath).Length : -1;
            if (available < 0)
                throw new ImageFormatException(Path.GetFileName(pagesPath), ImageFormatException.HeaderEntry, 0, $"image {Path.GetFileName(pagesPath)} is missing from {directory}");
            if (available < present)
                throw new ImageFormatException(Path.GetFileName(pagesPath), ImageFormatException.HeaderEntry, available,
                    $"pages image is truncated: {name} needs {present} bytes, the file has {available}");
            source = sources.Count;
            sources.Add(new PageSource(pagesPath, present));
        }

        var runs = new List<PageRun>(records.Count);
        List<PageRun>? parent = null;
        int pi = 0;
        foreach (var r in records)
        {
            if ((r.Flags & PagemapFlags.Lazy) != 0 && !r.IsPresent)
            {
                // Only the top directory may hold them: a parent's lazy pages were never stored anywhere.
                if (!allowLazy || depth > 0)
                    throw new ImageFormatException(name, r.Index, 0, $"entry at 0x{r.Vaddr:x} has lazy pages, which only the dump's source serves (restore --lazy-pages with lazy-pages --page-server)");
                runs.Add(new PageRun(r.Vaddr, r.NrPages, LazySource, (long)r.Vaddr));
                continue;
            }
            if (r.IsPresent)
            {
                runs.Add(new PageRun(r.Vaddr, r.NrPages, source, r.PagesOffset));
                continue;
            }
            if ((r.Flags & PagemapFlags.Parent) == 0) continue;
            if (parent is null)
            {
                if (depth + 1 >= MaxDepth)
                    throw new ImageFormatException(name, r.Index, 0, $"the chain of parent images from {directory} is longer than {MaxDepth}");
                string link = Path.Combine(directory, ParentLink);
                if (!Directory.Exists(link))
                    throw new ImageFormatException(name, r.Index, 0, $"entry at 0x{r.Vaddr:x} has its pages in the parent images, but {link} is not a directory");
                // Followed to its directory at each level (a relative link from the directory that holds it): a path
                // of nested links would stop resolving after the kernel's 40 symlinks.
                string? text = new FileInfo(link).LinkTarget;
                string target = text is null ? link : Path.GetFullPath(text, directory);
                parent = Resolve(target, pagemapId, sources, depth + 1);
            }
            // Runs of the parent that cover [vaddr, end): both lists ascend, so one cursor serves all entries.
            ulong at = r.Vaddr, end = r.Vaddr + (ulong)r.Length;
            while (pi < parent.Count && parent[pi].End <= at) pi++;
            int k = pi;
            while (at < end)
            {
                if (k >= parent.Count || parent[k].Vaddr > at)
                    throw new ImageFormatException(name, r.Index, 0,
                        $"page 0x{at:x} is marked as being in the parent images, but {Path.Combine(directory, ParentLink)} does not hold it");
                var p = parent[k];
                ulong take = Math.Min(end, p.End) - at;
                runs.Add(new PageRun(at, (uint)(take / PageImageWriter.PageSize), p.Source, p.Offset + (long)(at - p.Vaddr)));
                at += take;
                if (at >= p.End) k++;
            }
        }
        return runs;
    }
}

/// <summary><see cref="NrPages"/> pages at <see cref="Vaddr"/>, whose data is at <see cref="Offset"/> of source <see cref="Source"/>.</summary>
public readonly record struct PageRun(ulong Vaddr, uint NrPages, int Source, long Offset)
{
    public long Length => (long)NrPages * PageImageWriter.PageSize;
    public ulong End => Vaddr + (ulong)Length;
}

/// <summary>A pages-N.img of the chain and how many bytes of it the pagemap that names it uses.</summary>
public readonly record struct PageSource(string Path, long Bytes);
