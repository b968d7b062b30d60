// restore --lazy-pages talking to a `crest lazy-pages` daemon: a SOCK_SEQPACKET unix socket, lazy-pages.socket
// in the work directory (CRIU's name and place). One packet per restored process whose pages are left to
// the daemon, sent right after its VMAs are registered, before anything touches them:
//
//   u32 magic "CLZ1" | u32 pid | u32 n | n × { u64 start, u64 end }      SCM_RIGHTS: [userfaultfd, pidfd]
//
// The ranges are the registered VMAs (the only ones the daemon may fill). The pidfd tells the daemon when the
// task has exited. The restore closes the connection when it ends (successfully or not); the daemon goes on
// serving the tasks it was given.
using System.Buffers.Binary;
using Crest.Kernel;
using Crest.Kernel.Files;
using Crest.Kernel.Memory;
using Crest.Kernel.Sockets;

namespace Crest.Engine.Restore;

public sealed class LazyPagesConnection : IDisposable
{
    public const string SocketName = "lazy-pages.socket";
    internal const uint Magic = 0x315a4c43; // "CLZ1"
    internal const int HeaderSize = 12, RangeSize = 16;
    /// <summary>Largest packet: the ranges of one task (a task with more lazy VMAs sends several packets).</summary>
    internal const int MaxPacket = 64 * 1024;
    internal const int MaxRanges = (MaxPacket - HeaderSize) / RangeSize;

    private readonly FileDescriptor _socket;

    private LazyPagesConnection(FileDescriptor socket, string path)
    {
        _socket = socket;
        Path = path;
    }

    public string Path { get; }

    /// <summary>Connects to the daemon listening on <paramref name="socketPath"/>; a clear error when none does.</summary>
    public static LazyPagesConnection Connect(string socketPath)
    {
        var socket = KernelSocket.Create(SocketFamily.Unix, SocketKind.SeqPacket);
        try
        {
            KernelSocket.Connect(socket, SockAddr.Unix(socketPath));
            return new LazyPagesConnection(socket, socketPath);
        }
        catch (KernelException e)
        {
            socket.Dispose();
            throw new RestoreException($"--lazy-pages: no lazy-pages daemon listens on {socketPath} ({e.Errno}); start `crest lazy-pages` for these images first", e);
        }
        catch (ArgumentException e)
        {
            socket.Dispose();
            throw new RestoreException($"--lazy-pages: {e.Message}", e);
        }
    }

    /// <summary>Hands the registered <paramref name="ranges"/> of task <paramref name="pid"/> and its userfaultfd to the daemon.</summary>
    public void Send(int pid, IReadOnlyList<(ulong Start, ulong End)> ranges, Userfaultfd uffd)
    {
        using var pidfd = PidFd.Open(pid);
        for (int first = 0; first == 0 || first < ranges.Count; first += MaxRanges)
        {
            int n = Math.Min(MaxRanges, ranges.Count - first);
            var packet = new byte[HeaderSize + n * RangeSize];
            BinaryPrimitives.WriteUInt32LittleEndian(packet, Magic);
            BinaryPrimitives.WriteUInt32LittleEndian(packet.AsSpan(4), (uint)pid);
            BinaryPrimitives.WriteUInt32LittleEndian(packet.AsSpan(8), (uint)n);
            for (int i = 0; i < n; i++)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(packet.AsSpan(HeaderSize + i * RangeSize), ranges[first + i].Start);
                BinaryPrimitives.WriteUInt64LittleEndian(packet.AsSpan(HeaderSize + i * RangeSize + 8), ranges[first + i].End);
            }
            try
            {
                ScmRights.Send(_socket, [uffd.Handle, pidfd.Handle], packet);
            }
            catch (KernelException e)
            {
                throw new RestoreException($"--lazy-pages: cannot hand task {pid} to the lazy-pages daemon on {Path}: {e.Message}", e);
            }
        }
    }

    public void Dispose() => _socket.Dispose();
}
