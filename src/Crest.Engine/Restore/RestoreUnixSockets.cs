// Unix sockets of a restored tree (files.img entries of type UNIXSK; dump side in Files/UnixSockets.cs). Each socket
// is created in Crest (socket(2) or socketpair(2)), given its options (SO_SNDBUFFORCE/SO_RCVBUFFORCE, timeouts,
// SO_PASSCRED...), bound and put to listen where it was, shut down as it was, and handed to the task, which takes
// it with pidfd_open + pidfd_getfd (Linux 5.6) on Crest: the same open file description, so the status flags
// Crest sets (O_NONBLOCK) are the task's. A socket whose peer was outside the tree (an entry with uflags EXTERN)
// is connected by the task itself after it holds it, so that the peer sees the task as its peer (SO_PEERCRED on a
// stream connection names the task, not Crest). The data queued in a socketpair's ends (sk-queues.img) is sent again
// from the other end before either is shut down. Crest's descriptors are closed once every task has its fds.
// Every socket is planned before any task exists, so an entry this restore cannot rebuild fails it early.
using Crest.Diagnostics;
using Crest.Engine.Files;
using Crest.Images;
using Crest.Images.Protos;
using Crest.Kernel;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Files;
using Crest.Kernel.Interop;
using Crest.Kernel.Sockets;

namespace Crest.Engine.Restore;

internal sealed class RestoreUnixSockets : IDisposable
{
    private const long O_CLOEXEC = 0x80000, F_SETFD = 2;
    private const int F_SETFL = 4;
    private const uint SettableStatusFlags = 0x400 /* O_APPEND */ | 0x800 /* O_NONBLOCK */ | 0x2000 /* O_ASYNC */;
    private const uint TcpListen = 10, TcpClose = 7, TcpEstablished = 1;

    private readonly Dictionary<uint, UnixSkEntry> _byInode = [];
    private readonly Dictionary<uint, FileDescriptor> _sockets = [];
    private readonly Dictionary<uint, List<byte[]>> _queues = [];

    public RestoreUnixSockets(RestoreTree tree)
    {
        ReadQueues(tree.Directory);
        foreach (var file in tree.Files.Values)
            if (file.Usk is { } sk) _byInode[sk.Ino] = sk;
        foreach (var (pid, images) in tree.Processes.OrderBy(p => p.Key))
        {
            foreach (var fd in images.Fds.Where(f => f.Type == FdTypes.Unixsk))
            {
                if (!tree.Files.TryGetValue(fd.Id, out var file) || file.Usk is null)
                    throw new RestoreException($"files.img has no unix socket with file id {fd.Id} (fd {fd.Fd} of task {pid})");
                Plan(file.Usk, $"task {pid} fd {fd.Fd}");
            }
        }
    }

    /// <summary>Refuse, before anything is created, a tree with a socket this restore cannot rebuild.</summary>
    public static void CheckTree(RestoreTree tree) => new RestoreUnixSockets(tree).Dispose();

    private enum Kind { Plain, Listener, External, Pair }

    /// <summary>How <paramref name="sk"/> is rebuilt; throws for what this restore cannot do.</summary>
    private Kind Plan(UnixSkEntry sk, string what)
    {
        string described = $"unix socket {sk.Ino}";
        if ((sk.Uflags & UnixSockets.UflagExtern) != 0)
            throw new RestoreException($"{what}: {described} is the external peer of another socket, not a socket of the tree");
        if (sk.Type is not ((uint)SocketKind.Stream or (uint)SocketKind.Datagram or (uint)SocketKind.SeqPacket))
            throw new RestoreException($"{what}: {described} has type {sk.Type}, which this restore does not support");
        if (sk.Peer != 0)
        {
            if (!_byInode.TryGetValue(sk.Peer, out var peer))
                throw new RestoreException($"{what}: {described} is connected to socket {sk.Peer}, which files.img does not describe");
            if ((peer.Uflags & UnixSockets.UflagExtern) != 0)
            {
                if (peer.Name.Length == 0) throw new RestoreException($"{what}: {described}: its external peer {peer.Ino} has no name to connect to");
                if (HasPath(sk)) throw new RestoreException($"{what}: {described} is bound to a path and connected to an external peer; not supported");
                return Kind.External;
            }
            if (peer.Peer != sk.Ino || peer.Type != sk.Type)
                throw new RestoreException($"{what}: {described} is connected to socket {sk.Peer} in a way this restore does not rebuild (only socketpairs)");
            return Kind.Pair;
        }
        if (sk.State == TcpListen)
        {
            if (sk.Name.Length == 0) throw new RestoreException($"{what}: {described} listens without a name");
            return Kind.Listener;
        }
        if (sk.State == TcpEstablished)
            throw new RestoreException($"{what}: {described} is connected to nothing this restore knows of");
        if (sk.State != TcpClose)
            throw new RestoreException($"{what}: {described} is in state {sk.State}, which this restore does not support");
        return Kind.Plain;
    }

    /// <summary>Give the task the socket <paramref name="sk"/> as fd <paramref name="fd"/> (the first fd of the tree that holds it).</summary>
    /// <param name="inheritedFd">The restoring process's fd given with --inherit-fd fd[N]:socket:[INO] for this socket:
    /// the task gets that socket as it is (its status flags and owner are set; nothing is bound or connected).</param>
    public void Open(StubInjector task, FdinfoEntry fd, UnixSkEntry sk, bool cloexec, int? inheritedFd = null)
    {
        string what = $"fd {fd.Fd} of task {task.Pid}";
        var kind = Plan(sk, what);
        try
        {
            if (inheritedFd is { } n)
            {
                using var inherited = FileDescriptor.Borrow(n);
                if (!inherited.Stat().IsSocket)
                    throw new RestoreException($"{what}: --inherit-fd fd[{n}]:{RestoreInheritedFds.Key(sk)}: fd {n} is not a socket");
                Take(task, fd, inherited, cloexec, what);
                uint flags = sk.Flags & SettableStatusFlags;
                inherited.Fcntl(F_SETFL, flags);
                RestorePipes.Place(task, fd, fd.Fd, cloexec, sk.Fown, $"unix socket {sk.Ino}");
                Log.Info($"{task.Pid}: restore: fd {fd.Fd}: unix socket {sk.Ino} is the inherited fd {n}");
                return;
            }
            var socket = Create(sk, kind);
            Take(task, fd, socket, cloexec, what);
            if (kind == Kind.External)
            {
                var peer = _byInode[sk.Peer];
                byte[] address = new byte[2 + peer.Name.Length];
                BitConverter.TryWriteBytes(address, (ushort)SocketFamily.Unix);
                peer.Name.Span.CopyTo(address.AsSpan(2));
                long rc = task.Syscall(SyscallNumbers.connect, fd.Fd, (long)task.Put(address), address.Length);
                task.ResetScratch();
                if (rc < 0)
                    throw new RestoreException($"{what}: cannot connect unix socket {sk.Ino} to its external peer {Name(peer)}: {Errno.FromRawReturn(rc)}");
                Log.Info($"{task.Pid}: restore: fd {fd.Fd}: unix socket {sk.Ino} connected to the external {Name(peer)}");
            }
            Shutdown(socket, sk);
            uint status = sk.Flags & SettableStatusFlags;
            if (status != 0) socket.Fcntl(F_SETFL, status);
            RestorePipes.Place(task, fd, fd.Fd, cloexec, sk.Fown, $"unix socket {sk.Ino}");
            Log.Debug($"{task.Pid}: restore: fd {fd.Fd} = unix socket {sk.Ino} ({kind}) flags 0x{sk.Flags:x}{(cloexec ? " cloexec" : "")}");
        }
        catch (KernelException e)
        {
            throw new RestoreException($"{what}: unix socket {sk.Ino}: {e.Message}", e);
        }
    }

    /// <summary>Crest's descriptor for the socket: made now, or (the other end of a socketpair) made with its peer.</summary>
    private FileDescriptor Create(UnixSkEntry sk, Kind kind)
    {
        if (_sockets.TryGetValue(sk.Ino, out var made)) return made;
        var type = (SocketKind)sk.Type;
        if (kind == Kind.Pair)
        {
            var peer = _byInode[sk.Peer];
            var (mine, theirs) = KernelSocket.CreatePair(type);
            _sockets[sk.Ino] = mine;
            _sockets[peer.Ino] = theirs;
            SetOptions(mine, sk.Opts);
            SetOptions(theirs, peer.Opts);
            Refill(mine, sk, from: theirs);
            Refill(theirs, peer, from: mine);
            // A connected stream or seqpacket socket's name is its listener's (accept) or one it was bound to before
            // connecting; only a dgram end's own (abstract, autobind) name is bound again.
            if (type == SocketKind.Datagram && sk.Name.Length != 0) Bind(mine, sk);
            if (type == SocketKind.Datagram && peer.Name.Length != 0) Bind(theirs, peer);
            Shutdown(theirs, peer);
            return mine;
        }
        var socket = KernelSocket.Create(SocketFamily.Unix, type);
        _sockets[sk.Ino] = socket;
        SetOptions(socket, sk.Opts);
        if (sk.Name.Length != 0) Bind(socket, sk);
        if (kind == Kind.Listener) KernelSocket.Listen(socket, (int)Math.Max(sk.Backlog, 1));
        return socket;
    }

    /// <summary>sk-queues.img: the packets queued in each socket, by the socket's file id (id_for).</summary>
    private void ReadQueues(string directory)
    {
        string name = ImageKinds.FileName(ImageKinds.SkQueues);
        string path = Path.Combine(directory, name);
        if (!File.Exists(path)) return;
        try
        {
            using var reader = ImageReader.Open(path, ImageKinds.SkQueues);
            while (reader.ReadEntry(SkPacketEntry.Parser) is { } entry)
            {
                byte[] data = reader.ReadPayload();
                if (data.Length != entry.Length)
                    throw new RestoreException($"{name}: a packet for file id {entry.IdFor} declares {entry.Length} bytes, holds {data.Length}");
                if (!_queues.TryGetValue(entry.IdFor, out var packets)) _queues[entry.IdFor] = packets = [];
                packets.Add(data);
            }
        }
        catch (ImageFormatException e)
        {
            throw new RestoreException($"corrupt image: {e.Message}", e);
        }
    }

    /// <summary>Queue in <paramref name="socket"/> what was queued in <paramref name="sk"/>, sent from its peer: one send per
    /// datagram or record (MSG_DONTWAIT: it all fitted before, so a full buffer is an error, not a wait).</summary>
    private void Refill(FileDescriptor socket, UnixSkEntry sk, FileDescriptor from)
    {
        if (!_queues.TryGetValue(sk.Id, out var packets)) return;
        long bytes = 0;
        foreach (byte[] packet in packets)
        {
            int sent = KernelSocket.Send(from, packet, Libc.MSG_DONTWAIT);
            if (sent != packet.Length)
                throw new RestoreException($"unix socket {sk.Ino}: sent {sent} of the {packet.Length} bytes queued in it");
            bytes += sent;
        }
        Log.Debug($"restore: unix socket {sk.Ino}: {packets.Count} packets, {bytes} bytes queued again ({socket})");
    }

    /// <summary>Bind to the dumped name; a socket file left at the path (its old owner is gone) is removed first.</summary>
    private static void Bind(FileDescriptor socket, UnixSkEntry sk)
    {
        byte[] address = new byte[2 + sk.Name.Length];
        BitConverter.TryWriteBytes(address, (ushort)SocketFamily.Unix);
        sk.Name.Span.CopyTo(address.AsSpan(2));
        string? path = sk.Name.Span[0] == 0 ? null : System.Text.Encoding.UTF8.GetString(sk.Name.Span).TrimEnd('\0');
        if (path is not null && RegularFiles.TryStat(path) is { IsSocket: true })
        {
            File.Delete(path);
            Log.Info($"restore: removed the stale socket file {path}");
        }
        KernelSocket.Bind(socket, address);
        if (path is not null && sk.FilePerms is { } perms)
            File.SetUnixFileMode(path, (UnixFileMode)(perms.Mode & 0xFFF));
        Log.Debug($"restore: unix socket {sk.Ino} bound to {Name(sk)}");
    }

    private static void Shutdown(FileDescriptor socket, UnixSkEntry sk)
    {
        if (!sk.HasShutdown || sk.Shutdown == SkShutdown.None) return;
        int how = sk.Shutdown switch { SkShutdown.Read => Libc.SHUT_RD, SkShutdown.Write => Libc.SHUT_WR, _ => Libc.SHUT_RDWR };
        KernelSocket.Shutdown(socket, how);
    }

    /// <summary>The options of SkOptsEntry a unix socket uses. Buffer sizes are set with the FORCE variants (root),
    /// halved: the kernel doubles what it is given and reports the doubled size.</summary>
    private static void SetOptions(FileDescriptor socket, SkOptsEntry? opts)
    {
        if (opts is null) return;
        if (opts.SoSndbuf != 0 && KernelSocket.GetOptionInt32(socket, Libc.SOL_SOCKET, Libc.SO_SNDBUF) != (int)opts.SoSndbuf)
            KernelSocket.SetOptionInt32(socket, Libc.SOL_SOCKET, Libc.SO_SNDBUFFORCE, (int)(opts.SoSndbuf / 2));
        if (opts.SoRcvbuf != 0 && KernelSocket.GetOptionInt32(socket, Libc.SOL_SOCKET, Libc.SO_RCVBUF) != (int)opts.SoRcvbuf)
            KernelSocket.SetOptionInt32(socket, Libc.SOL_SOCKET, Libc.SO_RCVBUFFORCE, (int)(opts.SoRcvbuf / 2));
        if (opts.SoSndTmoSec != 0 || opts.SoSndTmoUsec != 0) SetTimeout(socket, Libc.SO_SNDTIMEO, opts.SoSndTmoSec, opts.SoSndTmoUsec);
        if (opts.SoRcvTmoSec != 0 || opts.SoRcvTmoUsec != 0) SetTimeout(socket, Libc.SO_RCVTIMEO, opts.SoRcvTmoSec, opts.SoRcvTmoUsec);
        if (opts.SoPasscred) KernelSocket.SetOptionInt32(socket, Libc.SOL_SOCKET, Libc.SO_PASSCRED, 1);
        if (opts.SoPasssec) KernelSocket.SetOptionInt32(socket, Libc.SOL_SOCKET, Libc.SO_PASSSEC, 1);
        if (opts.SoPriority != 0) KernelSocket.SetOptionInt32(socket, Libc.SOL_SOCKET, Libc.SO_PRIORITY, (int)opts.SoPriority);
        if (opts.HasSoRcvlowat && opts.SoRcvlowat > 1) KernelSocket.SetOptionInt32(socket, Libc.SOL_SOCKET, Libc.SO_RCVLOWAT, (int)opts.SoRcvlowat);
        if (opts.SoMark != 0) KernelSocket.SetOptionInt32(socket, Libc.SOL_SOCKET, Libc.SO_MARK, (int)opts.SoMark);
    }

    private static void SetTimeout(FileDescriptor socket, int name, ulong seconds, ulong microseconds)
    {
        Span<byte> tv = stackalloc byte[16];
        BitConverter.TryWriteBytes(tv, (long)seconds);
        BitConverter.TryWriteBytes(tv[8..], (long)microseconds);
        KernelSocket.SetOption(socket, Libc.SOL_SOCKET, name, tv);
    }

    /// <summary>
    /// The task takes Crest's <paramref name="socket"/> as fd <paramref name="fd"/>: pidfd_open(Crest) and pidfd_getfd
    /// give it the same open file description; the temporary descriptors are closed.
    /// </summary>
    private static void Take(StubInjector task, FdinfoEntry fd, FileDescriptor socket, bool cloexec, string what)
    {
        long pidfd = task.Check("pidfd_open", $"{what}: Crest", SyscallNumbers.pidfd_open, Environment.ProcessId, 0);
        long got = task.Check("pidfd_getfd", $"{what}: Crest's {socket}", SyscallNumbers.pidfd_getfd, pidfd, socket.Fd, 0);
        if (got != fd.Fd)
        {
            // When the pidfd took the number fd.Fd, this dup3 closes it.
            task.Check("dup3", what, SyscallNumbers.dup3, got, fd.Fd, cloexec ? O_CLOEXEC : 0);
            task.Check("close", $"temporary fd {got}", SyscallNumbers.close, got);
        }
        else if (!cloexec)
        {
            task.Check("fcntl(F_SETFD)", what, SyscallNumbers.fcntl, fd.Fd, F_SETFD, 0); // pidfd_getfd sets FD_CLOEXEC
        }
        if (pidfd != fd.Fd) task.Check("close", $"pidfd {pidfd}", SyscallNumbers.close, pidfd);
    }

    private static bool HasPath(UnixSkEntry sk) => sk.Name.Length != 0 && sk.Name[0] != 0;

    private static string Name(UnixSkEntry sk)
    {
        var name = sk.Name.Span;
        if (name.Length == 0) return "(unnamed)";
        return name[0] == 0 ? "@" + System.Text.Encoding.UTF8.GetString(name[1..]) : System.Text.Encoding.UTF8.GetString(name).TrimEnd('\0');
    }

    public void Dispose()
    {
        foreach (var socket in _sockets.Values) socket.Dispose();
        _sockets.Clear();
    }
}
