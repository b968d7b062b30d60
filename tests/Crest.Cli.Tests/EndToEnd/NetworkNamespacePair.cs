// Two hosts on one machine for the end-to-end tests that move images over the network (page-server, --remote,
// migrate): two new network namespaces joined by a veth pair, 10.231.0.1 on the source side, 10.231.0.2 on the
// destination side. The namespaces are fresh and isolated, so every pair may use the same addresses and ports;
// only the names are unique (test runs of other worktrees create theirs at the same time). Teardown ends what still
// runs inside either namespace and deletes both, also when the set-up failed half-way: no test leaves one behind.
using System.Runtime.InteropServices;
using Crest.Cli.Tests.Binary;

namespace Crest.Cli.Tests.EndToEnd;

internal sealed partial class NetworkNamespacePair : IDisposable
{
    private const string SourceLink = "crest0";
    private const string DestinationLink = "crest1";
    private static int s_next;

    private readonly List<string> _created = [];

    public NetworkNamespacePair()
    {
        int n = Interlocked.Increment(ref s_next);
        SourceNamespace = $"crest-src-{Environment.ProcessId}-{n}";
        DestinationNamespace = $"crest-dst-{Environment.ProcessId}-{n}";
        try
        {
            Ip("netns", "add", SourceNamespace);
            _created.Add(SourceNamespace);
            Ip("netns", "add", DestinationNamespace);
            _created.Add(DestinationNamespace);
            Ip("-n", SourceNamespace, "link", "add", SourceLink, "type", "veth", "peer", "name", DestinationLink, "netns", DestinationNamespace);
            Ip("-n", SourceNamespace, "addr", "add", $"{SourceAddress}/24", "dev", SourceLink);
            Ip("-n", DestinationNamespace, "addr", "add", $"{DestinationAddress}/24", "dev", DestinationLink);
            foreach (var (ns, link) in new[] { (SourceNamespace, SourceLink), (DestinationNamespace, DestinationLink) })
            {
                Ip("-n", ns, "link", "set", link, "up");
                Ip("-n", ns, "link", "set", "lo", "up");
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public string SourceNamespace { get; }
    public string DestinationNamespace { get; }
    public string SourceAddress => "10.231.0.1";
    public string DestinationAddress => "10.231.0.2";

    /// <summary>A shell line that runs the rest of its command inside <paramref name="ns"/> (for CrestProcess's redirections).</summary>
    public static string EnterCommand(string ns) => $"exec ip netns exec {ns} \"$0\" \"$@\"";

    /// <summary>crest run to its end inside <paramref name="ns"/>, from <paramref name="workDir"/>.</summary>
    public static CrestRun RunCrest(string ns, string workDir, params string[] args) => CrestProcess.RunWithFds(workDir, EnterCommand(ns), args);

    /// <summary>Any other program run to its end inside <paramref name="ns"/>.</summary>
    public static CrestRun Run(string ns, string file, params string[] args) => External.Run("ip", ["netns", "exec", ns, file, .. args]);

    /// <summary>What the source sends is held to <paramref name="rate"/> (tc's notation, "16mbit"): a slow link (tbf qdisc).</summary>
    public void SlowTheSource(string rate)
    {
        var tc = External.Run("tc", "-n", SourceNamespace, "qdisc", "add", "dev", SourceLink, "root", "tbf", "rate", rate, "burst", "64kb", "latency", "1s");
        if (tc.ExitCode != 0) throw new InvalidOperationException($"tc qdisc add dev {SourceLink} root tbf rate {rate} in {SourceNamespace}: {tc.Stderr.Trim()}");
    }

    /// <summary>The source's end of the veth goes down: packets are dropped, nobody is told (a cable pulled).</summary>
    public void Silence() => Ip("-n", SourceNamespace, "link", "set", SourceLink, "down");

    /// <summary>Ends what still runs in either namespace (SIGTERM, SIGKILL after 2 s), then deletes both.</summary>
    public void Dispose()
    {
        var failures = new List<string>();
        foreach (string ns in _created)
        {
            EndProcessesIn(ns);
            var del = External.Run("ip", "netns", "del", ns);
            if (del.ExitCode != 0 || File.Exists($"/run/netns/{ns}")) failures.Add($"ip netns del {ns}: {del.Stderr.Trim()}");
        }
        _created.Clear();
        if (failures.Count > 0) throw new InvalidOperationException($"network namespaces left behind: {string.Join("; ", failures)}");
    }

    private static void EndProcessesIn(string ns)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(2);
        int signal = 15;
        while (true)
        {
            int[] pids = PidsIn(ns);
            if (pids.Length == 0) return;
            if (DateTime.UtcNow > deadline) signal = 9;
            foreach (int pid in pids) kill(pid, signal);
            if (signal == 9 && DateTime.UtcNow > deadline + TimeSpan.FromSeconds(5))
                throw new InvalidOperationException($"processes {string.Join(' ', pids)} outlive SIGKILL in network namespace {ns}");
            Thread.Sleep(20);
        }
    }

    /// <summary>The live tasks in <paramref name="ns"/> (a zombie has left its namespaces and is not listed).</summary>
    private static int[] PidsIn(string ns)
    {
        var run = External.Run("ip", "netns", "pids", ns);
        if (run.ExitCode != 0) return [];
        return run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray();
    }

    private static void Ip(params string[] args)
    {
        var run = External.Run("ip", args);
        if (run.ExitCode != 0) throw new InvalidOperationException($"ip {string.Join(' ', args)}: {run.Stderr.Trim()}");
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);
}
