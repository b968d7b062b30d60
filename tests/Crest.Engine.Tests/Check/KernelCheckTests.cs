using Crest.Engine.Check;

namespace Crest.Engine.Tests.Check;

// `crest check` against this machine (kernel 6.18, root): every feature the engine relies on is
// present except soft-dirty, whose job uffd-wp async + PAGEMAP_SCAN does instead.
[Collection("Children of the test process")]
public class KernelCheckTests
{
    private static (int Exit, string Output) Check(bool all, params string[] features)
    {
        var output = new StringWriter();
        int exit = KernelCheck.Run(all, features, output);
        return (exit, output.ToString());
    }

    [Fact]
    public void DefaultReportListsTheRequiredFeaturesAndLooksGood()
    {
        var (exit, output) = Check(all: false);
        Assert.Equal(0, exit);
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        string[] required = ["ptrace_seize", "ptrace_syscall_info", "get_rseq_conf", "pidfd_getfd", "mnt_id", "process_vm",
            "map_files", "clone3_set_tid", "prctl_mm_map", "vdso_layout"];
        foreach (string name in required)
            Assert.Single(lines, l => l.StartsWith(name + " ", StringComparison.Ordinal) && l.Contains(" ok"));
        Assert.Contains("clone3_set_tid       ok: set_tid honoured (EEXIST for our own PID", output);
        Assert.Contains("vdso_layout          ok: [vvar] 4 pages, [vvar_vclock] 2 pages, [vdso] 2 pages, adjacent\n", output);
        // The dirty-tracking line is always there and names the mechanism.
        Assert.Contains("mem_dirty_track      ok: via uffd-wp async + PAGEMAP_SCAN (soft-dirty is missing)\n", output);
        Assert.DoesNotContain("tcp_repair", output);
        Assert.Equal("Looks good.", lines[^1]);
        Assert.Equal(required.Length + 2, lines.Length);
    }

    [Fact]
    public void AllReportShowsSoftDirtyMissingButCoveredAndStillLooksGood()
    {
        var (exit, output) = Check(all: true);
        Assert.Equal(0, exit);
        Assert.Contains("soft_dirty           missing: dirty tracking needs uffd-wp async + PAGEMAP_SCAN instead "
            + "(pagemap bit 55 stayed clear after a write (kernel without CONFIG_MEM_SOFT_DIRTY))\n", output);
        foreach (string name in new[] { "pagemap_scan", "uffd_wp_async", "uffd", "uffd-noncoop", "seccomp_suspend",
                     "seccomp_filters", "timer_cr_ids", "tcp_repair", "tcp_half_closed", "timerfd", "kcmp_epoll", "userns" })
            Assert.Contains($"\n{name.PadRight(20)} ok", output);
        Assert.Contains("uffd_wp_async        ok: write-protected 4 pages, wrote 1, the scan reported exactly that page\n", output);
        Assert.EndsWith("\nLooks good.\n", output);
    }

    [Theory]
    // The names a CRIU test harness asks about (DRIVERS.md), and CRIU names crest answers for.
    [InlineData("mem_dirty_track")]
    [InlineData("userns")]
    [InlineData("timerfd")]
    [InlineData("kcmp_epoll")]
    [InlineData("uffd")]
    [InlineData("uffd-noncoop")]
    [InlineData("get_rseq_conf")]
    [InlineData("tcp_half_closed")]
    [InlineData("clone3_set_tid")]
    [InlineData("pidfd_store")]
    [InlineData("mnt_id")]
    [InlineData("seccomp_suspend")]
    [InlineData("seccomp_filters")]
    [InlineData("pagemap_scan")]
    [InlineData("pagemap_scan_guard_pages")]
    [InlineData("timer_cr_ids")]
    // crest's own names work too.
    [InlineData("ptrace_seize")]
    [InlineData("vdso_layout")]
    public void PresentFeatureIsSupportedWithExitZero(string name)
    {
        var (exit, output) = Check(false, name);
        Assert.Equal(0, exit);
        Assert.Equal($"{name} is supported\n", output);
    }

    [Fact]
    public void MissingFeatureExitsOneAndPrintsNothing()
    {
        // soft-dirty is missing here; mem_dirty_track, its CRIU-facing name, is present through uffd-wp.
        var (exit, output) = Check(false, "soft_dirty");
        Assert.Equal(1, exit);
        Assert.Equal("", output);
    }

    [Theory]
    [InlineData("no_such_feature")]
    [InlineData("tun")] // CRIU knows it, crest does not probe it
    [InlineData("external_net_ns")]
    public void UnknownFeatureExitsOne(string name)
    {
        var (exit, output) = Check(false, name);
        Assert.Equal(1, exit);
        Assert.Equal("", output);
    }

    [Fact]
    public void AnUnknownNameAmongKnownOnesFailsBeforeAnythingIsProbed()
    {
        var (exit, output) = Check(false, "mem_dirty_track", "no_such_feature");
        Assert.Equal(1, exit);
        Assert.Equal("", output);
    }

    [Fact]
    public void SeveralFeaturesAreEachAnswered()
    {
        var (exit, output) = Check(false, "uffd", "mem_dirty_track");
        Assert.Equal(0, exit);
        Assert.Equal("uffd is supported\nmem_dirty_track is supported\n", output);
        Assert.Equal(1, Check(false, "uffd", "soft_dirty").Exit);
    }

    [Fact]
    public void CheckLeavesNoChildProcessBehind()
    {
        var before = ProcessesWithParent(Environment.ProcessId);
        Assert.Equal(0, Check(all: true).Exit);
        Assert.Empty(ProcessesWithParent(Environment.ProcessId).Except(before));
    }

    private static HashSet<int> ProcessesWithParent(int parent)
    {
        var children = new HashSet<int>();
        foreach (string dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
            string stat;
            try { stat = File.ReadAllText(Path.Combine(dir, "stat")); }
            catch (IOException) { continue; } // the process ended while we looked
            // Field 4 (ppid) follows the ")" that closes comm.
            string[] rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            if (rest.Length > 1 && int.Parse(rest[1]) == parent) children.Add(pid);
        }
        return children;
    }
}
