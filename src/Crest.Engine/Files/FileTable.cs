// files.img: one FileEntry per open file object (CRIU's file ids), which fdinfo-N.img, mm-PID.img
// (vma.shmid, exe_file_id) and fs-PID.img (cwd_id, root_id) refer to by id. Ids start at 1.
using Crest.Images.Protos;

namespace Crest.Engine.Files;

internal sealed class FileTable
{
    private readonly List<FileEntry> _entries = [];
    private readonly Dictionary<(string Path, uint Flags), uint> _byPath = [];

    public IReadOnlyList<FileEntry> Entries => _entries;

    public uint NextId => (uint)_entries.Count + 1;

    public uint Add(RegFileEntry reg)
    {
        reg.Id = NextId;
        _entries.Add(new FileEntry { Type = FdTypes.Reg, Id = reg.Id, Reg = reg });
        return reg.Id;
    }

    public uint Add(PipeEntry pipe)
    {
        pipe.Id = NextId;
        _entries.Add(new FileEntry { Type = FdTypes.Pipe, Id = pipe.Id, Pipe = pipe });
        return pipe.Id;
    }

    public uint Add(UnixSkEntry socket)
    {
        socket.Id = NextId;
        _entries.Add(new FileEntry { Type = FdTypes.Unixsk, Id = socket.Id, Usk = socket });
        return socket.Id;
    }

    public uint Add(FifoEntry fifo)
    {
        fifo.Id = NextId;
        _entries.Add(new FileEntry { Type = FdTypes.Fifo, Id = fifo.Id, Fifo = fifo });
        return fifo.Id;
    }

    public uint Add(TtyFileEntry tty)
    {
        tty.Id = NextId;
        _entries.Add(new FileEntry { Type = FdTypes.Tty, Id = tty.Id, Tty = tty });
        return tty.Id;
    }

    /// <summary>The queued data of each FIFO (fifo-data.img), keyed by its inode as pipe_id.</summary>
    public List<(PipeDataEntry Entry, byte[] Data)> FifoData { get; } = [];

    /// <summary>The data queued in unix sockets (sk-queues.img), in queue order per socket (id_for its file id).</summary>
    public List<(SkPacketEntry Entry, byte[] Data)> SocketQueues { get; } = [];

    /// <summary>The queued data of each pipe (pipes-data.img), in the order the pipes were first seen.</summary>
    public List<(PipeDataEntry Entry, byte[] Data)> PipeData { get; } = [];

    /// <summary>One entry per (path, flags) for files that are not open descriptors (mappings, exe, cwd, root).</summary>
    public uint AddShared(RegFileEntry reg)
    {
        if (_byPath.TryGetValue((reg.Name, reg.Flags), out uint id)) return id;
        id = Add(reg);
        _byPath[(reg.Name, reg.Flags)] = id;
        return id;
    }

    /// <summary>As AddShared, describing the file only the first time (path, flags) is seen.</summary>
    public uint AddShared(string path, uint flags, Func<RegFileEntry> describe) =>
        _byPath.TryGetValue((path, flags), out uint id) ? id : AddShared(describe());
}
