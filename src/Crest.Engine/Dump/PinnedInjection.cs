// Injected syscalls on the dump side run with the tracer thread and the task on one CPU (sched_setaffinity):
// each injection is two PTRACE_SYSCALL round trips, and a wake-up on the same CPU costs a fraction of one
// across CPUs (ENGINE.md §8: 16-21 us against 92-108 us a call). All of it runs on the tracer thread in one
// piece, so no call pays for a hand-over between Crest's threads either. The task gets the mask it had
// (sched_getaffinity before, Linux 2.5.8) back before anything else happens to it, also after a failure.
using Crest.Diagnostics;
using Crest.Kernel.Processes;
using Crest.Kernel.Ptrace;

namespace Crest.Engine.Dump;

internal static class PinnedInjection
{
    /// <summary>Tests only: run unpinned, to compare.</summary>
    internal static bool Enabled { get; set; } = true;

    /// <summary>Run <paramref name="work"/> on the tracer thread of <paramref name="task"/>, both on one CPU the task may use.</summary>
    public static void Run(Tracee task, Action work)
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(work);
        task.Tracer.Run(() =>
        {
            if (!Enabled)
            {
                work();
                return;
            }
            byte[] tracerMask = CpuAffinity.Get(0);
            byte[] taskMask = CpuAffinity.Get(task.Tid);
            int cpu = ChooseCpu(tracerMask, taskMask);
            if (cpu < 0)
            {
                Log.Debug($"{task.Tid}: injection: no CPU the tracer and the task share, not pinned");
                work();
                return;
            }
            byte[] pinned = CpuAffinity.Only(cpu);
            CpuAffinity.Set(0, pinned);
            try
            {
                CpuAffinity.Set(task.Tid, pinned);
                try
                {
                    work();
                }
                finally
                {
                    CpuAffinity.Set(task.Tid, taskMask);
                }
            }
            finally
            {
                CpuAffinity.Set(0, tracerMask);
            }
        });
    }

    // The CPU the tracer runs on now if the task may use it, else the first CPU both may use; -1 if none.
    private static int ChooseCpu(byte[] tracerMask, byte[] taskMask)
    {
        int current = CpuAffinity.CurrentCpu();
        if (IsSet(taskMask, current)) return current;
        for (int cpu = 0; cpu < taskMask.Length * 8; cpu++)
        {
            if (IsSet(taskMask, cpu) && IsSet(tracerMask, cpu)) return cpu;
        }
        return -1;
    }

    private static bool IsSet(byte[] mask, int cpu) => cpu / 8 < mask.Length && (mask[cpu / 8] & (1 << (cpu % 8))) != 0;
}
