using Crest.Engine.Tests.Dump;
using Crest.Images;
using Crest.Images.Protos;
using Crest.Kernel.Tests.Fixtures;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Restore;

// POSIX timers (timer_create): dumped into core tc.timers.posix with the time they had left, restored at
// their ids (PR_TIMER_CREATE_RESTORE_IDS) and armed again. The fixture checks ids, ticks, sival and timing.
[Collection("Children of the test process")]
public class PosixTimerTests(Xunit.Abstractions.ITestOutputHelper output)
{
    [Fact]
    public void TimersComeBackAtTheirIdsAndKeepTheirTime()
    {
        string dir = NewImagesDir();
        using var fixture = FixtureProcess.Start("posix_timers");
        try
        {
            int p = int.Parse(fixture.Ready["p"]), o = int.Parse(fixture.Ready["o"]), d = int.Parse(fixture.Ready["d"]);
            DumpAndKill(fixture, dir);

            string coreImage = Path.Combine(dir, $"core-{fixture.Pid}.img");
            using (var json = Crit.Decode(coreImage))
                Assert.Equal(3, json.RootElement.GetProperty("entries")[0].GetProperty("tc").GetProperty("timers").GetProperty("posix").GetArrayLength());
            CoreEntry core;
            using (var reader = ImageReader.Open(coreImage, ImageKinds.Core))
                core = reader.ReadEntries(CoreEntry.Parser).Single();
            var timers = core.Tc.Timers.Posix.ToDictionary(t => (int)t.ItId);
            Assert.Equal(new[] { p, o, d }.Order(), timers.Keys.Order());

            var periodic = timers[p];
            Assert.Equal((1u, 36u, 0u, 0x5eed1UL), (periodic.ClockId, periodic.SiSigno, periodic.ItSigevNotify, periodic.SivalPtr));
            Assert.Equal((0UL, 50_000_000UL), (periodic.Isec, periodic.Insec));
            var oneShot = timers[o];
            Assert.Equal((0u, 37u, 0x5eed2UL), (oneShot.ClockId, oneShot.SiSigno, oneShot.SivalPtr));
            Assert.Equal((0UL, 0UL), (oneShot.Isec, oneShot.Insec));
            ulong leftNs = oneShot.Vsec * 1_000_000_000 + oneShot.Vnsec;
            Assert.InRange(leftNs, 1UL, 5_000_000_000UL);
            var disarmed = timers[d];
            Assert.Equal((1u /* SIGEV_NONE */, 0UL, 0UL, 0UL, 0UL), (disarmed.ItSigevNotify, disarmed.Vsec, disarmed.Vnsec, disarmed.Isec, disarmed.Insec));

            // Stopwatch timestamps are CLOCK_MONOTONIC on Linux, as the fixture's.
            long restoreStarted = System.Diagnostics.Stopwatch.GetTimestamp();
            using var restored = RestoreDetached(dir);
            long restoreReturned = System.Diagnostics.Stopwatch.GetTimestamp();
            Assert.Equal(fixture.Pid, restored.Pid);
            AssertPass(Verify(restored, fixture));

            // The one-shot is armed with the time it had left at dump, during the restore: it fires that long after
            // some moment between the restore's start and its return.
            string fired = fixture.Output.Split('\n').Single(l => l.StartsWith("fired at", StringComparison.Ordinal));
            long firedAt = long.Parse(fired.Split(' ').Single(w => w.StartsWith("monotonic=", StringComparison.Ordinal))["monotonic=".Length..]);
            double Ms(long ticks) => ticks * 1e3 / System.Diagnostics.Stopwatch.Frequency;
            double afterStart = Ms(firedAt - restoreStarted) - leftNs / 1e6, afterReturn = Ms(firedAt - restoreReturned) - leftNs / 1e6;
            output.WriteLine($"{fired}; {leftNs / 1e6:0.0} ms left at dump; fired that long plus {afterStart:0.0} ms after the restore started, " +
                $"{afterReturn:0.0} ms after it returned (restore took {Ms(restoreReturned - restoreStarted):0.0} ms)");
            Assert.True(afterStart >= -1, $"fired {-afterStart:0.0} ms early");
            Assert.True(afterReturn <= 500, $"fired {afterReturn:0.0} ms late");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void ACpuTimeTimerNotifyingItsThreadStaysArmed()
    {
        string dir = NewImagesDir();
        using var fixture = FixtureProcess.Start("posix_timers", "cpu");
        try
        {
            int c = int.Parse(fixture.Ready["c"]);
            DumpAndKill(fixture, dir);
            CoreEntry core;
            using (var reader = ImageReader.Open(Path.Combine(dir, $"core-{fixture.Pid}.img"), ImageKinds.Core))
                core = reader.ReadEntries(CoreEntry.Parser).Single();
            var cpu = Assert.Single(core.Tc.Timers.Posix, t => t.ItId == c);
            // The kernel keeps CLOCK_PROCESS_CPUTIME_ID as the process clock of "self": MAKE_PROCESS_CPUCLOCK(0, CPUCLOCK_SCHED) = -6.
            Assert.Equal((unchecked((uint)-6), 4u /* SIGEV_THREAD_ID | SIGEV_SIGNAL */, fixture.Pid), (cpu.ClockId, cpu.ItSigevNotify, cpu.NotifyThreadId));
            using var restored = RestoreDetached(dir);
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
