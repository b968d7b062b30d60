// `crest check`: probe every kernel feature the engine relies on and report, in CRIU's shape where a
// caller reads it (criu/cr-check.c): "Looks good." when all is well; `--feature NAME` prints
// "NAME is supported" and exits 0, or exits 1 when it is missing; an unknown name is an error (1).
//
//   ptrace_seize         ok: seized, interrupted, group-stop event seen
//   soft_dirty           missing: dirty tracking needs uffd-wp async + PAGEMAP_SCAN instead (...)
//   mem_dirty_track      ok: via uffd-wp async + PAGEMAP_SCAN (soft-dirty is missing)
//   Looks good.
using Crest.Diagnostics;
using Crest.Kernel.Features;

namespace Crest.Engine.Check;

public static class KernelCheck
{
    /// <summary>CRIU's verdicts, word for word.</summary>
    internal const string Good = "Looks good.";
    internal const string Bad = "Does not look good.";
    internal const string Maybe = "Looks good but some kernel features are missing\n"
        + "which, depending on your process tree, may cause\n"
        + "dump or restore failure.";

    private const int NameWidth = 21;

    /// <summary>
    /// Run the check. <paramref name="all"/>: report the extra features too (CRIU's --all, --extra,
    /// --experimental). <paramref name="features"/>: check only these names (crest's or CRIU's
    /// <c>--feature</c> names). Returns the process exit code: 0 when everything asked for is present.
    /// </summary>
    public static int Run(bool all, IReadOnlyList<string> features, TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(output);
        // Probes spawn a child to trace: an ignored or runtime-handled SIGCHLD would reap it (ENGINE.md §8).
        FeatureProbes.UseDefaultChildSignal();
        return Run(all, features, output, new ProbeRun());
    }

    internal static int Run(bool all, IReadOnlyList<string> features, TextWriter output, ProbeRun run) =>
        features.Count > 0 ? CheckNamed(features, run, output) : Report(all, run, output);

    /// <summary>The crest feature that answers for a crest or CRIU name, or null with the reason.</summary>
    internal static KernelFeature? Resolve(string name, out string? unknownReason)
    {
        unknownReason = null;
        if (FeatureTable.Find(name) is { } own) return own;
        if (CriuFeatureNames.ToCrest.TryGetValue(name, out string? mapped))
        {
            if (mapped is not null) return FeatureTable.Find(mapped);
            unknownReason = $"Unknown feature {name} (a CRIU feature crest does not probe)";
            return null;
        }
        unknownReason = $"Unknown feature {name}";
        return null;
    }

    private static int CheckNamed(IReadOnlyList<string> names, ProbeRun run, TextWriter output)
    {
        // Every name is resolved before anything is probed: CRIU rejects an unknown one while parsing options.
        var resolved = new List<(string Name, KernelFeature Feature)>();
        foreach (string name in names)
        {
            var feature = Resolve(name, out string? unknown);
            if (feature is null)
            {
                Log.Error(unknown!);
                return 1;
            }
            resolved.Add((name, feature));
        }

        int exit = 0;
        foreach (var (name, feature) in resolved)
        {
            var result = run[feature.Name];
            if (result.Present)
            {
                output.Write($"{name} is supported\n");
                continue;
            }
            Log.Warning($"{name} is not supported: {feature.WhenMissing} ({result.Detail})");
            exit = 1;
        }
        return exit;
    }

    private static int Report(bool all, ProbeRun run, TextWriter output)
    {
        bool requiredMissing = false, extraMissing = false;
        foreach (var feature in FeatureTable.Features)
        {
            // Without --all the dirty-tracking line is still shown: it says which mechanism pre-dump uses.
            bool shown = all || feature.Category == FeatureCategory.Required || feature.Name == "mem_dirty_track";
            if (!shown) continue;
            var result = run[feature.Name];
            output.Write(FormatLine(feature, result));
            if (result.Present) continue;
            if (feature.Category == FeatureCategory.Required) requiredMissing = true;
            else if (all && !(feature.CoveredBy is { } cover && run[cover].Present)) extraMissing = true;
        }

        if (requiredMissing)
        {
            output.Write($"{Bad}\n");
            return 1;
        }
        output.Write($"{(extraMissing ? Maybe : Good)}\n");
        return extraMissing ? 1 : 0;
    }

    /// <summary><c>name ok: detail</c>, or <c>name missing: what it disables (why)</c>.</summary>
    internal static string FormatLine(KernelFeature feature, ProbeResult result)
    {
        string name = feature.Name.PadRight(NameWidth - 1);
        if (result.Present)
            return result.Detail.Length == 0 ? $"{name} ok\n" : $"{name} ok: {result.Detail}\n";
        return $"{name} missing: {feature.WhenMissing} ({result.Detail})\n";
    }
}
