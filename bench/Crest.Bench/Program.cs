// Crest's benchmark runner. Usage: bench/run [NAME...] [--OPTION...] (default: all benchmarks).
// Every figure is printed beside a baseline measured in the same run on the same machine.
namespace Crest.Bench;

internal static class Program
{
    private static readonly Dictionary<string, Func<BenchContext, int>> Benchmarks = new()
    {
        ["startup"] = StartupBenchmark.Run,
        ["dump-restore"] = DumpRestoreBenchmark.Run,
        ["threads"] = ThreadsBenchmark.Run,
        ["shapes"] = ShapesBenchmark.Run,
        ["predump"] = PreDumpBenchmark.Run,
        ["remote"] = RemoteBenchmark.Run,
        ["page-server"] = PageServerBenchmark.Run,
        ["migrate"] = MigrateBenchmark.Run,
        ["lazy-remote"] = LazyRemoteBenchmark.Run,
    };

    private static int Main(string[] args)
    {
        var options = args.Where(a => a.StartsWith("--", StringComparison.Ordinal)).ToArray();
        var context = BenchContext.FromEnvironment(options);
        var names = args.Except(options).ToArray();
        if (names.Length == 0) names = Benchmarks.Keys.ToArray();
        foreach (var name in names)
        {
            if (!Benchmarks.TryGetValue(name, out var run))
            {
                Console.Error.WriteLine($"bench: unknown benchmark '{name}' (known: {string.Join(", ", Benchmarks.Keys)})");
                return 2;
            }
            Console.WriteLine($"== {name}");
            int rc = run(context);
            if (rc != 0) return rc;
        }
        return 0;
    }
}
