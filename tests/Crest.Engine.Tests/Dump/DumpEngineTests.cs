using System.Diagnostics;
using System.Text.Json;
using Crest.Engine.Dump;
using Crest.Kernel.Tests.Fixtures;

namespace Crest.Engine.Tests.Dump;

// Shares a collection with KernelCheckTests: that one asserts the test process has no children left.
[Collection("Children of the test process")]
public sealed class DumpEngineTests(Xunit.Abstractions.ITestOutputHelper output) : IDisposable
{
    private const int SIGUSR1 = 10;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private readonly string _dir = Directory.CreateTempSubdirectory("crest-dump-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void CounterImagesDecodeWithCritAndTheCounterKeepsRunning()
    {
        using var fixture = FixtureProcess.Start("dump_counter");
        var stats = DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = _dir, LeaveRunning = true });

        int pid = fixture.Pid;
        string[] expected = ["inventory.img", "pstree.img", $"core-{pid}.img", $"mm-{pid}.img", $"pagemap-{pid}.img",
            "pages-1.img", $"ids-{pid}.img", $"fs-{pid}.img", "files.img", "fdinfo-1.img", "stats-dump"];
        foreach (string name in expected) Assert.True(File.Exists(Path.Combine(_dir, name)), $"{name} is missing");
        foreach (string file in Directory.GetFiles(_dir))
        {
            if (Path.GetFileName(file).StartsWith("pages-", StringComparison.Ordinal)) continue; // raw page data
            Crit.Decode(file).Dispose();
        }

        using (var core = Crit.Decode(Path.Combine(_dir, $"core-{pid}.img")))
        {
            var entry = core.RootElement.GetProperty("entries")[0];
            Assert.Equal("X86_64", entry.GetProperty("mtype").GetString());
            Assert.Equal(62, entry.GetProperty("tc").GetProperty("sigactions").GetArrayLength());
            Assert.Equal("dump_counter", entry.GetProperty("tc").GetProperty("comm").GetString());
            Assert.True(entry.GetProperty("thread_info").GetProperty("fpregs").TryGetProperty("xsave", out _));
        }
        using (var files = Crit.Decode(Path.Combine(_dir, "files.img")))
        {
            var names = files.RootElement.GetProperty("entries").EnumerateArray()
                .Select(e => e.GetProperty("reg").GetProperty("name").GetString()).ToList();
            Assert.Contains(fixture.Ready["file"], names);
            Assert.Contains("/dev/null", names);
            var data = files.RootElement.GetProperty("entries").EnumerateArray().Single(e => e.GetProperty("reg").GetProperty("name").GetString() == fixture.Ready["file"]);
            var fown = data.GetProperty("reg").GetProperty("fown");
            Assert.Equal((uint)fixture.Pid, fown.GetProperty("pid").GetUInt32());
            Assert.Equal(12U, fown.GetProperty("signum").GetUInt32());
            // Every file names its mount, mapped files and the cwd included.
            Assert.All(files.RootElement.GetProperty("entries").EnumerateArray(), e => Assert.True(e.GetProperty("reg").GetProperty("mnt_id").GetInt32() >= 0));
            // stdout and stderr are one open file (dup2): one entry.
            Assert.Single(names, n => n!.Contains("crest-fixture-dump_counter", StringComparison.Ordinal));
        }
        using (var fdinfo = Crit.Decode(Path.Combine(_dir, "fdinfo-1.img")))
        {
            var byFd = fdinfo.RootElement.GetProperty("entries").EnumerateArray().ToDictionary(e => e.GetProperty("fd").GetInt32(), e => e.GetProperty("id").GetInt32());
            Assert.Equal(byFd[1], byFd[2]);
            Assert.NotEqual(byFd[0], byFd[5]); // two separate opens of /dev/null
            // fd 4: the directory, close-on-exec.
            var dirEntry = fdinfo.RootElement.GetProperty("entries").EnumerateArray().Single(e => e.GetProperty("fd").GetInt32() == 4);
            Assert.Equal(1, dirEntry.GetProperty("flags").GetInt32());
        }
        Assert.True(stats.PagesWritten > (3u << 20) / 4096, $"{stats.PagesWritten} pages written");
        using (var pagemap = Crit.Decode(Path.Combine(_dir, $"pagemap-{pid}.img")))
        {
            // The written pages the fixture then made PROT_NONE are dumped too (read through /proc/PID/mem).
            ulong hidden = fixture.ReadyAddress("hidden");
            Assert.Contains(pagemap.RootElement.GetProperty("entries").EnumerateArray().Skip(1), e =>
            {
                ulong vaddr = Convert.ToUInt64(e.GetProperty("vaddr").ToString(), e.GetProperty("vaddr").ToString().StartsWith("0x") ? 16 : 10);
                return vaddr <= hidden && hidden + 8192 <= vaddr + e.GetProperty("nr_pages").GetUInt64() * 4096;
            });
        }
        AssertStatsMatchPages();

        Assert.Equal("PASS", VerifyAfterAWhile(fixture));
    }

    [Fact]
    public void WithoutLeaveRunningTheTaskIsKilled()
    {
        using var fixture = FixtureProcess.Start("dump_counter");
        DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = _dir });
        var status = fixture.Child.WaitForExit(Timeout);
        Assert.True(status.Signaled && status.TermSignal == 9, status.ToString());
        Assert.True(File.Exists(Path.Combine(_dir, "inventory.img")));
    }

    [Fact]
    public void ADumpedFixtureLeavesCompleteImagesForRestoreTests()
    {
        using var dumped = DumpedFixture.Start("dump_counter");
        Assert.True(File.Exists(Path.Combine(dumped.ImagesDir, "inventory.img")));
        Assert.True(File.Exists(Path.Combine(dumped.ImagesDir, $"core-{dumped.Pid}.img")));
        Assert.False(Directory.Exists($"/proc/{dumped.Pid}"));
        Assert.StartsWith("READY", dumped.Output);
    }

    [Fact]
    public void GuardRegionsAreRecordedInTheVmaAndCritStillDecodesMm()
    {
        // Once refused ("guard pages ... cannot be restored yet"): now the range goes into VmaEntry.crest_guard_ranges.
        using var fixture = FixtureProcess.Start("dump_counter", "guard");
        DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = _dir });
        fixture.Child.WaitForExit(Timeout);
        string mmImage = Path.Combine(_dir, $"mm-{fixture.Pid}.img");
        Crit.Decode(mmImage).Dispose();
        Crest.Images.Protos.MmEntry mm;
        using (var reader = Crest.Images.ImageReader.Open(mmImage, Crest.Images.ImageKinds.Mm))
            mm = reader.ReadEntries(Crest.Images.Protos.MmEntry.Parser).Single();
        var guarded = Assert.Single(mm.Vmas, v => v.CrestGuardRanges.Count > 0);
        // One page, not at either end of its mapping (the VMA may have merged with a neighbour).
        Assert.Equal(2, guarded.CrestGuardRanges.Count);
        ulong start = guarded.CrestGuardRanges[0], end = guarded.CrestGuardRanges[1];
        Assert.Equal(4096UL, end - start);
        Assert.True(start > guarded.Start && end < guarded.End, $"guard 0x{start:x}-0x{end:x} in VMA 0x{guarded.Start:x}-0x{guarded.End:x}");
    }

    [Fact]
    public void ATaskOfAnotherParentIsKilledAndLeftToItsParent()
    {
        // sh is our child, the fixture is sh's: after SIGKILL the tracer hears of the death, then the task is
        // a zombie of sh until sh's wait reaps it; the dump returns once it is a zombie or gone.
        string fixturePath = Path.Combine(AppContext.BaseDirectory, "fixtures", "dump_counter");
        string output = Path.Combine(_dir, "..", $"crest-grandchild-{Guid.NewGuid():N}.out");
        var options = new Crest.Kernel.Processes.SpawnOptions { NewSession = true };
        options.FileActions.Add(new Crest.Kernel.Processes.SpawnFileAction.Open(0, "/dev/null", Crest.Kernel.Processes.SpawnFileAction.O_RDONLY));
        using var shell = Crest.Kernel.Processes.ChildProcess.Spawn("/bin/sh", ["sh", "-c", $"\"{fixturePath}\" > \"{output}\" 2>&1 & wait $!; echo exited $? >> \"{output}\""], options);
        try
        {
            var clock = Stopwatch.StartNew();
            int pid = 0;
            while (pid == 0)
            {
                string text = File.Exists(output) ? File.ReadAllText(output) : "";
                var ready = text.Split('\n').FirstOrDefault(l => l.StartsWith("READY ", StringComparison.Ordinal));
                if (ready is not null) pid = int.Parse(ready.Split(' ')[1]["pid=".Length..]);
                else if (clock.Elapsed > Timeout) Assert.Fail($"no READY from the grandchild: {text}");
                else Thread.Sleep(5);
            }
            DumpEngine.Dump(new DumpOptions { Pid = pid, ImagesDir = _dir });
            char state;
            try { state = State(pid); }
            catch (IOException) { state = 'X'; } // already reaped
            Assert.True(state is 'Z' or 'X', $"task {pid} is in state {state} after the dump");
            var status = shell.WaitForExit(Timeout);
            Assert.True(status.Exited && status.ExitCode == 0, status.ToString());
            Assert.Contains("exited 137", File.ReadAllText(output)); // 128 + SIGKILL, seen by the real parent
        }
        finally
        {
            File.Delete(output);
        }
    }

    [Fact]
    public void LeaveStoppedLeavesTheTaskStopped()
    {
        using var fixture = FixtureProcess.Start("dump_counter");
        DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = _dir, LeaveStopped = true });
        WaitForState(fixture.Pid, 'T');
        fixture.Child.Signal(18 /* SIGCONT */);
        Assert.Equal("PASS", VerifyAfterAWhile(fixture));
    }

    [Theory]
    [InlineData("fifo", "unsupported file kind (/tmp/crest-fifo-")]
    [InlineData("packetpipe", "is in packet mode (O_DIRECT)")]
    [InlineData("eventfd", "unsupported file kind (anon_inode:[eventfd])")]
    [InlineData("mapdeleted", "was deleted")]
    [InlineData("clonefs", "shares its fs with its parent")]
    public void UnsupportedStateFailsClosed(string extra, string message)
    {
        using var fixture = FixtureProcess.Start("dump_counter", extra);
        var e = Assert.Throws<DumpException>(() => DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = _dir }));
        Assert.Contains(message, e.Message);
        Assert.Contains(fixture.Pid.ToString(), e.Message);
        Assert.Empty(Directory.GetFiles(_dir));
        Assert.Equal("PASS", VerifyAfterAWhile(fixture));
    }

    [Fact]
    public void UnsupportedStateInAChildFailsTheWholeTreeClosed()
    {
        using var fixture = FixtureProcess.Start("dump_counter", "childeventfd");
        int child = int.Parse(File.ReadAllText($"/proc/{fixture.Pid}/task/{fixture.Pid}/children").Trim(), System.Globalization.CultureInfo.InvariantCulture);
        var e = Assert.Throws<DumpException>(() => DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = _dir }));
        Assert.Contains("unsupported file kind (anon_inode:[eventfd])", e.Message);
        Assert.Contains($"task {child} fd", e.Message);
        Assert.Empty(Directory.GetFiles(_dir));
        // Both are released as they were: not traced, the child asleep in pause().
        Assert.Matches(@"TracerPid:\s+0\n", File.ReadAllText($"/proc/{child}/status"));
        Assert.Equal("PASS", VerifyAfterAWhile(fixture));
    }

    [Theory]
    [InlineData("pages-1.img")]
    [InlineData("core-{pid}.img")]
    [InlineData("fdinfo-1.img")]
    public void AnImageThatCannotBeWrittenFailsClosed(string blocked)
    {
        using var fixture = FixtureProcess.Start("dump_counter");
        // Root writes anywhere, so block one image name with a directory of that name.
        string blocker = Path.Combine(_dir, blocked.Replace("{pid}", fixture.Pid.ToString()));
        Directory.CreateDirectory(blocker);
        var e = Assert.Throws<DumpException>(() => DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = _dir }));
        Assert.Contains(_dir, e.Message);
        Assert.False(File.Exists(Path.Combine(_dir, "inventory.img")));
        Assert.Equal([blocker], Directory.GetFileSystemEntries(_dir));
        Assert.Equal("PASS", VerifyAfterAWhile(fixture));
    }

    [Theory]
    [InlineData("frozen")]
    [InlineData("injecting")]
    [InlineData("pages")]
    public void AFailureAtAnyStageReleasesTheTaskAsItWas(string stage)
    {
        using var fixture = FixtureProcess.Start("dump_counter");
        DumpEngine.StageHook = s => { if (s == stage) throw new IOException($"test failure at {s}"); };
        try
        {
            var e = Assert.Throws<DumpException>(() => DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = _dir }));
            Assert.Contains($"test failure at {stage}", e.Message);
        }
        finally
        {
            DumpEngine.StageHook = null;
        }
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
        // Not traced any more, and still counting with its state intact.
        Assert.Matches(@"TracerPid:\s+0\n", File.ReadAllText($"/proc/{fixture.Pid}/status"));
        Assert.Equal("PASS", VerifyAfterAWhile(fixture));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("injecting")]
    public void TheTaskGetsItsCpuAffinityBackAfterThePinnedInjection(string? failAt)
    {
        using var fixture = FixtureProcess.Start("dump_counter");
        // The last CPU alone: the tracer must pin itself to a CPU the task may use, then give both their masks back.
        byte[] only = Crest.Kernel.Processes.CpuAffinity.Only(Environment.ProcessorCount - 1);
        Crest.Kernel.Processes.CpuAffinity.Set(fixture.Pid, only);
        DumpEngine.StageHook = s => { if (s == failAt) throw new IOException($"test failure at {s}"); };
        try
        {
            if (failAt is null)
                DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = _dir, LeaveRunning = true });
            else
                Assert.Throws<DumpException>(() => DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = _dir }));
        }
        finally
        {
            DumpEngine.StageHook = null;
        }
        Assert.Equal(only, Crest.Kernel.Processes.CpuAffinity.Get(fixture.Pid));
        Assert.Equal("PASS", VerifyAfterAWhile(fixture));
    }

    [Fact]
    public void AMissingImagesDirectoryIsRefusedBeforeFreezing()
    {
        using var fixture = FixtureProcess.Start("dump_counter");
        var e = Assert.Throws<DumpException>(() => DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = Path.Combine(_dir, "nope") }));
        Assert.Contains("does not exist", e.Message);
        Assert.Equal("PASS", VerifyAfterAWhile(fixture));
    }

    [Fact]
    public void ASparse64GiBMappingDumpsSmallAndFast()
    {
        using var fixture = FixtureProcess.Start("dump_counter", "sparse");
        var clock = Stopwatch.StartNew();
        var stats = DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = _dir, LeaveRunning = true });
        var elapsed = clock.Elapsed;
        long pages = new FileInfo(Path.Combine(_dir, "pages-1.img")).Length;
        output.WriteLine($"64 GiB sparse mapping: dump {elapsed.TotalMilliseconds:0} ms, memory stage {stats.MemdumpTime.TotalMilliseconds:0.#} ms, " +
            $"{stats.PagesScanned} pages scanned, pages-1.img {pages} bytes");
        Assert.True(pages < 64L << 20, $"pages-1.img is {pages} bytes");
        Assert.True(stats.PagesScanned > (64UL << 30) / 4096, $"{stats.PagesScanned} pages scanned");
        // Well under a second on a quiet machine; the bound leaves room for a loaded one (a dump that wrote or read the
        // 64 GiB would take minutes, and the size check above catches a written one anyway).
        Assert.True(elapsed < TimeSpan.FromSeconds(20), $"dump took {elapsed}");
        AssertStatsMatchPages();
        Assert.Equal("PASS", VerifyAfterAWhile(fixture));
    }

    [Fact]
    public void CrestItselfIsRefusedWithTheTaskNamed()
    {
        using var fixture = FixtureProcess.Start("dump_counter");
        // This process: no thread can trace its own thread group, so the dump refuses it before touching anything.
        int self = Environment.ProcessId;
        var e = Assert.Throws<DumpException>(() => DumpEngine.Dump(new DumpOptions { Pid = self, ImagesDir = _dir }));
        Assert.Contains($"Task {self} is Crest itself", e.Message);
        Assert.Equal("PASS", VerifyAfterAWhile(fixture));
    }

    [Fact]
    public void AStoppedTaskIsDumpedAsStoppedAndLeftStopped()
    {
        using var fixture = FixtureProcess.Start("dump_counter");
        fixture.Child.Signal(19 /* SIGSTOP */);
        WaitForState(fixture.Pid, 'T');
        DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = _dir, LeaveRunning = true });
        using (var core = Crit.Decode(Path.Combine(_dir, $"core-{fixture.Pid}.img")))
        {
            // CRIU's TASK_STOPPED is 3 (compel's task-state.h); crit 3.17 prints it as a bare number.
            Assert.Equal("3", core.RootElement.GetProperty("entries")[0].GetProperty("tc").GetProperty("task_state").ToString());
        }
        Thread.Sleep(50);
        Assert.Equal('T', State(fixture.Pid));
        fixture.Child.Signal(18 /* SIGCONT */);
        Assert.Equal("PASS", VerifyAfterAWhile(fixture));
    }

    [Fact]
    public void PendingSignalsAreDumpedAndStayPending()
    {
        using var fixture = FixtureProcess.Start("dump_counter", "pending");
        DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = _dir, LeaveRunning = true });
        using (var core = Crit.Decode(Path.Combine(_dir, $"core-{fixture.Pid}.img")))
        {
            var queue = core.RootElement.GetProperty("entries")[0].GetProperty("thread_core").GetProperty("signals_p").GetProperty("signals");
            Assert.Equal(1, queue.GetArrayLength());
        }
        Assert.Equal("PASS", VerifyAfterAWhile(fixture));
    }

    [Fact]
    public void RlimitsOfATaskWithOtherCredentialsAreAskedOfTheTask()
    {
        using var fixture = FixtureProcess.Start("dump_counter", "setuid");
        DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = _dir, LeaveRunning = true });
        using (var core = Crit.Decode(Path.Combine(_dir, $"core-{fixture.Pid}.img")))
        {
            var entry = core.RootElement.GetProperty("entries")[0];
            var nofile = entry.GetProperty("tc").GetProperty("rlimits").GetProperty("rlimits")[7];
            Assert.Equal(777UL, nofile.GetProperty("cur").GetUInt64());
            Assert.Equal(65534U, entry.GetProperty("thread_core").GetProperty("creds").GetProperty("euid").GetUInt32());
        }
        Assert.Equal("PASS", VerifyAfterAWhile(fixture));
    }

    /// <summary>
    /// Let the counter run on (it must have moved on): two more of its 1 ms sleeps after the dump let it go, however long
    /// the loaded machine takes to run it again; then the fixture checks its state.
    /// </summary>
    private static string VerifyAfterAWhile(FixtureProcess fixture)
    {
        long before = VoluntarySwitches(fixture.Pid);
        var clock = Stopwatch.StartNew();
        while (VoluntarySwitches(fixture.Pid) < before + 2 && clock.Elapsed < Timeout) Thread.Sleep(2);
        return fixture.Verify(SIGUSR1, Timeout);
    }

    private static long VoluntarySwitches(int pid) =>
        long.Parse(File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("voluntary_ctxt_switches:", StringComparison.Ordinal))
            ["voluntary_ctxt_switches:".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public void IntervalTimersAreDumped()
    {
        using var fixture = FixtureProcess.Start("dump_counter", "itimer");
        DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = _dir, LeaveRunning = true });
        using (var core = Crit.Decode(Path.Combine(_dir, $"core-{fixture.Pid}.img")))
        {
            var real = core.RootElement.GetProperty("entries")[0].GetProperty("tc").GetProperty("timers").GetProperty("real");
            Assert.Equal(1000UL, real.GetProperty("isec").GetUInt64());
            Assert.InRange(real.GetProperty("vsec").GetUInt64(), 1990UL, 2000UL);
        }
        Assert.Equal("PASS", VerifyAfterAWhile(fixture));
    }

    private static char State(int pid)
    {
        string stat = File.ReadAllText($"/proc/{pid}/stat");
        return stat[stat.LastIndexOf(')') + 2];
    }

    private static void WaitForState(int pid, char wanted)
    {
        var clock = Stopwatch.StartNew();
        while (State(pid) != wanted)
        {
            if (clock.Elapsed > Timeout) Assert.Fail($"task {pid} is not in state {wanted}");
            Thread.Sleep(2);
        }
    }

    private void AssertStatsMatchPages()
    {
        using var stats = Crit.Decode(Path.Combine(_dir, "stats-dump"));
        var dump = stats.RootElement.GetProperty("entries")[0].GetProperty("dump");
        ulong written = dump.GetProperty("pages_written").GetUInt64();
        ulong shwritten = dump.TryGetProperty("shpages_written", out var sh) ? sh.GetUInt64() : 0;
        long bytes = Directory.GetFiles(_dir, "pages-*.img").Sum(f => new FileInfo(f).Length);
        Assert.Equal((ulong)bytes / 4096, written + shwritten);
        Assert.Equal(0, bytes % 4096);
    }
}
