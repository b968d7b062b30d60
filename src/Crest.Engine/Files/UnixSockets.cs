// AF_UNIX sockets held by the dumped tree (/proc/PID/fd/N reads "socket:[INO]"), as CRIU's UNIXSK file entries:
// files.img gets one UnixSkEntry per socket (a socket inode has exactly one open file description) with its
// type, state, name, peer inode, shutdown bits, file status flags, owner and options (SkOptsEntry).
// Where the state comes from: one sock_diag UNIX_DIAG dump of Crest's network namespace (Linux 3.3,
// CONFIG_UNIX_DIAG: inode, peer inode, name, state, type, shutdown, queue lengths, pending connections) taken
// when the first socket is seen, while the tree is frozen; the options with getsockopt(2) on a duplicate taken
// with pidfd_getfd (Linux 5.6), which reads without changing anything in the task.
// What a restore can rebuild, and so what is dumped:
//   - a socket that is neither bound nor connected (a dgram socket used with sendto, a fresh one);
//   - a socket connected to a peer outside the tree (a logger's socket, bound to a path or an abstract name),
//     allowed with --ext-unix-sk (all of them) or --ext-unix-sk=INO / --external unix[INO] (that socket): the
//     peer gets an entry of its own with uflags EXTERN (type, name; state LISTEN as CRIU writes it) and the
//     restore connects a new socket to that name. CRIU allows dgram peers only; Crest reconnects stream and
//     seqpacket ones too (the peer's name is its listener's, which the restore connects to again);
//   - both ends of a connection inside the tree (a socketpair, or a client and the connection accepted for it),
//     restored as a socketpair, with the data queued in each end (sk-queues.img, read with MSG_PEEK; ReadQueue);
//   - abstract names (bound, or given by autobind: SO_PASSCRED on an unbound socket) on any of these, bound again;
//   - a listening socket bound to a path or an abstract name, with no connection waiting in its backlog.
// Everything else is refused by name at dump: data queued in a socket by a sender outside the tree, descriptors in
// flight (SCM_RIGHTS), relative or deleted paths, connected sockets bound to a path of their own, connections
// accepted from a client outside the tree, connections whose peer is gone, listeners with connections waiting.
using System.Text;
using Crest.Diagnostics;
using Crest.Engine.Dump;
using Crest.Images.Protos;
using Crest.Kernel;
using Crest.Kernel.Files;
using Crest.Kernel.Interop;
using Crest.Kernel.Netlink;
using Crest.Kernel.Sockets;

namespace Crest.Engine.Files;

internal sealed class UnixSockets(UnixSocketPolicy policy)
{
    /// <summary>CRIU's unix_uflags: the entry describes a socket outside the tree (a peer to connect to).</summary>
    public const uint UflagExtern = 0x1;

    private const uint O_CLOEXEC = 0x80000;

    private Dictionary<uint, UnixSocketInfo>? _kernel;
    private readonly Dictionary<uint, (int Pid, int Fd, UnixSkEntry Entry)> _dumped = [];

    /// <summary>Whether the readlink target of an fd names a socket; its inode in <paramref name="inode"/>.</summary>
    public static bool IsSocket(string target, out uint inode)
    {
        inode = 0;
        return target.StartsWith("socket:[", StringComparison.Ordinal) && target.EndsWith(']')
            && uint.TryParse(target.AsSpan(8, target.Length - 9), System.Globalization.NumberStyles.None,
                System.Globalization.CultureInfo.InvariantCulture, out inode);
    }

    /// <summary>CRIU's --external id of a unix socket: <c>unix[INO]</c>, inode in decimal.</summary>
    public static string ExternalId(uint inode) => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"unix[{inode}]");

    /// <summary>
    /// The file id of socket fd <paramref name="fd"/> of <paramref name="pid"/> (inode <paramref name="inode"/>), adding its
    /// entry to <paramref name="table"/> the first time the socket is seen. Sockets of other families are refused.
    /// </summary>
    public uint Add(PidFd pidfd, int fd, uint inode, uint flags, Func<FownEntry> owner, FileTable table, string what)
    {
        int pid = pidfd.Pid;
        if (_dumped.TryGetValue(inode, out var seen)) return seen.Entry.Id;
        using var dup = Duplicate(pidfd, fd, what);
        int family = Option(dup, Libc.SO_DOMAIN, what);
        if (family != Libc.AF_UNIX)
            throw new DumpException($"{what}: unsupported file kind (socket:[{inode}], {FamilyName(family)} socket).");

        _kernel ??= LoadKernelView();
        if (!_kernel.TryGetValue(inode, out var sk))
            throw new DumpException($"{what}: unix socket {inode} is not listed by sock_diag (is it in another network namespace?).");
        string described = Describe(sk);
        if (sk.Kind is not (SocketKind.Stream or SocketKind.Datagram or SocketKind.SeqPacket))
            throw new DumpException($"{what}: {described}: unsupported socket type.");
        if (sk.State is not (SocketState.Close or SocketState.Established or SocketState.Listen))
            throw new DumpException($"{what}: {described}: unsupported state {sk.State}.");
        CheckNameRestorable(sk, what, described);
        if (sk.State == SocketState.Listen && sk.PendingConnections.Length != 0)
            throw new DumpException($"{what}: {described} has {sk.PendingConnections.Length} connections waiting in its backlog; dumping them is not supported yet.");
        if (sk.State == SocketState.Established && sk.PeerInode == 0)
            throw new DumpException($"{what}: {described} is connected to a socket that is closed now; restoring such a half-closed connection is not supported yet.");

        var entry = new UnixSkEntry
        {
            Ino = inode,
            Type = (uint)sk.Kind,
            State = (uint)sk.State,
            Flags = flags & ~O_CLOEXEC,
            Uflags = 0,
            // For a listener the kernel reports the backlog limit as the second queue length.
            Backlog = sk.State == SocketState.Listen ? sk.SendQueue : 0,
            Peer = sk.PeerInode,
            Fown = owner(),
            Opts = ReadOptions(dup, what),
            Name = Google.Protobuf.ByteString.CopyFrom(sk.Name ?? []),
            Shutdown = (SkShutdown)(sk.Shutdown & 3),
        };
        if (sk.Name is { Length: > 0 } name && name[0] != 0)
        {
            var st = RegularFiles.TryStat(PathOf(name));
            if (st is { } s) entry.FilePerms = new FilePermsEntry { Mode = s.Mode, Uid = s.Uid, Gid = s.Gid };
        }
        uint id = table.Add(entry);
        _dumped[inode] = (pid, fd, entry);
        Log.Debug($"{pid}: dump: fd {fd}: {described}, file id {id}");
        return id;
    }

    /// <summary>
    /// Once the whole tree is seen: each connection either has its peer in the tree, or goes to a socket outside that
    /// --ext-unix-sk allows and that has a name to connect to again (which gets an EXTERN entry of its own).
    /// </summary>
    public void Finish(FileTable table, ExternalFiles externalIds)
    {
        var external = new Dictionary<uint, UnixSkEntry>();
        foreach (var (inode, (pid, fd, entry)) in _dumped.OrderBy(d => d.Key))
        {
            string what = $"task {pid} fd {fd}";
            var sk = _kernel![inode];
            if (entry.Peer == 0)
            {
                if (sk.State != SocketState.Listen) RefuseQueued(sk, what);
                continue;
            }
            if (_dumped.TryGetValue(entry.Peer, out var peer))
            {
                // Inside the tree: both ends each other's peer (a socketpair, or a connection and the one accepted for
                // it) is what the restore rebuilds, as a socketpair, with the data queued in each end (sent again from
                // the other end). A dgram socket connected to a bound one that is not connected back is not.
                if (peer.Entry.Peer != inode)
                    throw new DumpException($"{what}: {Describe(sk)} is connected to {Describe(_kernel[entry.Peer])} in the tree, which is not connected back; " +
                        "only connections whose ends are each other's peer are restored inside the tree yet.");
                ReadQueue(pid, fd, entry, sk, table, what);
                continue;
            }
            RefuseQueued(sk, what);
            if (!_kernel.TryGetValue(entry.Peer, out var outside))
                throw new DumpException($"{what}: {Describe(sk)}: its peer {entry.Peer} is not listed by sock_diag.");
            if (!policy.Allows(inode, entry.Peer) && !externalIds.Contains(ExternalId(inode)))
                throw new DumpException($"{what}: {Describe(sk)} is connected to {Describe(outside)} outside the dumped tree; " +
                    $"allow it with --ext-unix-sk (or --ext-unix-sk={inode}), and the restore connects a new socket to {outside.DisplayName ?? "its name"}.");
            if (sk.Kind != SocketKind.Datagram && sk.Name is { Length: > 0 } && IsAccepted(sk))
                throw new DumpException($"{what}: {Describe(sk)} is a connection accepted from {Describe(outside)} outside the dumped tree; " +
                    "a restore cannot make that client connect again.");
            if (outside.Name is not { Length: > 0 })
                throw new DumpException($"{what}: {Describe(sk)} is connected to {Describe(outside)} outside the dumped tree, which has no name: " +
                    "a restore cannot connect to it again.");
            if (!external.ContainsKey(entry.Peer))
            {
                var ext = new UnixSkEntry
                {
                    Ino = entry.Peer,
                    Type = (uint)outside.Kind,
                    State = (uint)SocketState.Listen,
                    Flags = 0,
                    Uflags = UflagExtern,
                    Backlog = 0,
                    Peer = 0,
                    Fown = new FownEntry { Uid = 0, Euid = 0, Signum = 0, PidType = 0, Pid = 0 },
                    Opts = new SkOptsEntry { SoSndbuf = 0, SoRcvbuf = 0, SoSndTmoSec = 0, SoSndTmoUsec = 0, SoRcvTmoSec = 0, SoRcvTmoUsec = 0 },
                    Name = Google.Protobuf.ByteString.CopyFrom(outside.Name),
                };
                table.Add(ext);
                external[entry.Peer] = ext;
            }
            Log.Info($"{pid}: dump: fd {fd}: {Describe(sk)} is connected to the external {Describe(outside)}");
        }
    }

    /// <summary>Data queued in a socket that nothing in the restored tree can send again (its sender is outside, or any).</summary>
    private static void RefuseQueued(UnixSocketInfo sk, string what)
    {
        if (sk.ReceiveQueue != 0)
            throw new DumpException($"{what}: {Describe(sk)} has {sk.ReceiveQueue} bytes queued to read from outside the tree; dumping them is not supported yet.");
    }

    private const int MaxPackets = 1 << 20;
    private byte[]? _peekBuffer;

    /// <summary>
    /// The data queued in a socket of a socketpair (sk-queues.img: one SkPacketEntry per datagram or chunk, id_for the
    /// socket's file id, then the bytes), read with MSG_PEEK from a duplicate so that the task keeps it. SO_PEEK_OFF
    /// (Linux 4.x for unix sockets) moves each peek past the previous one; the task's value is put back.
    /// </summary>
    private void ReadQueue(int pid, int fd, UnixSkEntry entry, UnixSocketInfo sk, FileTable table, string what)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        int packets = 0;
        long bytes = 0;
        try
        {
            using var pidfd = PidFd.Open(pid);
            using var dup = pidfd.GetFd(fd);
            int peekOffset = KernelSocket.GetOptionInt32(dup, Libc.SOL_SOCKET, Libc.SO_PEEK_OFF);
            KernelSocket.SetOptionInt32(dup, Libc.SOL_SOCKET, Libc.SO_PEEK_OFF, 0);
            try
            {
                _peekBuffer ??= new byte[4 << 20];
                for (; packets < MaxPackets; packets++)
                {
                    ReceivedMessage message;
                    try
                    {
                        message = ScmRights.Receive(dup, _peekBuffer, flags: Libc.MSG_PEEK | Libc.MSG_DONTWAIT);
                    }
                    catch (KernelException e) when (e.Errno.Value == Errno.EAGAIN)
                    {
                        break;
                    }
                    if (message.Descriptors.Length != 0)
                    {
                        foreach (var passed in message.Descriptors) passed.Dispose();
                        throw new DumpException($"{what}: {Describe(sk)} has file descriptors in flight (SCM_RIGHTS); dumping them is not supported yet.");
                    }
                    if (message.DataTruncated)
                        throw new DumpException($"{what}: {Describe(sk)} holds a datagram larger than {_peekBuffer.Length} bytes.");
                    if (message.DataLength == 0 && sk.Kind != SocketKind.Datagram) break; // the peer shut down its sending side
                    table.SocketQueues.Add((new SkPacketEntry { IdFor = entry.Id, Length = (uint)message.DataLength }, _peekBuffer.AsSpan(0, message.DataLength).ToArray()));
                    bytes += message.DataLength;
                }
                if (packets == MaxPackets)
                    throw new DumpException($"{what}: {Describe(sk)} has more than {MaxPackets} packets queued.");
            }
            finally
            {
                KernelSocket.SetOptionInt32(dup, Libc.SOL_SOCKET, Libc.SO_PEEK_OFF, peekOffset);
            }
        }
        catch (KernelException e)
        {
            throw new DumpException($"{what}: cannot read the data queued in {Describe(sk)}: {e.Message}.", e);
        }
        if (packets > 0)
            Log.Debug($"{pid}: dump: fd {fd}: {packets} packets, {bytes} bytes queued in unix socket {sk.Inode}, read in {System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalMilliseconds:F2} ms");
    }

    /// <summary>Names a restore cannot bind again are refused: relative paths, and paths whose socket file is gone.</summary>
    private void CheckNameRestorable(UnixSocketInfo sk, string what, string described)
    {
        if (sk.Name is not { Length: > 0 } name) return;
        if (name[0] == 0) return; // abstract (also what autobind gives): bound again as it is
        if (sk.State == SocketState.Established)
        {
            // An accepted connection carries its listener's name and file (UNIX_DIAG_NAME and _VFS): kept as a name, never
            // bound. A client bound to a path before connecting has a file of its own: not supported.
            if (sk.Kind != SocketKind.Datagram && IsAccepted(sk)) return;
            throw new DumpException($"{what}: {described}: a connected socket bound to a path of its own (or accepted from a listener that is closed now) is not supported yet.");
        }
        string path = PathOf(name);
        if (!path.StartsWith('/'))
            throw new DumpException($"{what}: {described}: a relative socket path is not supported yet.");
        var st = RegularFiles.TryStat(path);
        if (st is not { } s || s.Inode != sk.VfsInode || s.Device != sk.VfsStatDevice)
            throw new DumpException($"{what}: {described}: the socket file {path} was removed or replaced; restoring it is not supported yet.");
    }

    /// <summary>Whether a connected stream socket with a name got it from a listener (accept) rather than from bind.
    /// The kernel gives an accepted socket its listener's address (and file): a listener with that name must exist.</summary>
    private bool IsAccepted(UnixSocketInfo sk) =>
        _kernel!.Values.Any(l => l.State == SocketState.Listen && l.Name is { } n && n.AsSpan().SequenceEqual(sk.Name)
            && l.VfsInode == sk.VfsInode);

    private static string PathOf(byte[] name) => Encoding.UTF8.GetString(name).TrimEnd('\0');

    private static string Describe(UnixSocketInfo sk)
    {
        string kind = sk.Kind switch
        {
            SocketKind.Stream => "stream",
            SocketKind.Datagram => "dgram",
            SocketKind.SeqPacket => "seqpacket",
            _ => $"type {(int)sk.Kind}",
        };
        string name = sk.DisplayName is { } n ? $" {n}" : "";
        return $"unix {kind} socket {sk.Inode}{name}";
    }

    private static Dictionary<uint, UnixSocketInfo> LoadKernelView()
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            var all = SockDiag.DumpUnix();
            var byInode = new Dictionary<uint, UnixSocketInfo>(all.Count);
            foreach (var sk in all) byInode[sk.Inode] = sk;
            Log.Debug($"dump: sock_diag listed {all.Count} unix sockets in {System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalMilliseconds:F2} ms");
            return byInode;
        }
        catch (KernelException e)
        {
            throw new DumpException($"Cannot list unix sockets with sock_diag: {e.Message}.", e);
        }
    }

    private static FileDescriptor Duplicate(PidFd pidfd, int fd, string what)
    {
        try
        {
            return pidfd.GetFd(fd);
        }
        catch (KernelException e)
        {
            throw new DumpException($"{what}: cannot take a duplicate of the socket: {e.Message}.", e);
        }
    }

    private static int Option(FileDescriptor socket, int name, string what)
    {
        try
        {
            return KernelSocket.GetOptionInt32(socket, Libc.SOL_SOCKET, name);
        }
        catch (KernelException e)
        {
            throw new DumpException($"{what}: {e.Message}.", e);
        }
    }

    /// <summary>The SOL_SOCKET options a restore sets again (CRIU's sk_opts_entry; the unix-relevant ones).</summary>
    private static SkOptsEntry ReadOptions(FileDescriptor socket, string what)
    {
        var (sndSec, sndUsec) = Timeout(socket, Libc.SO_SNDTIMEO, what);
        var (rcvSec, rcvUsec) = Timeout(socket, Libc.SO_RCVTIMEO, what);
        return new SkOptsEntry
        {
            SoSndbuf = (uint)Option(socket, Libc.SO_SNDBUF, what),
            SoRcvbuf = (uint)Option(socket, Libc.SO_RCVBUF, what),
            SoSndTmoSec = sndSec,
            SoSndTmoUsec = sndUsec,
            SoRcvTmoSec = rcvSec,
            SoRcvTmoUsec = rcvUsec,
            SoPriority = (uint)Option(socket, Libc.SO_PRIORITY, what),
            SoRcvlowat = (uint)Option(socket, Libc.SO_RCVLOWAT, what),
            SoMark = (uint)Option(socket, Libc.SO_MARK, what),
            SoPasscred = Option(socket, Libc.SO_PASSCRED, what) != 0,
            SoPasssec = Option(socket, Libc.SO_PASSSEC, what) != 0,
        };
    }

    /// <summary>SO_SNDTIMEO / SO_RCVTIMEO: a struct timeval (seconds, microseconds).</summary>
    private static (ulong Seconds, ulong Microseconds) Timeout(FileDescriptor socket, int name, string what)
    {
        Span<byte> tv = stackalloc byte[16];
        try
        {
            int n = KernelSocket.GetOption(socket, Libc.SOL_SOCKET, name, tv);
            if (n != 16) throw new DumpException($"{what}: getsockopt({name}) returned {n} bytes, expected a 16-byte timeval.");
        }
        catch (KernelException e)
        {
            throw new DumpException($"{what}: {e.Message}.", e);
        }
        return ((ulong)BitConverter.ToInt64(tv), (ulong)BitConverter.ToInt64(tv[8..]));
    }

    private static string FamilyName(int family) => family switch
    {
        Libc.AF_INET => "AF_INET",
        Libc.AF_INET6 => "AF_INET6",
        Libc.AF_NETLINK => "AF_NETLINK",
        Libc.AF_PACKET => "AF_PACKET",
        _ => $"family {family}",
    };
}

/// <summary>
/// Which unix sockets connected to a peer outside the tree may be dumped: all of them (bare --ext-unix-sk), or those
/// named by inode (--ext-unix-sk=INO[,INO], --external unix[INO]; the inode of the tree's socket or of its peer).
/// </summary>
public sealed record UnixSocketPolicy(bool AllowAll, IReadOnlySet<uint> Inodes)
{
    public static readonly UnixSocketPolicy None = new(false, new HashSet<uint>());

    public bool Allows(uint inode, uint peer) => AllowAll || Inodes.Contains(inode) || Inodes.Contains(peer);
}
