// SIGTERM, SIGINT or SIGHUP while a dump, pre-dump or restore can still be undone. The CLI's signal handler
// records the signal here (and keeps the default action from ending Crest); the engines look at it at their
// safe points: between stages, between page batches, between injected syscalls (never inside one, where a
// task holds Crest's registers and code), and fail through their ordinary failure path, which releases a
// dumped tree as it was and kills what a restore created.
using Crest.Diagnostics;
using Crest.Engine.Dump;
using Crest.Engine.Restore;

namespace Crest.Engine;

public static class Interruption
{
    private static readonly Lock s_lock = new();
    private static bool s_armed;
    private static string? s_signal;

    /// <summary>The signal that asked Crest to stop, or null.</summary>
    public static string? Signal => Volatile.Read(ref s_signal);

    /// <summary>From here on a stop signal is taken as a request to roll back (CLI: before the command runs).</summary>
    public static void Arm()
    {
        lock (s_lock)
        {
            s_armed = true;
            s_signal = null;
        }
    }

    /// <summary>
    /// The point of no return (a restored tree runs, the command is over): later signals take their default action.
    /// </summary>
    public static void Disarm()
    {
        lock (s_lock) s_armed = false;
    }

    /// <summary>
    /// Called by the signal handler. True when the signal is taken here (the caller cancels its default action);
    /// false when nothing can be rolled back any more and the signal should end Crest as usual.
    /// </summary>
    public static bool Request(string signal)
    {
        lock (s_lock)
        {
            if (!s_armed) return false;
            if (s_signal is null)
            {
                Volatile.Write(ref s_signal, signal);
                Log.Warning($"{signal} received: stopping at the next safe point and rolling back");
            }
            else
            {
                // The rollback runs on: stopping it half way would leave the tree frozen or half restored.
                Log.Warning($"{signal} received while rolling back after {s_signal}: ignored, the rollback goes on");
            }
            return true;
        }
    }

    /// <summary>A dump's safe point: throws the dump's failure when a stop signal came.</summary>
    internal static void CheckDump()
    {
        if (Signal is { } signal) throw new DumpException($"Dump interrupted by {signal}; the tree was left running as it was.");
    }

    /// <summary>A restore's safe point: throws the restore's failure when a stop signal came.</summary>
    internal static void CheckRestore()
    {
        if (Signal is { } signal) throw new RestoreException($"restore interrupted by {signal}; the tasks created were killed");
    }
}
