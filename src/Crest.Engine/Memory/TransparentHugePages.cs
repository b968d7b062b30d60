// Whether a fault in a private anonymous VMA may bring a transparent huge page (/sys/kernel/mm/transparent_hugepage/
// enabled and the VMA's MADV_HUGEPAGE / MADV_NOHUGEPAGE). UFFDIO_COPY installs small pages only, so such VMAs are
// filled by faulting writes at an eager restore (RestoreMemory.cs); when their pages are only at a dump's source
// (PE_LAZY), the lazy-pages daemon collapses them into huge pages once filled (LazyPages.cs, MADV_COLLAPSE).
namespace Crest.Engine.Memory;

internal static class TransparentHugePages
{
    private const int MADV_HUGEPAGE = 14, MADV_NOHUGEPAGE = 15;

    /// <summary>True when THP may back a VMA with madvise bits <paramref name="madv"/> (CRIU's VmaEntry.madv: 1 &lt;&lt; advice).</summary>
    public static bool MayBack(ulong madv) => Mode() switch
    {
        "always" => (madv & (1UL << MADV_NOHUGEPAGE)) == 0,
        "madvise" => (madv & (1UL << MADV_HUGEPAGE)) != 0,
        _ => false,
    };

    /// <summary>The bracketed mode of /sys/kernel/mm/transparent_hugepage/enabled ("never" without THP).</summary>
    public static string Mode()
    {
        try
        {
            string text = File.ReadAllText("/sys/kernel/mm/transparent_hugepage/enabled");
            int open = text.IndexOf('['), close = text.IndexOf(']');
            return open >= 0 && close > open ? text[(open + 1)..close] : "never";
        }
        catch (IOException)
        {
            return "never"; // no THP in this kernel
        }
        catch (UnauthorizedAccessException)
        {
            return "always"; // unknown: assume faults may bring huge pages
        }
    }
}
