using Crest.Engine.Restore;
using Crest.Kernel.Processes;
using Crest.Kernel.Tests.Fixtures;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Restore;

// Post-copy restore: the private anonymous memory of a task restored with LazyPagesSocket is filled by a
// lazy-pages daemon (LazyPages, run here on a thread of the test process) while the task runs. With the
// background pass paused the task meets its missing pages itself: in a child it forks, after MADV_DONTNEED,
// after mremap.
[Collection("Children of the test process")]
public class LazyPagesTests
{
    /// <summary>The daemon on its own thread, serving the images of one directory.</summary>
    private sealed class Daemon : IDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly Thread _thread;
        private Exception? _failure;

        public Daemon(string dir)
        {
            Server = new LazyPages(dir, Path.Combine(dir, LazyPagesConnection.SocketName));
            _thread = new Thread(() =>
            {
                try
                {
                    Server.Run(_stop.Token);
                }
                catch (Exception e)
                {
                    _failure = e;
                }
            }) { Name = "lazy-pages daemon", IsBackground = true };
            _thread.Start();
        }

        public LazyPages Server { get; }

        /// <summary>True once the daemon has ended by itself (every task served or gone, the restore closed).</summary>
        public bool Ended(TimeSpan limit)
        {
            bool ended = _thread.Join(limit);
            if (_failure is not null) throw new InvalidOperationException($"the daemon failed: {_failure}", _failure);
            return ended;
        }

        public void Dispose()
        {
            _stop.Cancel();
            _thread.Join();
            Server.Dispose();
        }
    }

    private static ChildProcess RestoreLazily(string dir, Daemon daemon)
    {
        string pidFile = Path.Combine(dir, $"restored-{Guid.NewGuid():N}.pid");
        int rc = RestoreEngine.Run(new RestoreOptions { ImagesDir = dir, Detached = true, PidFile = pidFile, LazyPagesSocket = daemon.Server.SocketPath });
        Assert.Equal(0, rc);
        return ChildProcess.Adopt(int.Parse(File.ReadAllText(pidFile), System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public void MemoryChecksumsSurviveALazyRestore()
    {
        string dir = NewImagesDir();
        using var fixture = FixtureProcess.Start("restore_memory", "64");
        try
        {
            DumpAndKill(fixture, dir);
            using var daemon = new Daemon(dir);
            using var restored = RestoreLazily(dir, daemon);
            Assert.True(RestoreEngine.LastStatistics!.PagesRestored < 64 * 256, "the 64 MiB were written by the restore, not left to the daemon");
            // The background pass fills everything: the daemon ends by itself while the task still waits.
            Assert.True(daemon.Ended(TimeSpan.FromSeconds(30)), "the daemon did not finish");
            Assert.True(daemon.Server.PagesCopied >= 64 * 256, $"{daemon.Server.PagesCopied} pages copied");
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Theory]
    [InlineData("plain")]
    [InlineData("fork")]
    [InlineData("dontneed")]
    [InlineData("remap")]
    public void TaskMeetsItsMissingPages(string mode)
    {
        string dir = NewImagesDir();
        using var fixture = FixtureProcess.Start("lazy_memory", mode, "16");
        LazyPages.BackgroundPaused = true;
        try
        {
            DumpAndKill(fixture, dir);
            using var daemon = new Daemon(dir);
            using var restored = RestoreLazily(dir, daemon);
            AssertPass(Verify(restored, fixture));
            Assert.True(daemon.Server.Faults > 0, "no fault reached the daemon");
            if (mode == "fork") Assert.Equal(1, daemon.Server.Forks);
        }
        finally
        {
            LazyPages.BackgroundPaused = false;
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void WithoutADaemonTheRestoreFailsAndCreatesNothing()
    {
        string dir = NewImagesDir();
        using var fixture = FixtureProcess.Start("lazy_memory", "plain", "4");
        try
        {
            int pid = fixture.Pid;
            DumpAndKill(fixture, dir);
            string before = Children();
            var e = Assert.Throws<RestoreException>(() => RestoreEngine.Run(new RestoreOptions
            {
                ImagesDir = dir, Detached = true, LazyPagesSocket = Path.Combine(dir, LazyPagesConnection.SocketName),
            }));
            Assert.Contains("no lazy-pages daemon", e.Message, StringComparison.Ordinal);
            Assert.False(Exists(pid), $"task {pid} was left behind");
            Assert.Equal(before, Children());
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
