using Crest.Kernel.Features;

namespace Crest.Kernel.Tests.Features;

/// <summary>Tests that spawn children run alone, so that counting our children means something.</summary>
[CollectionDefinition(nameof(ChildProcessTests), DisableParallelization = true)]
public sealed class ChildProcessTests;

// The ptrace probe against this machine's kernel (6.18, root): every request is there.
[Collection(nameof(ChildProcessTests))]
public class PtraceProbeTests
{
    [Fact]
    public void PtraceRequestsWorkOnASeizedChild()
    {
        FeatureProbes.UseDefaultChildSignal();
        var ptrace = FeatureProbes.ProbePtrace();
        Assert.True(ptrace.Seize.Present, ptrace.Seize.ToString());
        Assert.True(ptrace.SyscallInfo.Present, ptrace.SyscallInfo.ToString());
        Assert.True(ptrace.RseqConfiguration.Present, ptrace.RseqConfiguration.ToString());
        Assert.True(ptrace.SuspendSeccomp.Present, ptrace.SuspendSeccomp.ToString());
        Assert.True(ptrace.SeccompGetFilter.Present, ptrace.SeccompGetFilter.ToString());
        // sleep is linked against a glibc that registers rseq; the probe read its area back.
        Assert.Contains("rseq area 0x", ptrace.RseqConfiguration.Detail);
        Assert.Equal("read back the child's 1-instruction filter", ptrace.SeccompGetFilter.Detail);
    }

    [Fact]
    public void PtraceProbeLeavesNoChildBehind()
    {
        FeatureProbes.UseDefaultChildSignal();
        var before = ChildrenOfThisProcess();
        var spawned = new List<int>();
        for (int i = 0; i < 3; i++) spawned.Add(FeatureProbes.ProbePtrace().ChildPid);
        Assert.All(spawned, pid => Assert.True(pid > 0));
        // Each probe child is gone: no /proc entry, or the PID now belongs to someone else's child.
        Assert.All(spawned, pid => Assert.DoesNotContain(pid, ProcessesWithParent(Environment.ProcessId)));
        var after = ChildrenOfThisProcess();
        Assert.Empty(after.Except(before));
        // Not even a zombie: every /proc/PID whose parent is us was there before.
        Assert.Empty(ProcessesWithParent(Environment.ProcessId).Except(before));
    }

    [Fact]
    public void ThePtraceProbeThreadLeavesNoSeccompFilterOnTheProcess()
    {
        FeatureProbes.UseDefaultChildSignal();
        FeatureProbes.ProbePtrace();
        // The filter lives on the spawning thread only; once that thread is gone no task of ours has one.
        // The OS thread may outlive Thread.Join by a moment: wait for it, bounded.
        var deadline = DateTime.UtcNow.AddSeconds(5);
        List<string> filtered;
        while ((filtered = TasksWithSeccomp()).Count > 0 && DateTime.UtcNow < deadline) Thread.Sleep(10);
        Assert.Empty(filtered);
    }

    private static List<string> TasksWithSeccomp()
    {
        var filtered = new List<string>();
        foreach (string task in Directory.GetDirectories("/proc/self/task"))
        {
            string status;
            try { status = File.ReadAllText(Path.Combine(task, "status")); }
            catch (IOException) { continue; } // the thread ended while we looked
            if (!status.Contains("Seccomp:\t0\n", StringComparison.Ordinal)) filtered.Add(task);
        }
        return filtered;
    }

    private static HashSet<int> ChildrenOfThisProcess()
    {
        var children = new HashSet<int>();
        foreach (string task in Directory.GetDirectories("/proc/self/task"))
        {
            string text;
            try { text = File.ReadAllText(Path.Combine(task, "children")); }
            catch (IOException) { continue; } // the thread ended while we looked
            foreach (string pid in text.Split(' ', StringSplitOptions.RemoveEmptyEntries)) children.Add(int.Parse(pid));
        }
        return children;
    }

    private static IEnumerable<int> ProcessesWithParent(int parent)
    {
        foreach (string dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
            string stat;
            try { stat = File.ReadAllText(Path.Combine(dir, "stat")); }
            catch (IOException) { continue; }
            // Field 4 (ppid) follows the ")" that closes comm.
            string[] rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            if (rest.Length > 1 && int.Parse(rest[1]) == parent) yield return pid;
        }
    }
}
