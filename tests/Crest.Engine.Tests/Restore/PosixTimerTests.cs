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
            Assert.InRange(leftNs, 1UL, 2_000_000_000UL);
            var disarmed = timers[d];
            Assert.Equal((1u /* SIGEV_NONE */, 0UL, 0UL, 0UL, 0UL), (disarmed.ItSigevNotify, disarmed.Vsec, disarmed.Vnsec, disarmed.Isec, disarmed.Insec));

            using var restored = RestoreDetached(dir);
            long restoredAt = System.Diagnostics.Stopwatch.GetTimestamp(); // CLOCK_MONOTONIC, in ns, on Linux
            Assert.Equal(fixture.Pid, restored.Pid);
            AssertPass(Verify(restored, fixture));

            // The one-shot fires the time it had left at dump after the restore armed it (shortly before release).
            string fired = fixture.Output.Split('\n').Single(l => l.StartsWith("fired at", StringComparison.Ordinal));
            long firedAt = long.Parse(fired.Split(' ').Single(w => w.StartsWith("monotonic=", StringComparison.Ordinal))["monotonic=".Length..]);
            double lateMs = ((firedAt - restoredAt) * 1e9 / System.Diagnostics.Stopwatch.Frequency - leftNs) / 1e6;
            output.WriteLine($"{fired}; {leftNs / 1e6:0.0} ms left at dump, fired {lateMs:0.0} ms from that after the restore returned");
            Assert.InRange(lateMs, -200, 300);
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
