using Crest.Engine.Tests.Dump;
using Crest.Images;
using Crest.Images.Protos;
using Crest.Kernel.Tests.Fixtures;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Tree;

/// <summary>Trees of processes: pstree.img, exact pids and parents, sessions, groups, zombies, shared pipes and files.</summary>
[Collection("Children of the test process")]
public class ProcessTreeTests
{
    internal static List<PstreeEntry> ReadPstree(string dir)
    {
        using var reader = ImageReader.Open(Path.Combine(dir, "pstree.img"), ImageKinds.Pstree);
        return reader.ReadEntries(PstreeEntry.Parser).ToList();
    }

    internal static int Field(FixtureProcess fixture, string name) =>
        int.Parse(fixture.Ready[name], System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public void AThreeLevelTreeComesBackWithItsPidsAndParents()
    {
        using var fixture = FixtureProcess.Start("tree_fork");
        int root = fixture.Pid, a = Field(fixture, "a"), b = Field(fixture, "b");
        string dir = NewImagesDir();
        try
        {
            DumpAndKill(fixture, dir);
            Crit.DecodeAll(dir);
            var pstree = ReadPstree(dir);
            Assert.Equal(4, pstree.Count);
            Assert.Equal((uint)root, pstree[0].Pid);
            Assert.Equal(0u, pstree[0].Ppid);
            Assert.Equal((uint)root, pstree.Single(e => e.Pid == (uint)a).Ppid);
            Assert.Equal((uint)root, pstree.Single(e => e.Pid == (uint)b).Ppid);
            var c = pstree.Single(e => e.Ppid == (uint)a);
            Assert.All(pstree, e => Assert.Equal((uint)root, e.Sid));   // the fixture leads its own session
            Assert.Equal(4, pstree.Select(e => e.Pid).Distinct().Count());
            Assert.Equal(4, Directory.GetFiles(dir, "pages-*.img").Length);
            Assert.Equal(4, Directory.GetFiles(dir, "fdinfo-*.img").Length);

            using var restored = RestoreDetached(dir);
            Assert.Equal(root, restored.Pid);
            foreach (var e in pstree)
            {
                string stat = File.ReadAllText($"/proc/{e.Pid}/stat");
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (e.Pid != (uint)root) Assert.Equal(e.Ppid.ToString(System.Globalization.CultureInfo.InvariantCulture), fields[1]);
                Assert.Equal(e.Pgid.ToString(System.Globalization.CultureInfo.InvariantCulture), fields[2]);
                Assert.Equal(e.Sid.ToString(System.Globalization.CultureInfo.InvariantCulture), fields[3]);
            }
            AssertPass(Verify(restored, fixture));
            Assert.False(Exists((int)c.Pid));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>pid, ppid, pgid and sid of every task in pstree.img, as /proc shows them now.</summary>
    internal static void AssertTreeAsDumped(List<PstreeEntry> pstree, int root)
    {
        foreach (var e in pstree)
        {
            string stat = File.ReadAllText($"/proc/{e.Pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            string what = $"task {e.Pid} (ppid {e.Ppid}, pgid {e.Pgid}, sid {e.Sid}): {stat}";
            if (e.Pid != (uint)root) Assert.True(e.Ppid.ToString(System.Globalization.CultureInfo.InvariantCulture) == fields[1], what);
            Assert.True(e.Pgid.ToString(System.Globalization.CultureInfo.InvariantCulture) == fields[2], what);
            Assert.True(e.Sid.ToString(System.Globalization.CultureInfo.InvariantCulture) == fields[3], what);
        }
    }

    [Fact]
    public void SessionsAndGroupsComeBack()
    {
        using var fixture = FixtureProcess.Start("tree_groups");
        string dir = NewImagesDir();
        try
        {
            DumpAndKill(fixture, dir);
            Crit.DecodeAll(dir);
            var pstree = ReadPstree(dir);
            Assert.Equal(6, pstree.Count);
            Assert.Equal(3, pstree.Select(e => e.Pgid).Distinct().Count() - 1);   // root, A, C, E
            Assert.Equal(2, pstree.Select(e => e.Sid).Distinct().Count());        // root's and C's
            using var restored = RestoreDetached(dir);
            AssertTreeAsDumped(pstree, fixture.Pid);
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void AGroupAndASessionWhoseLeadersAreGoneComeBackThroughHelpers()
    {
        using var fixture = FixtureProcess.Start("tree_groups", "deadleader");
        string dir = NewImagesDir();
        try
        {
            DumpAndKill(fixture, dir);
            Crit.DecodeAll(dir);
            var pstree = ReadPstree(dir);
            Assert.Equal(8, pstree.Count);
            var pids = pstree.Select(e => e.Pid).ToHashSet();
            Assert.Contains(pstree, e => !pids.Contains(e.Pgid) && pids.Contains(e.Sid));     // H: group leader gone
            Assert.Contains(pstree, e => !pids.Contains(e.Pgid) && !pids.Contains(e.Sid));    // T: session leader gone
            using var restored = RestoreDetached(dir);
            AssertTreeAsDumped(pstree, fixture.Pid);
            foreach (var e in pstree.Where(e => !pids.Contains(e.Pgid)))
                Assert.False(Exists((int)e.Pgid), $"helper {e.Pgid} is still there");
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void ZombiesStayZombiesWithTheirExitStatus()
    {
        using var fixture = FixtureProcess.Start("tree_zombie");
        int z1 = Field(fixture, "z1"), z2 = Field(fixture, "z2");
        string dir = NewImagesDir();
        try
        {
            DumpAndKill(fixture, dir);
            Crit.DecodeAll(dir);
            var pstree = ReadPstree(dir);
            Assert.Equal(4, pstree.Count);
            using (var core = Crit.Decode(Path.Combine(dir, $"core-{z1}.img")))
            {
                var tc = core.RootElement.GetProperty("entries")[0].GetProperty("tc");
                Assert.Equal("2", tc.GetProperty("task_state").ToString());
                Assert.Equal(42 << 8, tc.GetProperty("exit_code").GetInt32());
            }
            Assert.False(File.Exists(Path.Combine(dir, $"mm-{z1}.img")));
            using var restored = RestoreDetached(dir);
            Assert.Equal('Z', State(z1));
            Assert.Equal('Z', State(z2));
            AssertTreeAsDumped(pstree, fixture.Pid);
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void AStoppedChildStaysStopped()
    {
        using var fixture = FixtureProcess.Start("tree_stopped");
        int stopped = Field(fixture, "stopped"), running = Field(fixture, "running");
        string dir = NewImagesDir();
        try
        {
            DumpAndKill(fixture, dir);
            Crit.DecodeAll(dir);
            using (var core = Crit.Decode(Path.Combine(dir, $"core-{stopped}.img")))
                Assert.Equal("3", core.RootElement.GetProperty("entries")[0].GetProperty("tc").GetProperty("task_state").ToString());
            using var restored = RestoreDetached(dir);
            // The restore queues the stop signal while it holds the task, which takes it once it runs after the
            // release: on a loaded machine that can be a moment after the restore returned.
            WaitForState(stopped, 'T');
            Assert.NotEqual('T', State(running));
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void LeaveStoppedLeavesTheWholeTreeStopped()
    {
        using var fixture = FixtureProcess.Start("tree_fork");
        string dir = NewImagesDir();
        try
        {
            Crest.Engine.Dump.DumpEngine.Dump(new Crest.Engine.Dump.DumpOptions { Pid = fixture.Pid, ImagesDir = dir, LeaveStopped = true });
            var pids = ReadPstree(dir).Select(e => (int)e.Pid).ToList();
            Assert.Equal(4, pids.Count);
            foreach (int pid in pids) WaitForState(pid, 'T');
            foreach (int pid in pids) Assert.Equal(0, Kill(pid, 18 /* SIGCONT */));
            fixture.Child.Signal(SIGUSR1);
            Assert.Equal(0, fixture.Child.WaitForExit(TimeSpan.FromSeconds(20)).ExitCode);
            Assert.Contains("PASS", fixture.Output);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void APipeSharedByParentAndChildKeepsItsDataInFlight()
    {
        using var fixture = FixtureProcess.Start("tree_pipe");
        string dir = NewImagesDir();
        try
        {
            // The writer polls only once a write met a full pipe; the reader then takes 4 KiB a millisecond, so it stays nearly full.
            int writer = int.Parse(fixture.Ready["writer"], System.Globalization.CultureInfo.InvariantCulture);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (File.ReadAllText($"/proc/{writer}/syscall").Split(' ')[0] is not ("7" or "271")) // poll, ppoll
            {
                if (clock.Elapsed > FixtureProcess.DefaultTimeout) Assert.Fail("the writer never found the pipe full");
                Thread.Sleep(1);
            }
            DumpAndKill(fixture, dir);
            Crit.DecodeAll(dir);
            using (var reader = ImageReader.Open(Path.Combine(dir, "pipes-data.img"), ImageKinds.PipesData))
            {
                var entries = new List<PipeDataEntry>();
                while (reader.ReadEntry(PipeDataEntry.Parser) is { } e) { entries.Add(e); reader.ReadPayload(); }
                var shared = Assert.Single(entries);                   // one pipe, its buffer once
                Assert.Equal(256u * 1024, shared.Size);
                Assert.True(shared.Bytes > 0, "no data in flight");
            }
            // Both ends are one open file description each, held by both processes: two PIPE entries in all.
            using (var reader = ImageReader.Open(Path.Combine(dir, "files.img"), ImageKinds.Files))
                Assert.Equal(2, reader.ReadEntries(FileEntry.Parser).Count(f => f.Type == FdTypes.Pipe));
            var pipeIds = new List<HashSet<uint>>();
            foreach (string fdinfo in Directory.GetFiles(dir, "fdinfo-*.img"))
            {
                using var reader = ImageReader.Open(fdinfo, ImageKinds.Fdinfo);
                pipeIds.Add(reader.ReadEntries(FdinfoEntry.Parser).Where(f => f.Type == FdTypes.Pipe).Select(f => f.Id).ToHashSet());
            }
            Assert.Equal(2, pipeIds.Count);
            Assert.True(pipeIds[0].SetEquals(pipeIds[1]) && pipeIds[0].Count == 2, "the processes do not share the pipe ends");
            RestoreAndVerify(dir, fixture);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void AFileSharedAfterForkKeepsOneOffset()
    {
        string path = Path.Combine(Path.GetTempPath(), $"crest-tree-file-{Guid.NewGuid():N}");
        using var fixture = FixtureProcess.Start("tree_file", path);
        string dir = NewImagesDir();
        try
        {
            DumpAndKill(fixture, dir);
            Crit.DecodeAll(dir);
            RestoreAndVerify(dir, fixture);
        }
        finally
        {
            Directory.Delete(dir, true);
            File.Delete(path);
        }
    }

    [Fact]
    public void AFailureInTheThirdProcessReleasesTheWholeTreeAsItWas()
    {
        using var fixture = FixtureProcess.Start("tree_fork");
        string dir = NewImagesDir();
        int injected = 0;
        Crest.Engine.Dump.DumpEngine.StageHook = s =>
        {
            if (s == "injecting" && ++injected == 3) throw new IOException("test failure in the third process");
        };
        try
        {
            var e = Assert.Throws<Crest.Engine.Dump.DumpException>(() =>
                Crest.Engine.Dump.DumpEngine.Dump(new Crest.Engine.Dump.DumpOptions { Pid = fixture.Pid, ImagesDir = dir }));
            Assert.Contains("test failure in the third process", e.Message);
            Assert.Empty(Directory.GetFiles(dir));
            int a = Field(fixture, "a"), b = Field(fixture, "b");
            foreach (int pid in new[] { fixture.Pid, a, b })
                Assert.Matches(@"TracerPid:\s+0\n", File.ReadAllText($"/proc/{pid}/status"));
            fixture.Child.Signal(SIGUSR1);
            Assert.Equal(0, fixture.Child.WaitForExit(TimeSpan.FromSeconds(20)).ExitCode);
            Assert.Contains("PASS", fixture.Output);
        }
        finally
        {
            Crest.Engine.Dump.DumpEngine.StageHook = null;
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void AFailedRestoreLeavesNoTaskOfTheTree()
    {
        string path = Path.Combine(Path.GetTempPath(), $"crest-tree-file-{Guid.NewGuid():N}");
        using var fixture = FixtureProcess.Start("tree_file", path);
        int child = Field(fixture, "child");
        string dir = NewImagesDir();
        try
        {
            DumpAndKill(fixture, dir);
            // Every task is created before any is given its files: the open of the deleted file fails then.
            File.Delete(path);
            var deadline = System.Diagnostics.Stopwatch.StartNew();
            // The child was re-parented to PID 1, which reaps only every second or two here (longer under load).
            while (Exists(child) && deadline.Elapsed < TimeSpan.FromSeconds(30)) Thread.Sleep(10);
            string before = Children();
            var e = FailsCleanly(dir, fixture.Pid, before);
            Assert.Contains(path, e.Message);
            Assert.False(Exists(child), $"child {child} was left behind");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void AShellPipelineCheckpointedMidwayCountsEveryByte()
    {
        const long Bytes = 1_000_000_000;
        using var fixture = FixtureProcess.Start("shell_pipeline", $"yes | head -c {Bytes} | wc -c");
        string dir = NewImagesDir();
        try
        {
            // Midway: the shell has its three children and bytes are moving through both pipes.
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (File.ReadAllText($"/proc/{fixture.Pid}/task/{fixture.Pid}/children").Split(' ', StringSplitOptions.RemoveEmptyEntries).Length < 3)
            {
                if (clock.Elapsed > TimeSpan.FromSeconds(10)) Assert.Fail("the pipeline did not start");
                Thread.Sleep(5);
            }
            Thread.Sleep(300);
            DumpAndKill(fixture, dir);
            Crit.DecodeAll(dir);
            var pstree = ReadPstree(dir);
            Assert.Equal(4, pstree.Count);
            Assert.True(Directory.GetFiles(dir, "core-*.img").Length == 4);
            using var restored = RestoreDetached(dir);
            AssertTreeAsDumped(pstree, fixture.Pid);
            var status = restored.WaitForExit(TimeSpan.FromSeconds(120));
            Assert.True(status.Exited && status.ExitCode == 0, $"{status}\n{fixture.Output}");
            var lines = fixture.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(Bytes.ToString(System.Globalization.CultureInfo.InvariantCulture), lines[^1].Trim());
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    internal static char State(int pid)
    {
        string stat = File.ReadAllText($"/proc/{pid}/stat");
        return stat[stat.LastIndexOf(')') + 2];
    }

    internal static void WaitForState(int pid, char state)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (State(pid) != state)
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(20)) Assert.Fail($"task {pid} is in state {State(pid)}, not {state}");
            Thread.Sleep(2);
        }
    }
}
