// One row of `crest check`: a kernel feature the engine relies on, what for, and what is lost without it.
using Crest.Kernel.Features;

namespace Crest.Engine.Check;

/// <summary>Required features are needed for any dump or restore; extra ones for particular cases.</summary>
internal enum FeatureCategory { Required, Extra }

/// <param name="Name">Crest's name for the feature: CRIU's <c>--feature</c> name where CRIU has one.</param>
/// <param name="Purpose">What the engine uses it for.</param>
/// <param name="WhenMissing">What a missing one disables, as the report says it.</param>
/// <param name="Probe">Runs (or reuses) the probe that answers for it.</param>
/// <param name="CoveredBy">A feature whose presence makes this one's absence harmless (soft-dirty is
/// covered by <c>mem_dirty_track</c> when uffd-wp does the tracking instead).</param>
internal sealed record KernelFeature(
    string Name,
    FeatureCategory Category,
    string Purpose,
    string WhenMissing,
    Func<ProbeRun, ProbeResult> Probe,
    string? CoveredBy = null);
