// The one thread that owns every ptrace(2) and waitpid(2) on tracees (ENGINE.md §1.2, §8). The kernel binds
// a tracee to the tracer *thread*: requests from any other thread fail with ESRCH, children attached by
// PTRACE_O_TRACECLONE/TRACEFORK belong to the same thread, and when the thread exits the kernel detaches
// every tracee it holds (exit_ptrace). So the thread is long-lived, never a pool thread, and its lifetime is
// the Tracer's: Dispose ends it and returns once the OS thread is gone, i.e. every tracee is detached.
using System.Diagnostics;
using System.Runtime.ExceptionServices;
using Crest.Diagnostics;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Interop;

namespace Crest.Kernel.Ptrace;

/// <summary>A dedicated OS thread that runs all ptrace work; other threads submit work and wait for it.</summary>
public sealed class Tracer : IDisposable
{
    private readonly Thread _thread;
    private readonly Queue<WorkItem> _queue = new();
    private readonly object _gate = new();
    private bool _stopping;
    private int _pending;

    public Tracer(string name = "crest tracer")
    {
        _thread = new Thread(Loop) { Name = name, IsBackground = true };
        _thread.Start();
        ThreadId = Run(() => (int)Libc.syscall(SyscallNumbers.gettid));
    }

    /// <summary>The kernel's id of the tracer thread: what /proc/PID/status shows as a tracee's TracerPid.</summary>
    public int ThreadId { get; }

    /// <summary>Whether the calling thread is the tracer thread (work then runs inline).</summary>
    public bool IsCurrentThread => Thread.CurrentThread == _thread;

    /// <summary>
    /// Run <paramref name="work"/> on the tracer thread and return its result; its exception is rethrown here
    /// with its original stack. Called from the tracer thread itself, the work runs inline.
    /// </summary>
    public T Run<T>(Func<T> work)
    {
        if (IsCurrentThread) return work();
        var item = new WorkItem<T>(work);
        Submit(item);
        item.Done.Wait();
        item.Done.Dispose();
        item.Failure?.Throw();
        return item.Result!;
    }

    /// <summary>Run <paramref name="work"/> on the tracer thread.</summary>
    public void Run(Action work) => Run(() => { work(); return true; });

    /// <summary>Seize <paramref name="tid"/> from the tracer thread (PTRACE_SEIZE with <paramref name="options"/>).</summary>
    public Tracee Seize(int tid, PtraceOptions options = Tracee.DefaultOptions) => Tracee.Seize(this, tid, options);

    /// <summary>
    /// A Tracee for a task the kernel attached to this thread by itself (PTRACE_O_TRACEFORK / TRACECLONE /
    /// TRACEVFORK children inherit the parent's options); no PTRACE_SEIZE is issued.
    /// </summary>
    public Tracee Adopt(int tid, PtraceOptions options) => Tracee.Adopt(this, tid, options);

    /// <summary>
    /// waitpid(-1, __WALL) on the tracer thread: the next stop or exit of any tracee or child, at most
    /// <paramref name="timeout"/>. Used to drive a whole tree (auto-attached children report here first).
    /// Exits are returned too (Status.Terminated) and remembered for the child's owner.
    /// </summary>
    public TraceeStop WaitForAnyStop(TimeSpan timeout) => Run(() => Tracee.WaitAny(timeout));

    /// <summary>
    /// Finish the queued work and end the thread. The kernel detaches every tracee the thread still holds, so
    /// undo injections and detach deliberately before this.
    /// </summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_stopping) return;
            _stopping = true;
            Monitor.PulseAll(_gate);
        }
        if (IsCurrentThread) return;
        _thread.Join();
        // Join returns when the managed code is done; the OS thread (and with it the kernel's detach of its
        // tracees) ends a little later. Wait for the task to be gone so that Dispose means "detached".
        // The exit takes tens of microseconds: yield first, sleep in milliseconds only if it drags on.
        var clock = Stopwatch.StartNew();
        for (int round = 0; Directory.Exists($"/proc/self/task/{ThreadId}"); round++)
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(10))
            {
                Log.Warning($"tracer thread {ThreadId} is still there 10 s after it finished");
                return;
            }
            if (round < 200) Thread.Yield();
            else Thread.Sleep(1);
        }
    }

    private void Submit(WorkItem item)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_stopping, this);
            _queue.Enqueue(item);
            _pending = _queue.Count;
            Monitor.Pulse(_gate);
        }
    }

    private void Loop()
    {
        while (true)
        {
            // Callers often submit the next request right after the last one returned: spin briefly before
            // sleeping, so that a request does not pay for waking this thread up.
            var spin = new SpinWait();
            while (Volatile.Read(ref _pending) == 0 && !spin.NextSpinWillYield) spin.SpinOnce();
            WorkItem item;
            lock (_gate)
            {
                while (_queue.Count == 0 && !_stopping) Monitor.Wait(_gate);
                if (_queue.Count == 0) return;
                item = _queue.Dequeue();
                _pending = _queue.Count;
            }
            item.Execute();
        }
    }

    private abstract class WorkItem
    {
        public readonly ManualResetEventSlim Done = new(false, spinCount: 200);
        public ExceptionDispatchInfo? Failure;

        public abstract void Execute();
    }

    private sealed class WorkItem<T>(Func<T> work) : WorkItem
    {
        public T? Result;

        public override void Execute()
        {
            try
            {
                Result = work();
            }
            catch (Exception e)
            {
                Failure = ExceptionDispatchInfo.Capture(e);
            }
            finally
            {
                Done.Set();
            }
        }
    }
}
