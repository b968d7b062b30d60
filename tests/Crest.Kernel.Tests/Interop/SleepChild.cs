// A `sleep` child for tests that need another process which is not traced (process_vm_*, pidfd,
// prlimit64). Spawned with our own posix_spawn, not System.Diagnostics.Process: other tests in this
// assembly set SIGCHLD to SIG_DFL for their tracees, which leaves the runtime's Process unable to
// notice that its children exit.
using System.Diagnostics;
using Crest.Kernel.Processes;

namespace Crest.Kernel.Tests.Interop;

public sealed class SleepChild : IDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);
    private readonly ChildProcess _child;

    static SleepChild() => ChildProcess.ResetSigchldDisposition();

    private SleepChild(ChildProcess child) => _child = child;

    public int Pid => _child.Pid;

    /// <summary>Runs `sh -c SCRIPT` where the script ends in `exec sleep 30` (so the pid is sleep's).</summary>
    public static SleepChild StartShell(string script) =>
        new(ChildProcess.Spawn("/bin/sh", ["sh", "-c", script]));

    public static SleepChild Start() => StartShell("exec sleep 30");

    /// <summary>
    /// Waits (bounded) until the child is /usr/bin/sleep asleep in clock_nanosleep: past the shell's exec and past the
    /// dynamic loader, which still maps libraries after the comm has become "sleep" (a test that reads the maps then
    /// could find them changing under it when the child is slow to run on a loaded machine).
    /// </summary>
    public void WaitForSleep()
    {
        WaitUntil(() =>
        {
            try
            {
                return File.ReadAllText($"/proc/{Pid}/comm").Trim() == "sleep"
                    && File.ReadAllText($"/proc/{Pid}/syscall").StartsWith("230 ", StringComparison.Ordinal); // clock_nanosleep
            }
            catch (IOException) { return false; }
        }, "the child to sleep in clock_nanosleep");
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

    /// <summary>Whether the child ended within the bound.</summary>
    public bool WaitForExit()
    {
        try
        {
            _child.WaitForExit(Bound);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    public void Dispose() => _child.Dispose();
}
