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
