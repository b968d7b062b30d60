using Crest.Engine.Dump;
using Crest.Engine.Memory;
using Crest.Kernel;
using Crest.Kernel.Tests.Fixtures;

namespace Crest.Engine.Tests.Dump;

// The task writes its own pages into pages-N.img (Memory/PageDumper.TaskWrites.cs) unless that could hurt it:
// a file size limit below the pages would queue SIGXFSZ in it, so Crest writes them itself then.
[Collection("Children of the test process")]
public sealed class TaskWrittenPagesTests : IDisposable
{
    private const int SIGXFSZ = 25;
    private readonly string _dir = Directory.CreateTempSubdirectory("crest-task-written-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void ATaskWritesItsOwnPages()
    {
        using var fixture = FixtureProcess.Start("restore_memory", "8");
        long before = PageDumper.BytesWrittenByTasks;
        var stats = DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = _dir, LeaveRunning = true });
        Assert.Equal((long)stats.PagesWritten * 4096, PageDumper.BytesWrittenByTasks - before);
        Assert.Equal((long)stats.PagesWritten * 4096, new FileInfo(Path.Combine(_dir, "pages-1.img")).Length);
        Assert.Equal("PASS", fixture.Verify(10, TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public void ATaskBelowItsFileSizeLimitLeavesThePagesToCrest()
    {
        using var fixture = FixtureProcess.Start("restore_memory", "8");
        ResourceLimits.Set(fixture.Pid, ResourceLimitKind.FileSize, new ResourceLimit(1 << 20, ResourceLimit.Infinity));
        long before = PageDumper.BytesWrittenByTasks;
        var stats = DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = _dir, LeaveRunning = true });
        Assert.Equal(before, PageDumper.BytesWrittenByTasks);
        Assert.Equal((long)stats.PagesWritten * 4096, new FileInfo(Path.Combine(_dir, "pages-1.img")).Length);
        Assert.True(stats.PagesWritten > (8u << 20) / 4096);
        Assert.False(Pending(fixture.Pid, SIGXFSZ), "SIGXFSZ is pending in the task");
        Assert.Equal("PASS", fixture.Verify(10, TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public void ATaskWithOtherCredentialsCannotTakeThePagesFileSoCrestWritesThem()
    {
        // Uids 1000-1002: no ptrace access to Crest, so pidfd_getfd of Crest's descriptor in the task fails.
        using var fixture = FixtureProcess.Start("restore_creds", "creds");
        long before = PageDumper.BytesWrittenByTasks;
        var stats = DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = _dir, LeaveRunning = true });
        Assert.Equal(before, PageDumper.BytesWrittenByTasks);
        Assert.Equal((long)stats.PagesWritten * 4096, new FileInfo(Path.Combine(_dir, "pages-1.img")).Length);
        Assert.Equal("PASS", fixture.Verify(10, TimeSpan.FromSeconds(30)));
    }

    private static bool Pending(int pid, int signal)
    {
        foreach (string line in File.ReadAllLines($"/proc/{pid}/status"))
        {
            if (!line.StartsWith("SigPnd:", StringComparison.Ordinal) && !line.StartsWith("ShdPnd:", StringComparison.Ordinal)) continue;
            ulong mask = Convert.ToUInt64(line[7..].Trim(), 16);
            if ((mask & (1UL << (signal - 1))) != 0) return true;
        }
        return false;
    }
}
