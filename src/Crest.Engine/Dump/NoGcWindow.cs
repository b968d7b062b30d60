// The frozen window of a dump allocates some MiB of managed memory (parsed /proc files, image entries, frame
// buffers). With the default gen0 budget that was a collection every few MiB, each stopping all of Crest's
// threads for a millisecond or more while the tree waited frozen (seen as GCs between the images a remote dump
// hands over). A no-GC region over the window takes that work out of it: the runtime makes room for the
// budget before the freeze, and collects after the release if it must.
using System.Runtime;

namespace Crest.Engine.Dump;

internal sealed class NoGcWindow : IDisposable
{
    /// <summary>Managed allocations a dump's frozen window may make before collections resume.</summary>
    public const long Budget = 64L << 20;

    private readonly bool _active;

    private NoGcWindow(bool active) => _active = active;

    /// <summary>A window, or an inactive one where the runtime refuses (another dump of this process holds one).</summary>
    public static NoGcWindow Enter()
    {
        try
        {
            return new NoGcWindow(GC.TryStartNoGCRegion(Budget));
        }
        catch (InvalidOperationException)
        {
            return new NoGcWindow(false); // a region is open already (dumps in parallel in one process)
        }
    }

    public void Dispose()
    {
        if (!_active || GCSettings.LatencyMode != GCLatencyMode.NoGCRegion) return;
        try
        {
            GC.EndNoGCRegion();
        }
        catch (InvalidOperationException)
        {
            // the budget ran out and a collection ended the region already
        }
    }
}
