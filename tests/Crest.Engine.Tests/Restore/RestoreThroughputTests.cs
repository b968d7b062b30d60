using System.Diagnostics;
using Crest.Engine.Restore;
using Crest.Kernel.Memory;
using Crest.Kernel.Tests.Fixtures;
using Xunit.Abstractions;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Restore;

// Restore speed of 1 GiB of private anonymous memory. Target (issue 3): pages written at >= 1.5x the
// single-thread fault-in rate (process_vm_writev into untouched pages, ~1.3 GB/s on an idle machine).
// The default fills them with UFFDIO_COPY; the faulting writers, MADV_POPULATE_WRITE and pread into a
// buffer are measured beside it.
// The machine is shared, so the test measures that baseline itself, next to restores with one writer and
// with all of them, and reports the figures; CREST_PERF_ASSERT=1 asserts a floor (a quiet machine is far above it).
[Collection("Children of the test process")]
public class RestoreThroughputTests(ITestOutputHelper output)
{
    [Fact]
    public void OneGibibyteRestoresWithEveryCoreWritingPages()
    {
        string dir = NewImagesDir();
        using var fixture = FixtureProcess.Start("restore_memory", "1024");
        try
        {
            DumpAndKill(fixture, dir);
            double baseline = SingleThreadFaultInRate(Path.Combine(dir, "pages-1.img"));
            double one = RestoreOnce(dir, fixture, workers: 1, verify: false);
            RestoreMemory.UseUserfaultfd = false;
            double faulting = RestoreOnce(dir, fixture, workers: Environment.ProcessorCount, verify: false);
            RestoreMemory.UseUserfaultfd = true;
            output.WriteLine($"with process_vm_writev into untouched pages instead of UFFDIO_COPY: {faulting / 1e9:0.00} GB/s");
            RestoreMemory.PopulateInTask = true;
            double populated = RestoreOnce(dir, fixture, workers: Environment.ProcessorCount, verify: false);
            RestoreMemory.PopulateInTask = false;
            RestoreMemory.ReadIntoBuffer = true;
            double buffered = RestoreOnce(dir, fixture, workers: Environment.ProcessorCount, verify: false);
            RestoreMemory.ReadIntoBuffer = false;
            output.WriteLine($"with pread into buffers instead of the mapped image: {buffered / 1e9:0.00} GB/s");
            double all = RestoreOnce(dir, fixture, workers: Environment.ProcessorCount, verify: true);
            output.WriteLine($"with MADV_POPULATE_WRITE in the task first: {populated / 1e9:0.00} GB/s");
            output.WriteLine($"single-thread fault-in {baseline / 1e9:0.00} GB/s; restore pages with 1 writer {one / 1e9:0.00} GB/s, " +
                $"with {Environment.ProcessorCount} writers {all / 1e9:0.00} GB/s = {all / baseline:0.00}x the baseline");
            // Reported, asserted only with CREST_PERF_ASSERT=1 (as the dump's figure): on the shared 2-core machine under
            // a full parallel test run (load ~20) one of these restores was measured at 0.39 GB/s, the next at 1.75.
            if (Environment.GetEnvironmentVariable("CREST_PERF_ASSERT") == "1")
                Assert.True(all > 0.5e9, $"pages written at {all / 1e9:0.00} GB/s");
        }
        finally
        {
            RestoreMemory.PopulateInTask = false;
            RestoreMemory.ReadIntoBuffer = false;
            RestoreMemory.UseUserfaultfd = true;
            RestoreMemory.Workers = Environment.ProcessorCount;
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void SmallProcessRestoreTime()
    {
        string dir = NewImagesDir();
        File.WriteAllText(Path.Combine(dir, "data"), string.Concat(Enumerable.Repeat("0123456789abcdef", 1024)));
        using var fixture = FixtureProcess.Start("restore_state", Path.Combine(dir, "data"), Path.Combine(dir, "log"));
        try
        {
            DumpAndKill(fixture, dir);
            foreach (bool pin in new[] { false, true, false, true })
            {
                RestoreEngine.PinWhileInjecting = pin;
                var times = new List<double>();
                for (int i = 0; i < 5; i++)
                {
                    File.Delete(Path.Combine(dir, "stats-restore"));
                    var clock = Stopwatch.StartNew();
                    using var restored = RestoreDetached(dir);
                    times.Add(clock.Elapsed.TotalMilliseconds);
                }
                times.Sort();
                output.WriteLine($"restore of restore_state, {(pin ? "pinned" : "not pinned")}: min {times[0]:0.0} ms, median {times[2]:0.0} ms");
            }
            RestoreEngine.PinWhileInjecting = true;
            using var last = RestoreDetached(dir);
            AssertPass(Verify(last, fixture));
        }
        finally
        {
            RestoreEngine.PinWhileInjecting = true;
            Directory.Delete(dir, true);
        }
    }

    private double RestoreOnce(string dir, FixtureProcess fixture, int workers, bool verify)
    {
        RestoreMemory.Workers = workers;
        File.Delete(Path.Combine(dir, "stats-restore"));
        var clock = Stopwatch.StartNew();
        using var restored = RestoreDetached(dir);
        clock.Stop();
        var stats = RestoreEngine.LastStatistics!;
        output.WriteLine($"{workers} writer(s): restore of {stats.PagesRestored * 4096 >> 20} MiB in {clock.Elapsed.TotalMilliseconds:0} ms " +
            $"(clone {stats.ForkingTime.TotalMilliseconds:0.0} ms, memory {stats.MemoryTime.TotalMilliseconds:0} ms, " +
            $"pages {stats.PagesWriteTime.TotalMilliseconds:0} ms = {stats.PagesWriteRate / 1e9:0.00} GB/s)");
        if (verify) AssertPass(Verify(restored, fixture));
        return stats.PagesWriteRate;
    }

    /// <summary>process_vm_writev of the pages image into fresh anonymous memory of this process, one thread.</summary>
    private static double SingleThreadFaultInRate(string pagesPath)
    {
        byte[] data = File.ReadAllBytes(pagesPath);
        using var target = MemoryMapping.Anonymous((ulong)data.Length);
        var clock = Stopwatch.StartNew();
        RemoteMemory.Write(Environment.ProcessId, target.Address, data);
        return data.Length / clock.Elapsed.TotalSeconds;
    }
}
