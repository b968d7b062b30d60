// Runs each probe at most once per `crest check`: several features share one probe (the ptrace probe
// answers for five), and mem_dirty_track is derived from three others.
using Crest.Diagnostics;
using Crest.Kernel;
using Crest.Kernel.Features;

namespace Crest.Engine.Check;

internal sealed class ProbeRun
{
    private readonly Dictionary<string, ProbeResult> _results = new(StringComparer.Ordinal);
    private PtraceProbeResults? _ptrace;
    private UserfaultfdProbeResults? _userfaultfd;

    public ProbeRun() { }

    /// <summary>A run whose answers are given, not probed: for testing the report logic.</summary>
    internal ProbeRun(IReadOnlyDictionary<string, ProbeResult> answers)
    {
        foreach (var (name, result) in answers) _results[name] = result;
    }

    public PtraceProbeResults Ptrace => _ptrace ??= FeatureProbes.ProbePtrace();

    public UserfaultfdProbeResults Userfaultfd => _userfaultfd ??= FeatureProbes.ProbeUserfaultfd();

    /// <summary>The result for a feature of <see cref="FeatureTable"/>, probing it the first time.</summary>
    public ProbeResult this[string name]
    {
        get
        {
            if (_results.TryGetValue(name, out var known)) return known;
            var feature = FeatureTable.Find(name)
                ?? throw new ArgumentException($"no kernel feature named {name}", nameof(name));
            ProbeResult result;
            try
            {
                result = feature.Probe(this);
            }
            catch (Exception e) when (e is KernelException or IOException or UnauthorizedAccessException)
            {
                // The probe could not finish: that is an answer too, with its reason.
                result = ProbeResult.Missing($"probe failed: {e.Message}");
            }
            Log.Info($"check: {name}: {result}");
            _results[name] = result;
            return result;
        }
    }
}
