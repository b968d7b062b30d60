// A `sleep` child for tests that need another process which is not traced (process_vm_*, pidfd,
// prlimit64). System.Diagnostics.Process is fine here: nothing ptraces these children.
using System.Diagnostics;

namespace Crest.Kernel.Tests.Interop;

public sealed class SleepChild : IDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);
    private readonly Process _process;

    private SleepChild(Process process) => _process = process;

    public int Pid => _process.Id;

    /// <summary>Runs `sh -c SCRIPT` where the script ends in `exec sleep 30` (so the pid is sleep's).</summary>
    public static SleepChild StartShell(string script)
    {
        var info = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add(script);
        return new SleepChild(Process.Start(info) ?? throw new InvalidOperationException("could not start /bin/sh"));
    }

    public static SleepChild Start() => StartShell("exec sleep 30");

    /// <summary>Waits (bounded) until the child runs /usr/bin/sleep itself, past the shell's exec.</summary>
    public void WaitForSleep()
    {
        WaitUntil(() =>
        {
            try { return File.ReadAllText($"/proc/{Pid}/comm").Trim() == "sleep"; }
            catch (IOException) { return false; }
        }, "the child to exec sleep");
    }

    public static void WaitUntil(Func<bool> condition, string what)
    {
        var watch = Stopwatch.StartNew();
        while (!condition())
        {
            if (watch.Elapsed > Bound) throw new TimeoutException($"gave up waiting for {what} after {Bound}");
            Thread.Sleep(5);
        }
    }

    public bool WaitForExit() => _process.WaitForExit(Bound);

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit(Bound);
        }
        _process.Dispose();
    }
}
