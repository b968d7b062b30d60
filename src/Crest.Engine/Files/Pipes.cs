// Pipe ends held by the dumped task (/proc/PID/fd/N reads "pipe:[INO]"), as CRIU's PIPE file entries:
// files.img gets one PipeEntry per open file description (id, pipe_id = the pipefs inode, status flags,
// owner), so both ends of one pipe share a pipe_id; pipes-data.img gets one PipeDataEntry per pipe with the
// buffer size (F_GETPIPE_SZ) and the queued bytes, followed by those bytes.
// The queued bytes are read without taking them from the task: Crest opens the pipe through the task's
// /proc link for reading (O_NONBLOCK; opening a pipe inode there gives a new read end even when the task
// holds only the write end), tee(2)s the buffer into a pipe of its own sized like the task's, and reads
// that copy.
// A FIFO opened by path (the link is a path to an S_IFIFO inode) is CRIU's FIFO entry: a REG entry for the
// path (regf_id), a FifoEntry whose pipe_id is the FIFO's inode, and its queued bytes in fifo-data.img, read
// the same way.
using Crest.Diagnostics;
using Crest.Engine.Dump;
using Crest.Images.Protos;
using Crest.Kernel;
using Crest.Kernel.Files;
using Crest.Kernel.Processes;

namespace Crest.Engine.Files;

internal sealed class Pipes
{
    private const int F_SETPIPE_SZ = 1031, F_GETPIPE_SZ = 1032;
    private const ulong FIONREAD = 0x541B;
    private const uint O_CLOEXEC = 0x80000, O_DIRECT = 0x4000;

    private const uint O_ACCMODE = 3, O_WRONLY = 1;

    private readonly Dictionary<uint, List<(int Pid, int Fd, uint Id)>> _byPipe = [];
    private readonly Dictionary<uint, List<PipeEntry>> _entries = [];
    private readonly Dictionary<(ulong Device, ulong Inode), List<(int Pid, int Fd, uint Id)>> _byFifo = [];

    /// <summary>Whether the readlink target of an fd names a pipe; its pipefs inode in <paramref name="pipeId"/>.</summary>
    public static bool IsPipe(string target, out uint pipeId)
    {
        pipeId = 0;
        return target.StartsWith("pipe:[", StringComparison.Ordinal) && target.EndsWith(']')
            && uint.TryParse(target.AsSpan(6, target.Length - 7), System.Globalization.NumberStyles.None,
                System.Globalization.CultureInfo.InvariantCulture, out pipeId);
    }

    /// <summary>The file id of pipe end <paramref name="fd"/> of <paramref name="pid"/>, adding it (and, for a pipe
    /// seen first, its queued data) to <paramref name="table"/>.</summary>
    public uint Add(int pid, int fd, uint pipeId, uint flags, FownEntry owner, FileTable table, string what)
    {
        // A packet-mode end (pipe2 O_DIRECT) cannot be opened again through /proc, where restore gets its ends.
        if ((flags & O_DIRECT) != 0)
            throw new DumpException($"{what}: pipe {pipeId} is in packet mode (O_DIRECT), which is not supported yet.");
        if (!_byPipe.TryGetValue(pipeId, out var ends))
        {
            _byPipe[pipeId] = ends = [];
            table.PipeData.Add(ReadQueued(pid, fd, pipeId, what));
        }
        foreach (var (otherPid, otherFd, otherId) in ends)
        {
            if (Kcmp.SameFile(pid, otherPid, fd, otherFd))
                return otherId;
        }
        var entry = new PipeEntry { PipeId = pipeId, Flags = flags & ~O_CLOEXEC, Fown = owner };
        uint id = table.Add(entry);
        ends.Add((pid, fd, id));
        if (!_entries.TryGetValue(pipeId, out var entries)) _entries[pipeId] = entries = [];
        entries.Add(entry);
        return id;
    }

    /// <summary>
    /// Once the whole tree is seen: mark the pipes given with --external, and refuse a pipe held by the tree in
    /// one direction only while a process outside holds it too (its other end is out there), naming the fd and
    /// the --external to pass.
    /// </summary>
    public void CheckExternal(IReadOnlySet<int> tree, ExternalFiles external)
    {
        var oneWay = new HashSet<uint>();
        foreach (var (pipeId, entries) in _entries)
        {
            if (external.Contains(ExternalFiles.PipeId(pipeId)))
            {
                foreach (var entry in entries) entry.CrestExt = true;
                Log.Info($"dump: pipe {pipeId} is external");
                continue;
            }
            bool writes = entries.Any(e => (e.Flags & O_ACCMODE) == O_WRONLY);
            bool reads = entries.Any(e => (e.Flags & O_ACCMODE) != O_WRONLY);
            if (writes != reads) oneWay.Add(pipeId);
        }
        if (oneWay.Count == 0) return;
        // Whether anyone holds the other direction: poll a duplicate of the tree's end (POLLERR on a write end when
        // no reader is left, POLLHUP on a read end when no writer is), which costs one syscall per pipe. Only when
        // one does are the fds of every process read, to name it in the error (tens of milliseconds and more).
        var heldOutside = oneWay.Where(OtherEndIsOpen).ToHashSet();
        if (heldOutside.Count == 0) return;
        var holders = ExternalFiles.PipeHoldersOutside(tree, heldOutside);
        foreach (uint pipeId in heldOutside.Order())
        {
            var (pid, fd, _) = _byPipe[pipeId][0];
            string end = (_entries[pipeId][0].Flags & O_ACCMODE) == O_WRONLY ? "write" : "read";
            string id = ExternalFiles.PipeId(pipeId);
            string by = holders.TryGetValue(pipeId, out var outside) ? $" (by process {string.Join(", ", outside)})" : "";
            throw new DumpException($"task {pid} fd {fd}: {id} is the {end} end of a pipe also held outside the dumped tree{by}, " +
                $"which a restore cannot reconnect; {external.Advice(id)}.");
        }
    }

    private const short POLLERR = 0x8, POLLHUP = 0x10;

    /// <summary>Whether pipe <paramref name="pipeId"/>, which the tree holds in one direction only, has an end of the other direction open.</summary>
    private bool OtherEndIsOpen(uint pipeId)
    {
        var (pid, fd, _) = _byPipe[pipeId][0];
        bool treeWrites = (_entries[pipeId][0].Flags & O_ACCMODE) == O_WRONLY;
        try
        {
            using var pidfd = PidFd.Open(pid);
            using var end = pidfd.GetFd(fd);
            short revents = end.PollNow(0);
            return (revents & (treeWrites ? POLLERR : POLLHUP)) == 0;
        }
        catch (KernelException e)
        {
            throw new DumpException($"task {pid} fd {fd}: cannot tell whether pipe {pipeId} is held outside the tree: {e.Message}.", e);
        }
    }

    /// <summary>The file id of FIFO end <paramref name="fd"/> of <paramref name="pid"/> (opened by path as
    /// <paramref name="reg"/>), adding it and, for a FIFO seen first, its queued data to <paramref name="table"/>.</summary>
    public uint AddFifo(int pid, int fd, ulong device, ulong inode, RegFileEntry reg, FileTable table, string what)
    {
        if ((reg.Flags & O_DIRECT) != 0)
            throw new DumpException($"{what}: FIFO {reg.Name} is in packet mode (O_DIRECT), which is not supported yet.");
        uint pipeId = (uint)inode;
        if (!_byFifo.TryGetValue((device, inode), out var ends))
        {
            _byFifo[(device, inode)] = ends = [];
            table.FifoData.Add(ReadQueued(pid, fd, pipeId, what));
        }
        foreach (var (otherPid, otherFd, otherId) in ends)
        {
            if (Kcmp.SameFile(pid, otherPid, fd, otherFd))
                return otherId;
        }
        reg.Flags &= ~O_CLOEXEC;
        uint regfId = table.Add(reg);
        uint id = table.Add(new FifoEntry { PipeId = pipeId, RegfId = regfId });
        ends.Add((pid, fd, id));
        return id;
    }

    private static (PipeDataEntry, byte[]) ReadQueued(int pid, int fd, uint pipeId, string what)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            using var source = FileDescriptor.Open($"/proc/{pid}/fd/{fd}", OpenFlags.ReadOnly | OpenFlags.NonBlock);
            int size = source.Fcntl(F_GETPIPE_SZ);
            int queued;
            unsafe
            {
                int n = 0;
                source.Ioctl(FIONREAD, (nint)(&n));
                queued = n;
            }
            byte[] data = new byte[queued];
            if (queued > 0)
            {
                var (copyRead, copyWrite) = FileDescriptor.CreatePipe(OpenFlags.NonBlock);
                using (copyRead)
                using (copyWrite)
                {
                    if (copyWrite.Fcntl(F_GETPIPE_SZ) < size) copyWrite.Fcntl(F_SETPIPE_SZ, size);
                    int copied = source.Tee(copyWrite, queued);
                    if (copied != queued)
                        throw new DumpException($"{what}: tee copied {copied} of the {queued} bytes queued in pipe {pipeId}.");
                    int read = copyRead.ReadFull(data);
                    if (read != queued)
                        throw new DumpException($"{what}: read {read} of the {queued} bytes copied from pipe {pipeId}.");
                }
            }
            Log.Debug($"{pid}: dump: fd {fd}: pipe {pipeId}, size {size}, {queued} bytes queued, read in {System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalMilliseconds:F2} ms");
            return (new PipeDataEntry { PipeId = pipeId, Bytes = (uint)queued, Size = (uint)size }, data);
        }
        catch (KernelException e)
        {
            throw new DumpException($"{what}: cannot read the data queued in pipe {pipeId}: {e.Message}.", e);
        }
    }
}
