// Runs a C fixture from $(OutDir)fixtures/NAME as our own child: posix_spawn in its own session, stdout
// and stderr into a file the test reads. Never System.Diagnostics.Process: its SIGCHLD handling would
// reap the tracee and steal ptrace stops (ENGINE.md §8). Every wait here is bounded.
using System.Diagnostics;
using Crest.Kernel.Processes;

namespace Crest.Kernel.Tests.Fixtures;

public sealed class FixtureProcess : IDisposable
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(20);

    private readonly ChildProcess _child;
    private readonly string _outputPath;

    static FixtureProcess() => ChildProcess.ResetSigchldDisposition();

    private FixtureProcess(string name, ChildProcess child, string outputPath)
    {
        Name = name;
        _child = child;
        _outputPath = outputPath;
    }

    public string Name { get; }

    public int Pid => _child.Pid;

    public ChildProcess Child => _child;

    /// <summary>The fields of the READY line: "READY pid=1 handler=0x..." gives Ready["handler"].</summary>
    public IReadOnlyDictionary<string, string> Ready { get; private set; } = new Dictionary<string, string>();

    /// <summary>Start fixture <paramref name="name"/> (or the fixture binary at an absolute path) and wait for its READY line.</summary>
    public static FixtureProcess Start(string name, params string[] args)
    {
        string path = Path.Combine(AppContext.BaseDirectory, "fixtures", name);
        if (!File.Exists(path)) throw new FileNotFoundException($"fixture {name} was not built", path);
        string output = Path.Combine(Path.GetTempPath(), $"crest-fixture-{Path.GetFileName(name)}-{Guid.NewGuid():N}.out");
        var options = new SpawnOptions { NewSession = true };
        options.FileActions.Add(new SpawnFileAction.Open(0, "/dev/null", SpawnFileAction.O_RDONLY));
        options.FileActions.Add(new SpawnFileAction.Open(1, output, SpawnFileAction.O_WRONLY | SpawnFileAction.O_CREAT | SpawnFileAction.O_TRUNC));
        options.FileActions.Add(new SpawnFileAction.Dup2(1, 2));
        var child = ChildProcess.Spawn(path, [path, .. args], options);
        var fixture = new FixtureProcess(name, child, output);
        try
        {
            string ready = fixture.WaitForLine("READY", DefaultTimeout);
            fixture.Ready = ready.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1)
                .Select(field => field.Split('=', 2)).ToDictionary(kv => kv[0], kv => kv.Length > 1 ? kv[1] : "");
        }
        catch
        {
            fixture.Dispose();
            throw;
        }
        return fixture;
    }

    public string Output => File.Exists(_outputPath) ? File.ReadAllText(_outputPath) : "";

    public ulong ReadyAddress(string key) => Convert.ToUInt64(Ready[key], 16);

    /// <summary>Wait for a line starting with <paramref name="prefix"/>; fails with the output so far on timeout or exit.</summary>
    public string WaitForLine(string prefix, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            string output = Output;
            foreach (var line in output.Split('\n'))
                if (line.StartsWith(prefix, StringComparison.Ordinal) && output.Contains(line + "\n")) return line;
            if (_child.TryReap(out var status))
                throw new InvalidOperationException($"fixture {Name} ended ({status}) before '{prefix}':\n{Output}");
            if (clock.Elapsed > timeout)
                throw new TimeoutException($"fixture {Name} printed no '{prefix}' within {timeout.TotalSeconds} s:\n{output}");
            Thread.Sleep(5);
        }
    }

    /// <summary>Send <paramref name="signal"/> and wait for the fixture's verdict and exit; returns the verdict line.</summary>
    public string Verify(int signal, TimeSpan timeout)
    {
        _child.Signal(signal);
        return WaitForVerdict(timeout);
    }

    /// <summary>Wait for exit and return the PASS/FAIL line (or the whole output if none).</summary>
    public string WaitForVerdict(TimeSpan timeout)
    {
        var status = _child.WaitForExit(timeout);
        string output = Output;
        string? verdict = output.Split('\n').FirstOrDefault(l => l.StartsWith("PASS") || l.StartsWith("FAIL"));
        return verdict is not null && status.Exited ? verdict : $"{status}: {output}";
    }

    /// <summary>Whether /proc/PID/syscall shows the main thread blocked in syscall <paramref name="nr"/>.</summary>
    public bool IsInSyscall(long nr)
    {
        string text = File.ReadAllText($"/proc/{Pid}/syscall");
        return text.StartsWith($"{nr} ", StringComparison.Ordinal);
    }

    /// <summary>Wait until the main thread sleeps in syscall <paramref name="nr"/>.</summary>
    public void WaitUntilInSyscall(long nr, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (!IsInSyscall(nr))
        {
            if (clock.Elapsed > timeout)
                throw new TimeoutException($"fixture {Name} is not in syscall {nr}: {File.ReadAllText($"/proc/{Pid}/syscall")}");
            Thread.Sleep(2);
        }
    }

    public void Dispose()
    {
        _child.Dispose();
        File.Delete(_outputPath);
    }
}
