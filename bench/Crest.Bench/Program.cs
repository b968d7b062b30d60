// Crest's benchmark runner. Usage: bench/run [NAME...] (default: all).
// Every figure is printed beside a baseline measured in the same run on the same machine.
namespace Crest.Bench;

internal static class Program
{
    private static readonly Dictionary<string, Func<BenchContext, int>> Benchmarks = new()
    {
        ["startup"] = StartupBenchmark.Run,
    };

    private static int Main(string[] args)
    {
        var context = BenchContext.FromEnvironment();
        var names = args.Length > 0 ? args : Benchmarks.Keys.ToArray();
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
