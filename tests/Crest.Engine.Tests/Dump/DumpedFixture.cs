// For restore tests: a C fixture started, dumped (and so killed) into a fresh images directory, with what a
// test needs afterwards: the images, the pid to restore, the READY fields and the fixture's output file,
// which the restored process keeps writing to (its fd 1 is a regular file, reopened at its position).
using System.Diagnostics;
using Crest.Engine.Dump;
using Crest.Kernel.Tests.Fixtures;

namespace Crest.Engine.Tests.Dump;

internal sealed class DumpedFixture : IDisposable
{
    private DumpedFixture(FixtureProcess fixture, string imagesDir, DumpStatistics statistics)
    {
        Fixture = fixture;
        ImagesDir = imagesDir;
        Statistics = statistics;
    }

    public FixtureProcess Fixture { get; }

    public int Pid => Fixture.Pid;

    public string ImagesDir { get; }

    public DumpStatistics Statistics { get; }

    public IReadOnlyDictionary<string, string> Ready => Fixture.Ready;

    /// <summary>What the fixture, and after restore the restored process, wrote so far.</summary>
    public string Output => Fixture.Output;

    /// <summary>Start <paramref name="name"/>, dump it into a new temporary directory and wait until the original is gone.</summary>
    public static DumpedFixture Start(string name, params string[] args)
    {
        var fixture = FixtureProcess.Start(name, args);
        string dir = Directory.CreateTempSubdirectory($"crest-dumped-{name}-").FullName;
        try
        {
            var stats = DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = dir });
            var status = fixture.Child.WaitForExit(FixtureProcess.DefaultTimeout);
            if (!status.Signaled || status.TermSignal != 9)
                throw new InvalidOperationException($"fixture {name} was not killed by the dump: {status}");
            return new DumpedFixture(fixture, dir, stats);
        }
        catch
        {
            fixture.Dispose();
            Directory.Delete(dir, recursive: true);
            throw;
        }
    }

    /// <summary>Wait for a PASS or FAIL line in the output (written by the restored process) and return it.</summary>
    public string WaitForVerdict(TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            string? verdict = Output.Split('\n').FirstOrDefault(l => l.StartsWith("PASS", StringComparison.Ordinal) || l.StartsWith("FAIL", StringComparison.Ordinal));
            if (verdict is not null) return verdict;
            if (clock.Elapsed > timeout) return $"no verdict within {timeout.TotalSeconds} s: {Output}";
            Thread.Sleep(5);
        }
    }

    public void Dispose()
    {
        Fixture.Dispose();
        Directory.Delete(ImagesDir, recursive: true);
    }
}
