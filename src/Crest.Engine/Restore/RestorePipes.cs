// Pipe ends of a restored task (files.img entries of type PIPE, pipes-data.img). Each pipe is created once,
// in Crest (pipe2), sized with F_SETPIPE_SZ and refilled with the bytes queued at dump time. The task then
// opens each of its ends through Crest's /proc/CREST/fd/N link: opening a pipe inode there gives a new open
// file description of that same pipe, with the access mode and status flags (O_NONBLOCK) asked for, which
// is what a descriptor passed over SCM_RIGHTS would be after an F_SETFL, in one injected syscall. It is
// moved to its number with dup3 (O_CLOEXEC from the fd flags); fds that shared a file id are dup3'd by
// RestoreFiles. Crest's ends are closed once every fd of the task is in place (Dispose).
// A FIFO (files.img FIFO entry + the REG entry of its path, fifo-data.img) is opened by its path. Crest opens
// it first, O_RDWR (which never blocks on a FIFO), sizes and refills it, and holds it until the task's fds
// are in place: so the task's own open does not wait for the other end (O_RDONLY) or fail with ENXIO
// (O_WRONLY | O_NONBLOCK), and the refilled bytes are not dropped for want of an open end.
using Crest.Diagnostics;
using Crest.Images;
using Crest.Images.Protos;
using Crest.Kernel;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Files;

namespace Crest.Engine.Restore;

internal sealed class RestorePipes : IDisposable
{
    private const int F_SETPIPE_SZ = 1031, F_GETPIPE_SZ = 1032;
    private const long O_CLOEXEC = 0x80000, O_ACCMODE = 3, O_NONBLOCK = 0x800, FD_CLOEXEC = 1, F_SETFD = 2, AT_FDCWD = -100;
    private const long F_SETSIG = 10, F_SETOWN_EX = 15;

    private readonly Dictionary<uint, (FileDescriptor Read, FileDescriptor Write)> _pipes = [];
    private readonly Dictionary<uint, (PipeDataEntry Entry, byte[] Data)> _data;
    private readonly Dictionary<uint, FileDescriptor> _fifos = [];
    private readonly Dictionary<uint, (PipeDataEntry Entry, byte[] Data)> _fifoData;

    public RestorePipes(string directory)
    {
        _data = ReadData(directory, ImageKinds.PipesData, "pipe");
        _fifoData = ReadData(directory, ImageKinds.FifoData, "FIFO");
    }

    private static Dictionary<uint, (PipeDataEntry Entry, byte[] Data)> ReadData(string directory, ImageKind kind, string what)
    {
        var result = new Dictionary<uint, (PipeDataEntry Entry, byte[] Data)>();
        string name = ImageKinds.FileName(kind);
        string path = Path.Combine(directory, name);
        if (!File.Exists(path)) return result;
        try
        {
            using var reader = ImageReader.Open(path, kind);
            while (reader.ReadEntry(PipeDataEntry.Parser) is { } entry)
            {
                byte[] data = reader.ReadPayload();
                if (data.Length != entry.Bytes)
                    throw new RestoreException($"{name}: {what} {entry.PipeId} declares {entry.Bytes} bytes, holds {data.Length}");
                result[entry.PipeId] = (entry, data);
            }
        }
        catch (ImageFormatException e)
        {
            throw new RestoreException($"corrupt image: {e.Message}", e);
        }
        return result;
    }

    /// <summary>Give the task the FIFO <paramref name="fifo"/>, opened by the path in <paramref name="reg"/>, as fd <paramref name="fd"/>.</summary>
    public void OpenFifo(StubInjector task, FdinfoEntry fd, FifoEntry fifo, RegFileEntry reg, bool cloexec)
    {
        HoldFifo(fifo.PipeId, reg.Name);
        long flags = reg.Flags & ~O_CLOEXEC;
        long opened = task.Syscall(SyscallNumbers.openat, AT_FDCWD, (long)task.PutString(reg.Name), flags, 0);
        task.ResetScratch();
        if (opened < 0)
            throw new RestoreException($"fd {fd.Fd} of task {task.Pid}: cannot open FIFO {reg.Name}: {Errno.FromRawReturn(opened)}");
        Place(task, fd, opened, cloexec, reg.Fown, $"FIFO {reg.Name}");
        Log.Debug($"{task.Pid}: restore: fd {fd.Fd} = FIFO {reg.Name} flags 0x{flags:x}{(cloexec ? " cloexec" : "")}");
    }

    private void HoldFifo(uint pipeId, string path)
    {
        if (_fifos.ContainsKey(pipeId)) return;
        try
        {
            var holder = FileDescriptor.Open(path, OpenFlags.ReadWrite | OpenFlags.NonBlock | OpenFlags.CloseOnExec);
            _fifos[pipeId] = holder;
            if (!holder.Stat().IsFifo)
                throw new RestoreException($"{path} is no longer a FIFO");
            if (_fifoData.TryGetValue(pipeId, out var d))
            {
                if (d.Entry.HasSize && d.Entry.Size != 0 && holder.Fcntl(F_GETPIPE_SZ) != (int)d.Entry.Size)
                    holder.Fcntl(F_SETPIPE_SZ, d.Entry.Size);
                holder.WriteAll(d.Data);
                Log.Debug($"restore: FIFO {path}: size {holder.Fcntl(F_GETPIPE_SZ)}, {d.Data.Length} bytes queued");
            }
        }
        catch (KernelException e)
        {
            throw new RestoreException($"FIFO {path}: {e.Message}", e);
        }
    }

    /// <summary>
    /// Give the task the pipe end <paramref name="pipe"/> as fd <paramref name="fd"/>: an end of the pipe Crest creates
    /// for it, or of the pipe given with --inherit-fd (<paramref name="inheritedLink"/>, which gets none of the dumped data).
    /// </summary>
    public void Open(StubInjector task, FdinfoEntry fd, PipeEntry pipe, bool cloexec, string? inheritedLink = null)
    {
        long flags = pipe.Flags & ~O_CLOEXEC;
        string link;
        if (inheritedLink is not null)
        {
            link = inheritedLink;
        }
        else
        {
            var (read, write) = Create(pipe.PipeId);
            var crestEnd = (flags & O_ACCMODE) == 0 ? read : write;
            link = $"/proc/{Environment.ProcessId}/fd/{crestEnd.Fd}";
        }
        long opened = task.Syscall(SyscallNumbers.openat, AT_FDCWD, (long)task.PutString(link), flags, 0);
        task.ResetScratch();
        if (opened < 0)
            throw new RestoreException($"fd {fd.Fd} of task {task.Pid}: cannot open pipe {pipe.PipeId} through {link}: {Errno.FromRawReturn(opened)}");
        Place(task, fd, opened, cloexec, pipe.Fown, $"pipe {pipe.PipeId}");
        Log.Debug($"{task.Pid}: restore: fd {fd.Fd} = pipe {pipe.PipeId}{(inheritedLink is null ? "" : " from " + inheritedLink)} flags 0x{flags:x}{((flags & O_NONBLOCK) != 0 ? " nonblock" : "")}{(cloexec ? " cloexec" : "")}");
    }

    /// <summary>Move the descriptor the task just opened to its number, with its fd flags and owner.</summary>
    internal static void Place(StubInjector task, FdinfoEntry fd, long opened, bool cloexec, FownEntry? owner, string what)
    {
        if (opened != fd.Fd)
        {
            task.Check("dup3", $"fd {fd.Fd} ({what})", SyscallNumbers.dup3, opened, fd.Fd, cloexec ? O_CLOEXEC : 0);
            task.Check("close", $"temporary fd {opened}", SyscallNumbers.close, opened);
        }
        else if (cloexec)
        {
            task.Check("fcntl(F_SETFD)", $"fd {fd.Fd}", SyscallNumbers.fcntl, fd.Fd, F_SETFD, FD_CLOEXEC);
        }
        if (owner is { Pid: not 0 })
        {
            var ownerEx = new byte[8];
            BitConverter.TryWriteBytes(ownerEx, (int)owner.PidType);
            BitConverter.TryWriteBytes(ownerEx.AsSpan(4), (int)owner.Pid);
            task.Check("fcntl(F_SETOWN_EX)", $"fd {fd.Fd} owner {owner.PidType}:{owner.Pid}", SyscallNumbers.fcntl, fd.Fd, F_SETOWN_EX, (long)task.Put(ownerEx));
            task.ResetScratch();
        }
        if (owner is { Signum: not 0 } o)
            task.Check("fcntl(F_SETSIG)", $"fd {fd.Fd} signal {o.Signum}", SyscallNumbers.fcntl, fd.Fd, F_SETSIG, o.Signum);
    }

    private (FileDescriptor Read, FileDescriptor Write) Create(uint pipeId)
    {
        if (_pipes.TryGetValue(pipeId, out var ends)) return ends;
        try
        {
            ends = FileDescriptor.CreatePipe(OpenFlags.NonBlock);
            _pipes[pipeId] = ends;
            if (_data.TryGetValue(pipeId, out var d))
            {
                if (d.Entry.HasSize && d.Entry.Size != 0 && ends.Write.Fcntl(F_GETPIPE_SZ) != (int)d.Entry.Size)
                    ends.Write.Fcntl(F_SETPIPE_SZ, d.Entry.Size);
                ends.Write.WriteAll(d.Data);
                Log.Debug($"restore: pipe {pipeId}: size {ends.Write.Fcntl(F_GETPIPE_SZ)}, {d.Data.Length} bytes queued");
            }
            return ends;
        }
        catch (KernelException e)
        {
            throw new RestoreException($"pipe {pipeId}: {e.Message}", e);
        }
    }

    public void Dispose()
    {
        foreach (var (read, write) in _pipes.Values)
        {
            read.Dispose();
            write.Dispose();
        }
        _pipes.Clear();
        foreach (var holder in _fifos.Values) holder.Dispose();
        _fifos.Clear();
    }
}
