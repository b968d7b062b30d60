using Crest.Kernel.Tests.Fixtures;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Restore;

[Collection("Children of the test process")]
public class RestoreEngineTests
{
    [Fact]
    public void CounterSurvivesDumpKillRestoreWithItsPid()
    {
        using var fixture = FixtureProcess.Start("restore_counter");
        int pid = fixture.Pid;
        string dir = NewImagesDir();
        try
        {
            Thread.Sleep(30);
            DumpAndKill(fixture, dir);
            Assert.False(Exists(pid));
            using var restored = RestoreDetached(dir);
            Assert.Equal(pid, restored.Pid);
            Thread.Sleep(30);
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void MapsFilesSignalsAndTaskStateComeBackExactly()
    {
        string dir = NewImagesDir();
        string data = Path.Combine(dir, "data.bin"), log = Path.Combine(dir, "log.txt");
        File.WriteAllBytes(data, System.Text.Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("0123456789abcdef", 1024))));
        using var fixture = FixtureProcess.Start("restore_state", data, log);
        try
        {
            DumpAndKill(fixture, dir);
            using var restored = RestoreDetached(dir);
            AssertPass(Verify(restored, fixture));
            Assert.Equal("before\nafter\n", File.ReadAllText(log));
            Assert.Equal((byte)'S', File.ReadAllBytes(data)[4097]);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void StateSurvivesTwoGenerationsOfDumpAndRestore()
    {
        string dir = NewImagesDir(), second = NewImagesDir();
        string data = Path.Combine(dir, "data.bin"), log = Path.Combine(dir, "log.txt");
        File.WriteAllBytes(data, System.Text.Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("0123456789abcdef", 1024))));
        using var fixture = FixtureProcess.Start("restore_state", data, log);
        try
        {
            DumpAndKill(fixture, dir);
            using (var once = RestoreDetached(dir))
                DumpAndKill(once, second);
            using var twice = RestoreDetached(second);
            AssertPass(Verify(twice, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
            Directory.Delete(second, true);
        }
    }
}
