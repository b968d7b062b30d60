// dump --lazy-pages with a tree that is killed afterwards: the frozen task vmsplices (vmsplice(2), Linux 2.6.17) its
// lazy page runs into pipes that Crest holds (LazyPageStore.cs), so that no page is copied while the tree is frozen and
// the pages outlive the task. Each pipe is made in Crest at pipe-max-size (/proc/sys/fs/pipe-max-size, 1 MiB by
// default: a bigger pipe needs CAP_SYS_RESOURCE), non-blocking; the task takes its write end with injected
// pidfd_getfd (one pidfd_open of Crest for the whole task, as for the task's own writes, PageDumper.TaskWrites.cs),
// fills it with one vmsplice of up to IOV_MAX runs, and closes it. Three injected syscalls per MiB of memory.
// Runs the task cannot splice (no PROT_READ), runs past MaxPipes pipes, and whatever follows a failed call are left
// to the copy (LazySink).
using System.Buffers.Binary;
using System.Diagnostics;
using Crest.Diagnostics;
using Crest.Engine.Dump;
using Crest.Kernel;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Files;
using Crest.Kernel.Injection;

namespace Crest.Engine.Memory;

/// <summary>A page sink that keeps the pages of some VMAs for the lazy-pages daemon (Dump/PageTargets.cs).</summary>
internal interface ILazyPageKeeper
{
    LazyPageStore Store { get; }

    /// <summary>The tree is killed after the dump: its pages may be spliced (they change no more).</summary>
    bool MaySplice { get; }

    /// <summary>The page at <paramref name="vaddr"/> is to be lazy.</summary>
    bool IsLazy(ulong vaddr);

    /// <summary>Page ranges (sorted, disjoint) inside lazy VMAs that are written into the images all the same: runs are
    /// split at their bounds so that no entry is partly lazy.</summary>
    IReadOnlyList<(ulong Start, ulong End)> Eager { get; }
}

internal static partial class PageDumper
{
    /// <summary>Most pipes held for spliced pages (each an fd of Crest: 1 MiB of memory each by default).</summary>
    internal const int MaxPipes = 8192;

    private static int PipeBytes()
    {
        try
        {
            return int.Parse(File.ReadAllText("/proc/sys/fs/pipe-max-size").Trim(), System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or FormatException or UnauthorizedAccessException)
        {
            return 1 << 20;
        }
    }

    /// <summary>The lazy runs the task spliced into pipes are marked Lazy (no data to write); the rest are as they were.</summary>
    private static List<Run> SpliceLazyRuns(int pid, List<Run> runs, ILazyPageKeeper keeper, TaskWriteAccess access)
    {
        var candidates = runs.Where(r => !r.InParent && r.Readable && keeper.IsLazy(r.Start)).ToList();
        if (candidates.Count == 0) return runs;
        var covered = new Dictionary<ulong, ulong>(); // run start -> bytes spliced from its start
        var clock = Stopwatch.StartNew();
        long calls = 0, pipesBefore = keeper.Store.PipeCount, splicedBefore = keeper.Store.SplicedPages;
        string? stopped = null;
        PinnedInjection.Run(access.Tracee, () =>
        {
            using var remote = SyscallInjector.Open(access.Tracee);
            int tid = remote.Tracee.Tid;
            string? taskNs = new FileInfo($"/proc/{tid}/ns/pid").LinkTarget, crestNs = new FileInfo("/proc/self/ns/pid").LinkTarget;
            if (taskNs is null || taskNs != crestNs)
            {
                stopped = "the task is in another pid namespace";
                return;
            }
            long pidfd = remote.Syscall(SyscallNumbers.pidfd_open, Environment.ProcessId, 0);
            if (pidfd < 0)
            {
                stopped = $"pidfd_open in the task: {Errno.FromRawReturn(pidfd).Name}";
                return;
            }
            try
            {
                ulong iov = remote.AllocScratch(IovMax * 16, separate: true);
                access.Scratch.Add((iov, iov + IovMax * 16));
                var vector = new byte[IovMax * 16];
                int pipeBytes = PipeBytes();
                int ci = 0;
                ulong at = candidates[0].Start;
                while (ci < candidates.Count && stopped is null)
                {
                    if (keeper.Store.PipeCount >= MaxPipes)
                    {
                        stopped = $"{MaxPipes} pipes are held";
                        break;
                    }
                    var (read, write) = FileDescriptor.CreatePipe(OpenFlags.NonBlock);
                    bool kept = false;
                    try
                    {
                        int capacity;
                        try
                        {
                            capacity = write.Fcntl(Crest.Kernel.Interop.Libc.F_SETPIPE_SZ, pipeBytes);
                        }
                        catch (KernelException)
                        {
                            capacity = write.Fcntl(Crest.Kernel.Interop.Libc.F_GETPIPE_SZ);
                        }
                        long taskFd;
                        using (var w = write.Use()) taskFd = remote.Syscall(SyscallNumbers.pidfd_getfd, pidfd, w.Fd, 0);
                        if (taskFd < 0)
                        {
                            stopped = $"pidfd_getfd in the task: {Errno.FromRawReturn(taskFd).Name}";
                            break;
                        }
                        var pieces = new List<(ulong Vaddr, int Length)>();
                        try
                        {
                            long filled = 0;
                            while (filled < capacity && ci < candidates.Count)
                            {
                                // The next runs, up to what the pipe still takes.
                                int n = 0, cj = ci;
                                long length = 0;
                                ulong a = at;
                                while (cj < candidates.Count && n < IovMax && filled + length < capacity)
                                {
                                    ulong take = Math.Min(candidates[cj].End - a, (ulong)(capacity - filled - length));
                                    BinaryPrimitives.WriteUInt64LittleEndian(vector.AsSpan(n * 16), a);
                                    BinaryPrimitives.WriteUInt64LittleEndian(vector.AsSpan(n * 16 + 8), take);
                                    n++;
                                    length += (long)take;
                                    a += take;
                                    if (a == candidates[cj].End && ++cj < candidates.Count) a = candidates[cj].Start;
                                }
                                remote.WriteScratch(iov, vector.AsSpan(0, n * 16));
                                long rc = remote.Syscall(SyscallNumbers.vmsplice, taskFd, (long)iov, n, 0);
                                calls++;
                                if (rc == -Errno.EAGAIN && filled > 0) break; // full
                                if (rc <= 0 || rc % PageSize != 0)
                                {
                                    stopped = $"vmsplice in the task gave {(rc <= 0 ? Errno.FromRawReturn(rc).Name : $"{rc} bytes")}";
                                    break;
                                }
                                for (long left = rc; left > 0;)
                                {
                                    var c = candidates[ci];
                                    ulong take = Math.Min(c.End - at, (ulong)left);
                                    pieces.Add((at, (int)take));
                                    covered[c.Start] = covered.GetValueOrDefault(c.Start) + take;
                                    filled += (long)take;
                                    left -= (long)take;
                                    at += take;
                                    if (at == c.End && ++ci < candidates.Count) at = candidates[ci].Start;
                                }
                            }
                        }
                        finally
                        {
                            long rc = remote.Syscall(SyscallNumbers.close, taskFd);
                            if (rc != 0) Log.Warning($"{pid}: pages: close of fd {taskFd} in the task gave {Errno.FromRawReturn(rc).Name}");
                        }
                        if (pieces.Count > 0)
                        {
                            keeper.Store.AddPipe((ulong)pid, read, pieces);
                            kept = true;
                        }
                    }
                    finally
                    {
                        write.Dispose();
                        if (!kept) read.Dispose();
                    }
                }
            }
            finally
            {
                long rc = remote.Syscall(SyscallNumbers.close, pidfd);
                if (rc != 0) Log.Warning($"{pid}: pages: close of pidfd {pidfd} in the task gave {Errno.FromRawReturn(rc).Name}");
            }
        });
        long spliced = keeper.Store.SplicedPages - splicedBefore;
        Log.Info($"{pid}: pages: {spliced} lazy pages spliced by the task into {keeper.Store.PipeCount - pipesBefore} pipes with {calls} vmsplice calls " +
            $"in {clock.Elapsed.TotalMilliseconds:0.#} ms{(stopped is null ? "" : $"; the rest is copied: {stopped}")}");

        var result = new List<Run>(runs.Count + 1);
        foreach (var r in runs)
        {
            if (r.InParent || !covered.TryGetValue(r.Start, out ulong bytes))
            {
                result.Add(r);
                continue;
            }
            result.Add(r with { End = r.Start + bytes, Lazy = true });
            if (r.Start + bytes < r.End) result.Add(r with { Start = r.Start + bytes });
        }
        return result;
    }
}
