// fixtures/harness_target started as DRIVERS.md's harness starts its test programs: a daemon whose
// parent has exited (so after a dump it is PID 1's zombie for a moment, as in real runs), found
// by the pid it prints. Spawned with posix_spawn (ChildProcess); crest itself is what traces it.
using System.Diagnostics;
using System.Runtime.InteropServices;
using Crest.Kernel.Processes;

namespace Crest.Cli.Tests.EndToEnd;

internal sealed partial class HarnessTarget : IDisposable
{
    public const int SIGKILL = 9, SIGTERM = 15, SIGCONT = 18;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private readonly string _output;

    private HarnessTarget(int pid, string output)
    {
        Pid = pid;
        _output = output;
    }

    public int Pid { get; }

    public string Output => File.Exists(_output) ? File.ReadAllText(_output) : "";

    /// <summary>Starts the fixture; it exits PASS with <paramref name="passCode"/>. <paramref name="extra"/>: "eventfd".</summary>
    public static HarnessTarget Start(string directory, int passCode = 0, string? extra = null)
    {
        string path = Path.Combine(AppContext.BaseDirectory, "fixtures", "harness_target");
        if (!File.Exists(path)) throw new FileNotFoundException("fixture harness_target was not built", path);
        string output = Path.Combine(directory, "target.out");
        List<string> argv = [path, output, passCode.ToString()];
        if (extra is not null) argv.Add(extra);
        using (var launcher = ChildProcess.Spawn(path, argv))
        {
            var status = launcher.WaitForExit(Timeout);
            if (!status.Exited || status.ExitCode != 0)
                throw new InvalidOperationException($"harness_target launcher {status}: {File.ReadAllText(output)}");
        }
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < Timeout)
        {
            string text = File.Exists(output) ? File.ReadAllText(output) : "";
            int at = text.IndexOf("READY pid=", StringComparison.Ordinal);
            int end = at < 0 ? -1 : text.IndexOf('\n', at);
            if (end > 0) return new HarnessTarget(int.Parse(text.AsSpan(at + 10, end - at - 10)), output);
            Thread.Sleep(5);
        }
        throw new TimeoutException($"harness_target printed no READY line: {File.ReadAllText(output)}");
    }

    /// <summary>kill(pid, 0) succeeds: the pid exists (a zombie too, as the harness sees it).</summary>
    public bool Exists => kill(Pid, 0) == 0;

    /// <summary>Running and not a zombie.</summary>
    public bool IsRunning => State is { } s && s != 'Z' && s != 'X';

    /// <summary>Running, no longer traced (a restore has let it go), with the fixture's name.</summary>
    public bool IsReleased =>
        IsRunning && File.ReadAllText($"/proc/{Pid}/comm").Trim() == "harness_target"
        && File.ReadAllLines($"/proc/{Pid}/status").Contains("TracerPid:\t0");

    /// <summary>In a group stop (state T), as --leave-stopped leaves it.</summary>
    public bool IsStopped => State == 'T';

    /// <summary>SIGCONT.</summary>
    public void Continue()
    {
        if (kill(Pid, SIGCONT) != 0) throw new InvalidOperationException($"kill({Pid}, SIGCONT): errno {Marshal.GetLastPInvokeError()}");
    }

    private char? State
    {
        get
        {
            try
            {
                string stat = File.ReadAllText($"/proc/{Pid}/stat");
                return stat[stat.LastIndexOf(')') + 2];
            }
            catch (IOException)
            {
                return null;
            }
        }
    }

    /// <summary>Polls as the harness does until kill(pid, 0) fails; false if it still exists after the timeout.</summary>
    public bool WaitGone() => WaitUntil(() => !Exists);

    public bool WaitUntil(Func<bool> condition)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < Timeout)
        {
            if (condition()) return true;
            Thread.Sleep(10);
        }
        return condition();
    }

    /// <summary>SIGTERM: the fixture checks its state; returns its verdict line once it has ended.</summary>
    public string Verify()
    {
        if (kill(Pid, SIGTERM) != 0) return $"kill({Pid}, SIGTERM) failed: errno {Marshal.GetLastPInvokeError()}; output: {Output}";
        if (!WaitUntil(() => !IsRunning)) return $"process {Pid} did not end after SIGTERM; output: {Output}";
        return Output.Split('\n').FirstOrDefault(l => l.StartsWith("PASS") || l.StartsWith("FAIL")) ?? $"no verdict: {Output}";
    }

    public void Dispose()
    {
        if (IsRunning) kill(Pid, SIGKILL);
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);
}
