using Crest.Engine.Check;
using Crest.Kernel.Features;

namespace Crest.Engine.Tests.Check;

// The verdicts and exit codes for kernels other than this one, with the probes' answers given.
public class ReportLogicTests
{
    private static Dictionary<string, ProbeResult> AllPresent() =>
        FeatureTable.Features.ToDictionary(f => f.Name, _ => ProbeResult.Ok());

    private static (int Exit, string Output) Report(bool all, Dictionary<string, ProbeResult> answers, params string[] features)
    {
        var output = new StringWriter();
        int exit = KernelCheck.Run(all, features, output, new ProbeRun(answers));
        return (exit, output.ToString());
    }

    [Fact]
    public void AMissingRequiredFeatureDoesNotLookGood()
    {
        var answers = AllPresent();
        answers["clone3_set_tid"] = ProbeResult.Missing("clone3(set_tid): E2BIG (Argument list too long): set_tid unknown (Linux < 5.5)");
        var (exit, output) = Report(false, answers);
        Assert.Equal(1, exit);
        Assert.Contains("clone3_set_tid       missing: no restore: PIDs cannot be chosen (clone3(set_tid): E2BIG", output);
        Assert.EndsWith("\nDoes not look good.\n", output);
    }

    [Fact]
    public void AMissingExtraFeatureMattersOnlyWithAll()
    {
        var answers = AllPresent();
        answers["tcp_repair"] = ProbeResult.Missing("setsockopt(TCP_REPAIR): EPERM (Operation not permitted)");
        Assert.Equal((0, "Looks good."), (Report(false, answers).Exit, Report(false, answers).Output.Split('\n')[^2]));
        var (exit, output) = Report(true, answers);
        Assert.Equal(1, exit);
        Assert.Contains("tcp_repair           missing: --tcp-established unavailable (setsockopt(TCP_REPAIR): EPERM", output);
        Assert.EndsWith("\n" + KernelCheck.Maybe + "\n", output);
    }

    [Fact]
    public void DirtyTrackingFallsToSoftDirtyOrIsMissingWithoutEither()
    {
        // A kernel with soft-dirty but without uffd-wp async: tracking uses soft-dirty, nothing is lost.
        var answers = AllPresent();
        answers.Remove("mem_dirty_track");
        answers["uffd_wp_async"] = ProbeResult.Missing("UFFD_FEATURE_WP_ASYNC|WP_UNPOPULATED not offered (features 0x1ff)");
        var (exit, output) = Report(true, answers);
        Assert.Equal(0, exit);
        Assert.Contains("mem_dirty_track      ok: via soft-dirty\n", output);

        // Neither: pre-dump cannot track, and --feature mem_dirty_track says so with exit 1.
        answers["soft_dirty"] = ProbeResult.Missing("pagemap bit 55 stayed clear after a write");
        (exit, output) = Report(true, answers);
        Assert.Equal(1, exit);
        Assert.Contains("mem_dirty_track      missing: incremental pre-dump falls back to full dumps (no soft-dirty", output);
        Assert.Equal(1, Report(false, answers, "mem_dirty_track").Exit);
    }

    [Fact]
    public void EveryCriuNameMapsToARowOfTheTable()
    {
        foreach (var (criu, crest) in CriuFeatureNames.ToCrest)
            if (crest is not null) Assert.NotNull(FeatureTable.Find(crest));
        Assert.Equal(FeatureTable.Features.Count, FeatureTable.Features.Select(f => f.Name).Distinct().Count());
        // A crest name that is also CRIU's must mean the same feature.
        foreach (var feature in FeatureTable.Features)
            if (CriuFeatureNames.ToCrest.TryGetValue(feature.Name, out string? mapped)) Assert.Equal(feature.Name, mapped);
        foreach (var feature in FeatureTable.Features)
            if (feature.CoveredBy is { } cover) Assert.NotNull(FeatureTable.Find(cover));
    }
}
