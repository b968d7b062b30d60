using Crest.Engine.Restore;
using Crest.Kernel.Tests.Fixtures;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Restore;

// Fail closed (ENGINE.md §1.5): a restore that cannot complete says why and leaves no task behind.
[Collection("Children of the test process")]
public class RestoreFailureTests
{
    [Fact]
    public void PidTakenByALiveTaskIsNamedWithItsComm()
    {
        string dir = NewImagesDir();
        using var fixture = FixtureProcess.Start("restore_counter");
        try
        {
            Crest.Engine.Dump.DumpEngine.Dump(new Crest.Engine.Dump.DumpOptions { Pid = fixture.Pid, ImagesDir = dir, LeaveRunning = true });
            var e = Assert.Throws<RestoreException>(() => RestoreEngine.Run(new RestoreOptions { ImagesDir = dir, Detached = true }));
            Assert.Contains($"pid {fixture.Pid}", e.Message);
            Assert.Contains("restore_counter", e.Message);
            Assert.Equal("PASS", fixture.Verify(SIGUSR1, TimeSpan.FromSeconds(20)));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void MissingImageIsNamed()
    {
        using var images = new ScratchDirectory();
        string dir = images.Path;
        using var fixture = FixtureProcess.Start("restore_counter");
        var e = FailsCleanlyAfter(fixture, dir, () => File.Delete(Path.Combine(dir, $"core-{fixture.Pid}.img")));
        Assert.Contains($"core-{fixture.Pid}.img", e.Message);
    }

    [Fact]
    public void ChangedMappedFileIsRefusedAfterTheTaskWasCreated()
    {
        using var images = new ScratchDirectory();
        string dir = images.Path;
        string data = Path.Combine(dir, "data.bin"), log = Path.Combine(dir, "log.txt");
        File.WriteAllBytes(data, new byte[16384]);
        using var fixture = FixtureProcess.Start("restore_state", data, log);
        var e = FailsCleanlyAfter(fixture, dir, () => File.AppendAllText(data, "grown"));
        Assert.Contains(data, e.Message);
        Assert.Contains("changed since the dump", e.Message);
    }

    [Fact]
    public void TruncatedPagesImageIsRefused()
    {
        using var images = new ScratchDirectory();
        string dir = images.Path;
        using var fixture = FixtureProcess.Start("restore_counter");
        var e = FailsCleanlyAfter(fixture, dir, () =>
        {
            string pages = Path.Combine(dir, "pages-1.img");
            using (var f = File.OpenWrite(pages)) f.SetLength(f.Length / 2);
        });
        Assert.Contains("pages-1.img", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void CorruptMmImageNamesFileAndOffset()
    {
        using var images = new ScratchDirectory();
        string dir = images.Path;
        using var fixture = FixtureProcess.Start("restore_counter");
        var e = FailsCleanlyAfter(fixture, dir, () =>
        {
            string mm = Path.Combine(dir, $"mm-{fixture.Pid}.img");
            using (var f = File.OpenWrite(mm)) f.SetLength(f.Length - 7);
        });
        Assert.Contains($"mm-{fixture.Pid}.img", e.Message);
        Assert.Contains("offset", e.Message);
        Assert.IsType<Crest.Images.ImageFormatException>(e.InnerException);
    }

    [Fact]
    public void PidHeldByAZombieIsWaitedFor()
    {
        string dir = NewImagesDir();
        using var fixture = FixtureProcess.Start("restore_counter");
        try
        {
            DumpAndKill(fixture, dir);
            var first = RestoreDetached(dir);
            // Killed but not reaped: a zombie holds the pid, as one re-parented to a slow PID 1 does.
            Assert.Equal(0, Kill(first.Pid, SIGKILL));
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (!File.ReadAllText($"/proc/{first.Pid}/stat").Contains(") Z ") && clock.Elapsed < TimeSpan.FromSeconds(10)) Thread.Sleep(5);
            var reaper = new Thread(() =>
            {
                Thread.Sleep(300);
                first.WaitForExit(TimeSpan.FromSeconds(10));
            });
            reaper.Start();
            using var second = RestoreDetached(dir);
            reaper.Join();
            Assert.Equal(fixture.Pid, second.Pid);
            AssertPass(Verify(second, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void PidHeldByAZombieTooLongFailsNamingIt()
    {
        string dir = NewImagesDir();
        using var fixture = FixtureProcess.Start("restore_counter");
        var saved = RestoreEngine.PidWait;
        try
        {
            DumpAndKill(fixture, dir);
            using var first = RestoreDetached(dir);
            Assert.Equal(0, Kill(first.Pid, SIGKILL));
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (!File.ReadAllText($"/proc/{first.Pid}/stat").Contains(") Z ") && clock.Elapsed < TimeSpan.FromSeconds(10)) Thread.Sleep(5);
            RestoreEngine.PidWait = TimeSpan.FromMilliseconds(200);
            var e = Assert.Throws<RestoreException>(() => RestoreEngine.Run(new RestoreOptions { ImagesDir = dir, Detached = true }));
            Assert.Contains($"pid {fixture.Pid}", e.Message);
            Assert.Contains("zombie", e.Message);
        }
        finally
        {
            RestoreEngine.PidWait = saved;
            Directory.Delete(dir, true);
        }
    }
}
