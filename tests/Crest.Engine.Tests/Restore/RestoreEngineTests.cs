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
            Assert.Equal("PASS", Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
