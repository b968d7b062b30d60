using Crest.Engine.Dump;
using Crest.Engine.Restore;
using Crest.Engine.Tests.Dump;
using Crest.Kernel.Tests.Fixtures;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Restore;

// Multi-threaded processes: every thread comes back with its TID, registers, TLS, mask, sigaltstack, robust
// list, rseq and clear_child_tid, and carries on (tests/fixtures/threads.c checks itself).
[Collection("Children of the test process")]
public class ThreadTests
{
    [Theory]
    [InlineData(4)]
    [InlineData(256)]
    public void ThreadsComeBackAsThemselvesAndCarryOn(int count)
    {
        using var fixture = FixtureProcess.Start("threads", count.ToString(System.Globalization.CultureInfo.InvariantCulture));
        int pid = fixture.Pid;
        var tids = ThreadDumper.ListThreads(pid);
        Assert.Equal(count + 1, tids.Count);
        string dir = NewImagesDir();
        try
        {
            DumpAndKill(fixture, dir);
            Assert.False(Exists(pid));
            AssertImagesDecode(dir, pid, tids, decodeEveryCore: count <= 4);

            using var restored = RestoreDetached(dir);
            Assert.Equal(pid, restored.Pid);
            Assert.Equal(tids.Order(), ThreadDumper.ListThreads(pid).Order());
            foreach (int tid in tids)
                Assert.Contains("TracerPid:\t0\n", File.ReadAllText($"/proc/{pid}/task/{tid}/status"), StringComparison.Ordinal);
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void ThreadsOfEveryProcessOfATreeComeBack()
    {
        using var fixture = FixtureProcess.Start("tree_threads");
        int root = fixture.Pid, child = int.Parse(fixture.Ready["child"], System.Globalization.CultureInfo.InvariantCulture);
        var rootThreads = ThreadDumper.ListThreads(root);
        var childThreads = ThreadDumper.ListThreads(child);
        Assert.Equal(3, rootThreads.Count);
        Assert.Equal(4, childThreads.Count);
        string dir = NewImagesDir();
        try
        {
            DumpAndKill(fixture, dir);
            using (var pstree = Crit.Decode(Path.Combine(dir, "pstree.img")))
            {
                var entries = pstree.RootElement.GetProperty("entries");
                Assert.Equal(2, entries.GetArrayLength());
                Assert.Equal(rootThreads.Order(), entries[0].GetProperty("threads").EnumerateArray().Select(t => t.GetInt32()).Order());
                Assert.Equal(childThreads.Order(), entries[1].GetProperty("threads").EnumerateArray().Select(t => t.GetInt32()).Order());
            }
            using var restored = RestoreDetached(dir);
            Assert.Equal(rootThreads.Order(), ThreadDumper.ListThreads(root).Order());
            Assert.Equal(childThreads.Order(), ThreadDumper.ListThreads(child).Order());
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void AStoppedMultiThreadedProcessComesBackStopped()
    {
        using var fixture = FixtureProcess.Start("threads", "4");
        int pid = fixture.Pid;
        fixture.Child.Signal(19 /* SIGSTOP */);
        WaitForEveryThread(pid, 'T');
        string dir = NewImagesDir();
        try
        {
            DumpAndKill(fixture, dir);
            using var restored = RestoreDetached(dir);
            WaitForEveryThread(pid, 'T');
            restored.Signal(18 /* SIGCONT */);
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    private static void WaitForEveryThread(int pid, char state)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            var states = ThreadDumper.ListThreads(pid).Select(tid =>
            {
                string stat = File.ReadAllText($"/proc/{pid}/task/{tid}/stat");
                return stat[stat.LastIndexOf(')') + 2];
            }).ToList();
            if (states.All(s => s == state)) return;
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"threads of {pid} are in states {string.Concat(states)}, not all {state}");
            Thread.Sleep(5);
        }
    }

    [Fact]
    public void ThreadsThatComeAndGoDuringTheFreezeAreDumpedAndRestored()
    {
        using var fixture = FixtureProcess.Start("thread_churn");
        string dir = NewImagesDir();
        try
        {
            for (int round = 0; round < 5; round++)
            {
                string leftRunning = Path.Combine(dir, $"round-{round}");
                Directory.CreateDirectory(leftRunning);
                DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = leftRunning, LeaveRunning = true });
                Assert.True(File.Exists(Path.Combine(leftRunning, "inventory.img")));
            }
            DumpAndKill(fixture, dir);
            using var restored = RestoreDetached(dir);
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void ASeccompFilterOfOneThreadStaysWithThatThread()
    {
        using var fixture = FixtureProcess.Start("thread_seccomp");
        string dir = NewImagesDir();
        try
        {
            DumpAndKill(fixture, dir);
            Crit.Decode(Path.Combine(dir, "seccomp.img")).Dispose();
            using var restored = RestoreDetached(dir);
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void AThreadWithItsOwnCredentialsIsRefusedAndEveryThreadLeftRunning()
    {
        using var fixture = FixtureProcess.Start("thread_seccomp", "creds");
        string dir = NewImagesDir();
        try
        {
            var e = Assert.Throws<DumpException>(() => DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = dir }));
            Assert.Contains("credentials other than its main thread's", e.Message);
            Assert.Empty(Directory.GetFiles(dir));
            foreach (int tid in ThreadDumper.ListThreads(fixture.Pid))
                Assert.Contains("TracerPid:\t0\n", File.ReadAllText($"/proc/{fixture.Pid}/task/{tid}/status"), StringComparison.Ordinal);
            Assert.Equal("PASS", fixture.Verify(SIGUSR1, TimeSpan.FromSeconds(20)));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void PendingSignalsOfThreadsAndProcessComeBackWithTheirSiginfoInOrder()
    {
        using var fixture = FixtureProcess.Start("thread_signals");
        string dir = NewImagesDir();
        try
        {
            DumpAndKill(fixture, dir);
            using (var main = Crit.Decode(Path.Combine(dir, $"core-{fixture.Pid}.img")))
            {
                var shared = main.RootElement.GetProperty("entries")[0].GetProperty("tc").GetProperty("signals_s").GetProperty("signals");
                Assert.Equal(4, shared.GetArrayLength());
            }
            using var restored = RestoreDetached(dir);
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void DumpFailureInTheThirdThreadLeavesEveryThreadRunning()
    {
        using var fixture = FixtureProcess.Start("threads", "4");
        int pid = fixture.Pid;
        string dir = NewImagesDir();
        ThreadDumper.ThreadHook = i => { if (i == 2) throw new IOException("test failure in the third thread"); };
        try
        {
            var e = Assert.Throws<DumpException>(() => DumpEngine.Dump(new DumpOptions { Pid = pid, ImagesDir = dir }));
            Assert.Contains("test failure in the third thread", e.Message);
            Assert.Empty(Directory.GetFiles(dir));
            foreach (int tid in ThreadDumper.ListThreads(pid))
            {
                string status = File.ReadAllText($"/proc/{pid}/task/{tid}/status");
                Assert.Contains("TracerPid:\t0\n", status, StringComparison.Ordinal);
                Assert.DoesNotContain("State:\tt", status, StringComparison.Ordinal);
            }
            Assert.Equal("PASS", fixture.Verify(SIGUSR1, TimeSpan.FromSeconds(20)));
        }
        finally
        {
            ThreadDumper.ThreadHook = null;
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void RestoreFailureAtTheThirdThreadLeavesNoTaskBehind()
    {
        using var fixture = FixtureProcess.Start("threads", "4");
        int pid = fixture.Pid;
        var tids = ThreadDumper.ListThreads(pid);
        string dir = NewImagesDir();
        try
        {
            DumpAndKill(fixture, dir);
            string children = Children();
            RestoreThreads.ThreadHook = i => { if (i == 2) throw new IOException("test failure at the third thread"); };
            var e = FailsCleanly(dir, pid, children);
            Assert.Contains("test failure at the third thread", e.Message);
            foreach (int tid in tids) Assert.False(Exists(tid), $"thread {tid} was left behind");
        }
        finally
        {
            RestoreThreads.ThreadHook = null;
            Directory.Delete(dir, true);
        }
    }

    /// <summary>Every image decodes with crit; pstree lists all threads, main first; each thread has its core.</summary>
    private static void AssertImagesDecode(string dir, int pid, IReadOnlyList<int> tids, bool decodeEveryCore)
    {
        using (var pstree = Crit.Decode(Path.Combine(dir, "pstree.img")))
        {
            var listed = pstree.RootElement.GetProperty("entries")[0].GetProperty("threads").EnumerateArray().Select(t => t.GetInt32()).ToList();
            Assert.Equal(pid, listed[0]);
            Assert.Equal(tids.Order(), listed.Order());
        }
        foreach (int tid in tids)
        {
            string core = Path.Combine(dir, $"core-{tid}.img");
            Assert.True(File.Exists(core), $"core-{tid}.img is missing");
            if (!decodeEveryCore && tid != pid && tid != tids[^1]) continue;
            using var decoded = Crit.Decode(core);
            var entry = decoded.RootElement.GetProperty("entries")[0];
            Assert.Equal("X86_64", entry.GetProperty("mtype").GetString());
            Assert.True(entry.GetProperty("thread_info").GetProperty("fpregs").TryGetProperty("xsave", out _));
            Assert.Equal(tid == pid, entry.TryGetProperty("tc", out _));
            Assert.True(entry.GetProperty("thread_core").TryGetProperty("blk_sigset", out _));
        }
        foreach (string file in Directory.GetFiles(dir))
        {
            string name = Path.GetFileName(file);
            if (name.StartsWith("pages-", StringComparison.Ordinal) || name.StartsWith("core-", StringComparison.Ordinal)) continue;
            Crit.Decode(file).Dispose();
        }
    }
}
