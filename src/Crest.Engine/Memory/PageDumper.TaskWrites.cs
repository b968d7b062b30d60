// The task writes its own pages into pages-N.img: one copy per page (the kernel's copy_from_user into the
// page cache, in the task's context) instead of two (process_vm_readv into Crest's buffer, then write(2)).
// The frozen task gets a duplicate of Crest's descriptor of pages-N.img with injected pidfd_open(Crest) +
// pidfd_getfd (Linux 5.6; the task needs ptrace access to Crest, so a task with other credentials is refused
// and the buffered way is used), and then writes its present page runs with injected pwritev(2) at the offsets
// the pagemap entries reserved for them, IOV_MAX runs a call. Runs it cannot write (no PROT_READ; a call that
// fails or writes nothing) Crest writes itself. The descriptor is closed in the task before it is released.
//
// Kept out of this way, for the buffered one:
//  - a task whose RLIMIT_FSIZE is below the file's size (pwritev past it would queue SIGXFSZ in the task);
//  - a task in a memory cgroup with a limit (memory.max or memory.high) that Crest is not under as well: the
//    page cache it writes is charged to its cgroup, and a dump must not push a task into reclaim or OOM.
using System.Buffers.Binary;
using System.Diagnostics;
using Crest.Diagnostics;
using Crest.Engine.Dump;
using Crest.Images.Pages;
using Crest.Kernel;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Files;
using Crest.Kernel.Injection;
using Crest.Kernel.Memory;
using Crest.Kernel.Processes;
using Crest.Kernel.Ptrace;

namespace Crest.Engine.Memory;

/// <summary>What lets a frozen task write its own pages: its tracee and its RLIMIT_FSIZE.</summary>
internal sealed record TaskWriteAccess(Tracee Tracee, ulong FileSizeLimit)
{
    /// <summary>
    /// The scratch VMAs mapped in the task for the writes (shared anonymous, so they never merge with the task's
    /// own): a reader of /proc/PID/smaps during the page dump may see them, and leaves them out.
    /// </summary>
    public List<(ulong Start, ulong End)> Scratch { get; } = [];
}

internal static partial class PageDumper
{
    /// <summary>Let the task write its own pages when it may (tests compare with the buffered way).</summary>
    internal static bool TaskWrites { get; set; } = true;

    /// <summary>Bytes of pages tasks wrote themselves since Crest started (tests check which way was taken).</summary>
    internal static long BytesWrittenByTasks => Interlocked.Read(ref s_bytesWrittenByTasks);

    private static long s_bytesWrittenByTasks;

    private const int IovMax = 1024;

    /// <summary>
    /// Bytes per injected pwritev (below MAX_RW_COUNT, INT_MAX rounded down to a page). 64 MiB: a stop signal is
    /// looked at between two calls, so one call bounds how late a dump stops (tens of ms), and 16 calls per GiB
    /// cost nothing next to the writes.
    /// </summary>
    private const long MaxBytesPerCall = 64L << 20;

    /// <summary>A piece of a run at its place in pages-N.img, at most <see cref="MaxBytesPerCall"/> long.</summary>
    private readonly record struct Segment(ulong Address, long Length, long Offset, bool Readable);

    /// <summary>Why the task should not write its pages itself, or null when it may.</summary>
    private static string? TaskWriteRefusal(int pid, TaskWriteAccess access, long bytes)
    {
        if ((ulong)bytes > access.FileSizeLimit)
            return $"RLIMIT_FSIZE {access.FileSizeLimit} is below the {bytes} bytes of pages";
        return MemoryCgroup.LimitNotShared(pid);
    }

    /// <summary>
    /// Entries reserved first (as for the mapped file), then the task pwritevs its runs at their offsets.
    /// Returns null, with nothing written, when the task cannot get the file.
    /// </summary>
    private static PageDumpResult? DumpByTask(int pid, List<Run> all, PageImageWriter writer, TaskWriteAccess access, ulong scanned, ulong total,
        TimeSpan scanTime, Stopwatch clock, TimeSpan cpu, Action? writing)
    {
        long bytes = 0;
        foreach (var r in all)
        {
            if (!r.InParent) bytes += (long)(r.End - r.Start);
        }
        string? refusal = TaskWriteRefusal(pid, access, bytes);
        if (refusal is not null)
        {
            Log.Info($"{pid}: pages: Crest writes the pages: {refusal}");
            return null;
        }

        PageDumpResult? result = null;
        var handle = writer.PagesFile!;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            int crestFd = (int)handle.DangerousGetHandle();
            PinnedInjection.Run(access.Tracee, () =>
            {
                using var remote = SyscallInjector.Open(access.Tracee);
                long taskFd = GetFdIntoTask(remote, crestFd);
                if (taskFd < 0)
                {
                    Log.Info($"{pid}: pages: the task cannot take the pages file ({Errno.FromRawReturn(taskFd).Name}); Crest writes the pages");
                    return;
                }
                try
                {
                    // Mapped now, before anything reads the task's maps alongside: mmap waits for such a reader's lock.
                    ulong iov = remote.AllocScratch(IovMax * 16, separate: true);
                    access.Scratch.Add((iov, iov + IovMax * 16));
                    writing?.Invoke();
                    result = WriteByTask(pid, all, writer, remote, iov, (int)taskFd, scanned, total, scanTime, clock, cpu);
                }
                finally
                {
                    long rc = remote.Syscall(SyscallNumbers.close, taskFd);
                    if (rc != 0) Log.Warning($"{pid}: pages: close of fd {taskFd} in the task gave {Errno.FromRawReturn(rc).Name}");
                }
            });
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
        return result;
    }

    /// <summary>
    /// pidfd_open(Crest) + pidfd_getfd in the task: its number for Crest's <paramref name="crestFd"/>, or -errno. Crest's
    /// pid means Crest only in Crest's pid namespace (in another it may name some other process): the task must be
    /// in it, and kcmp(KCMP_FILE, Linux 3.5) confirms the task got the very file.
    /// </summary>
    private static long GetFdIntoTask(SyscallInjector remote, int crestFd)
    {
        int tid = remote.Tracee.Tid;
        string? taskNs = new FileInfo($"/proc/{tid}/ns/pid").LinkTarget, crestNs = new FileInfo("/proc/self/ns/pid").LinkTarget;
        if (taskNs is null || taskNs != crestNs) return -Errno.ESRCH;
        long pidfd = remote.Syscall(SyscallNumbers.pidfd_open, Environment.ProcessId, 0);
        if (pidfd < 0) return pidfd;
        long fd = remote.Syscall(SyscallNumbers.pidfd_getfd, pidfd, crestFd, 0);
        long rc = remote.Syscall(SyscallNumbers.close, pidfd);
        if (rc != 0) Log.Warning($"{tid}: pages: close of pidfd {pidfd} in the task gave {Errno.FromRawReturn(rc).Name}");
        if (fd >= 0 && !Kcmp.SameFile(tid, Environment.ProcessId, (int)fd, crestFd))
        {
            remote.Syscall(SyscallNumbers.close, fd);
            throw new DumpException($"Task {tid}: the descriptor it took from Crest is not the pages image.");
        }
        return fd;
    }

    private static PageDumpResult WriteByTask(int pid, List<Run> all, PageImageWriter writer, SyscallInjector remote, ulong iov, int taskFd,
        ulong scanned, ulong total, TimeSpan scanTime, Stopwatch clock, TimeSpan cpu)
    {
        var segments = new List<Segment>(all.Count);
        foreach (var r in all)
        {
            uint pages = checked((uint)((r.End - r.Start) / PageSize));
            if (r.InParent)
            {
                writer.AddWithoutData(r.Start, pages, PagemapFlags.Parent);
                continue;
            }
            long offset = writer.ReservePresent(r.Start, pages);
            for (long at = 0; at < (long)(r.End - r.Start); at += MaxBytesPerCall)
                segments.Add(new Segment(r.Start + (ulong)at, Math.Min(MaxBytesPerCall, (long)(r.End - r.Start) - at), offset + at, r.Readable));
        }
        writer.SizeReserved();

        long writeStart = Stopwatch.GetTimestamp();
        var vector = new byte[IovMax * 16];
        var crest = new CrestWrites(pid, writer);
        long byTask = 0, calls = 0;
        try
        {
            int i = 0;
            while (i < segments.Count)
            {
                // Between two injected pwritevs the task is parked in Crest's gadget: a safe point.
                Interruption.CheckDump();
                if (!segments[i].Readable)
                {
                    crest.Write(segments[i]);
                    i++;
                    continue;
                }
                // Consecutive readable segments are consecutive in the file: one pwritev for up to IOV_MAX of them.
                int n = 0;
                long length = 0;
                while (i + n < segments.Count && n < IovMax && segments[i + n].Readable && length + segments[i + n].Length <= MaxBytesPerCall)
                {
                    length += segments[i + n].Length;
                    n++;
                }
                long done = WriteSegments(remote, taskFd, iov, vector, segments, i, n, crest);
                byTask += done;
                calls++;
                i += n;
            }
        }
        finally
        {
            crest.Dispose();
        }
        var writeTime = Stopwatch.GetElapsedTime(writeStart);
        writer.Complete();
        Interlocked.Add(ref s_bytesWrittenByTasks, byTask);
        Log.Info($"{pid}: pages: scan {scanTime.TotalMilliseconds:0.#} ms, written by the task {writeTime.TotalMilliseconds:0.#} ms " +
            $"({byTask} bytes in {calls} pwritev calls, {crest.Bytes} bytes by Crest), all {clock.Elapsed.TotalMilliseconds:0.#} ms, " +
            $"CPU of Crest {(Environment.CpuUsage.TotalTime - cpu).TotalMilliseconds:0} ms");
        return new PageDumpResult(scanned, total, clock.Elapsed, writeTime);
    }

    /// <summary>
    /// pwritev of segments [first, first + count) by the task, again for the rest after a short write; what the task
    /// cannot write (an error, or nothing written) Crest writes. Returns the bytes the task wrote.
    /// </summary>
    private static long WriteSegments(SyscallInjector remote, int taskFd, ulong iov, byte[] vector, List<Segment> segments, int first, int count,
        CrestWrites crest)
    {
        long written = 0;
        int end = first + count;
        // The first segment may have been written in part by an earlier short write.
        long skip = 0;
        while (first < end)
        {
            int n = end - first;
            long length = 0;
            for (int k = 0; k < n; k++)
            {
                var s = segments[first + k];
                long from = k == 0 ? skip : 0;
                BinaryPrimitives.WriteUInt64LittleEndian(vector.AsSpan(k * 16), s.Address + (ulong)from);
                BinaryPrimitives.WriteUInt64LittleEndian(vector.AsSpan(k * 16 + 8), (ulong)(s.Length - from));
                length += s.Length - from;
            }
            remote.WriteScratch(iov, vector.AsSpan(0, n * 16));
            long offset = segments[first].Offset + skip;
            // x86_64 pwritev(fd, iov, iovcnt, pos_l, pos_h): a 64-bit pos_l holds the whole offset.
            long rc = remote.Syscall(SyscallNumbers.pwritev, taskFd, (long)iov, n, offset, 0);
            if (rc <= 0)
            {
                Log.Info($"{remote.Tracee.Tid}: pages: pwritev in the task at offset {offset} gave {(rc == 0 ? "0 bytes" : Errno.FromRawReturn(rc).Name)}; Crest writes {length} bytes");
                crest.Write(segments[first] with { Address = segments[first].Address + (ulong)skip, Length = segments[first].Length - skip, Offset = offset });
                for (int k = first + 1; k < end; k++) crest.Write(segments[k]);
                return written;
            }
            written += rc;
            // Past the segments the call wrote whole.
            long left = rc;
            while (first < end && left >= segments[first].Length - skip)
            {
                left -= segments[first].Length - skip;
                skip = 0;
                first++;
            }
            skip += left;
        }
        return written;
    }

    /// <summary>Crest's own writes into pages-N.img, for what the task does not write: /proc/PID/mem or process_vm_readv, then pwrite.</summary>
    private sealed class CrestWrites(int pid, PageImageWriter writer) : IDisposable
    {
        private const int Chunk = 4 << 20;
        private byte[]? _buffer;
        private FileDescriptor? _mem;
        private readonly List<RemoteRange> _ranges = [];
        private readonly List<Piece> _pieces = [];

        public long Bytes { get; private set; }

        public void Write(Segment s)
        {
            _buffer ??= GC.AllocateUninitializedArray<byte>(Chunk, pinned: true);
            for (long at = 0; at < s.Length; at += Chunk)
            {
                int length = (int)Math.Min(Chunk, s.Length - at);
                _pieces.Clear();
                _pieces.Add(new Piece(s.Address, 0, false, s.Address + (ulong)at, length, s.Readable));
                ReadPieces(pid, _pieces, _buffer, _ranges, ref _mem);
                RandomAccess.Write(writer.PagesFile!, _buffer.AsSpan(0, length), s.Offset + at);
                Bytes += length;
            }
        }

        public void Dispose() => _mem?.Dispose();
    }
}
