namespace Crest.Bench;

/// <summary>Where the binary under test is, and small statistics helpers.</summary>
internal sealed record BenchContext(string CrestBinary, IReadOnlyList<string> Options)
{
    /// <param name="options">The --options on the command line, for the benchmarks that take any.</param>
    public static BenchContext FromEnvironment(IReadOnlyList<string> options)
    {
        string? bin = Environment.GetEnvironmentVariable("CREST_BIN");
        if (string.IsNullOrEmpty(bin))
            bin = Path.Combine(FindRepositoryRoot(), "out", "crest");
        if (!File.Exists(bin))
            throw new FileNotFoundException($"bench: no crest binary at {bin}: run scripts/publish.sh or set CREST_BIN");
        return new BenchContext(bin, options);
    }

    private static string FindRepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Crest.slnx"))) return dir.FullName;
        return Directory.GetCurrentDirectory();
    }

    public static double Percentile(List<double> sorted, double p) =>
        sorted[Math.Clamp((int)Math.Ceiling(p / 100 * sorted.Count) - 1, 0, sorted.Count - 1)];
}
