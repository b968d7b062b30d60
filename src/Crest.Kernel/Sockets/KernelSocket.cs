// Sockets as plain file descriptors, below System.Net.Sockets: socket(2), socketpair(2), bind(2),
// connect(2), listen(2), accept4(2), getsockopt(2)/setsockopt(2), getsockname(2)/getpeername(2),
// shutdown(2). Crest needs the raw descriptor to hand sockets to tasks (SCM_RIGHTS), to inspect
// sockets taken from tasks (pidfd_getfd) and to talk netlink. Every socket made here is
// close-on-exec and owned by the returned FileDescriptor.
using Crest.Kernel.Files;
using Crest.Kernel.Interop;

namespace Crest.Kernel.Sockets;

public static class KernelSocket
{
    /// <summary>socket(2).</summary>
    public static FileDescriptor Create(SocketFamily family, SocketKind kind, int protocol = 0, bool nonBlocking = false)
    {
        int fd = Libc.socket((int)family, (int)kind | Libc.SOCK_CLOEXEC | (nonBlocking ? Libc.SOCK_NONBLOCK : 0), protocol);
        if (fd < 0) throw new KernelException("socket", Errno.Last, $"{family} {kind} protocol {protocol}");
        return FileDescriptor.Own(fd);
    }

    /// <summary>socketpair(2) of AF_UNIX sockets.</summary>
    public static unsafe (FileDescriptor First, FileDescriptor Second) CreatePair(SocketKind kind, bool nonBlocking = false)
    {
        int* sv = stackalloc int[2];
        if (Libc.socketpair(Libc.AF_UNIX, (int)kind | Libc.SOCK_CLOEXEC | (nonBlocking ? Libc.SOCK_NONBLOCK : 0), 0, sv) != 0)
            throw new KernelException("socketpair", Errno.Last, $"AF_UNIX {kind}");
        return (FileDescriptor.Own(sv[0]), FileDescriptor.Own(sv[1]));
    }

    /// <summary>bind(2) to an address in kernel layout (see SockAddr).</summary>
    public static unsafe void Bind(FileDescriptor socket, ReadOnlySpan<byte> address)
    {
        using var fd = socket.Use();
        fixed (byte* a = address)
        {
            if (Libc.bind(fd.Fd, a, (uint)address.Length) != 0)
                throw new KernelException("bind", Errno.Last, $"fd {fd.Fd}");
        }
    }

    /// <summary>connect(2). Not retried on EINTR: an interrupted connect keeps going in the kernel.</summary>
    public static unsafe void Connect(FileDescriptor socket, ReadOnlySpan<byte> address)
    {
        using var fd = socket.Use();
        fixed (byte* a = address)
        {
            if (Libc.connect(fd.Fd, a, (uint)address.Length) != 0)
                throw new KernelException("connect", Errno.Last, $"fd {fd.Fd}");
        }
    }

    /// <summary>listen(2).</summary>
    public static void Listen(FileDescriptor socket, int backlog)
    {
        using var fd = socket.Use();
        if (Libc.listen(fd.Fd, backlog) != 0) throw new KernelException("listen", Errno.Last, $"fd {fd.Fd}");
    }

    /// <summary>accept4(2): the new connection, close-on-exec, owned by the caller.</summary>
    public static unsafe FileDescriptor Accept(FileDescriptor socket, bool nonBlocking = false)
    {
        using var fd = socket.Use();
        int c;
        while (FileDescriptor.Interrupted(c = Libc.accept4(fd.Fd, null, null, Libc.SOCK_CLOEXEC | (nonBlocking ? Libc.SOCK_NONBLOCK : 0)))) { }
        if (c < 0) throw new KernelException("accept4", Errno.Last, $"fd {fd.Fd}");
        return FileDescriptor.Own(c);
    }

    /// <summary>getsockname(2): the local address in kernel layout.</summary>
    public static unsafe byte[] GetSockName(FileDescriptor socket)
    {
        using var fd = socket.Use();
        byte* a = stackalloc byte[SockAddr.StorageSize];
        uint len = SockAddr.StorageSize;
        if (Libc.getsockname(fd.Fd, a, &len) != 0) throw new KernelException("getsockname", Errno.Last, $"fd {fd.Fd}");
        return new ReadOnlySpan<byte>(a, (int)Math.Min(len, SockAddr.StorageSize)).ToArray();
    }

    /// <summary>getpeername(2): the peer's address in kernel layout.</summary>
    public static unsafe byte[] GetPeerName(FileDescriptor socket)
    {
        using var fd = socket.Use();
        byte* a = stackalloc byte[SockAddr.StorageSize];
        uint len = SockAddr.StorageSize;
        if (Libc.getpeername(fd.Fd, a, &len) != 0) throw new KernelException("getpeername", Errno.Last, $"fd {fd.Fd}");
        return new ReadOnlySpan<byte>(a, (int)Math.Min(len, SockAddr.StorageSize)).ToArray();
    }

    /// <summary>getsockopt(2) into value; returns the length the kernel wrote.</summary>
    public static unsafe int GetOption(FileDescriptor socket, int level, int name, Span<byte> value)
    {
        using var fd = socket.Use();
        uint len = (uint)value.Length;
        fixed (byte* v = value)
        {
            if (Libc.getsockopt(fd.Fd, level, name, v, &len) != 0)
                throw new KernelException($"getsockopt({level}, {name})", Errno.Last, $"fd {fd.Fd}");
        }
        return (int)len;
    }

    /// <summary>getsockopt(2) of an int option (SO_TYPE, SO_RCVBUF, TCP_NODELAY, ...).</summary>
    public static int GetOptionInt32(FileDescriptor socket, int level, int name)
    {
        Span<byte> v = stackalloc byte[4];
        int len = GetOption(socket, level, name, v);
        if (len != 4) throw new KernelException($"getsockopt({level}, {name})", new Errno(Errno.EINVAL), $"expected 4 bytes, got {len}");
        return BitConverter.ToInt32(v);
    }

    /// <summary>setsockopt(2).</summary>
    public static unsafe void SetOption(FileDescriptor socket, int level, int name, ReadOnlySpan<byte> value)
    {
        using var fd = socket.Use();
        fixed (byte* v = value)
        {
            if (Libc.setsockopt(fd.Fd, level, name, v, (uint)value.Length) != 0)
                throw new KernelException($"setsockopt({level}, {name})", Errno.Last, $"fd {fd.Fd}");
        }
    }

    /// <summary>setsockopt(2) of an int option.</summary>
    public static void SetOptionInt32(FileDescriptor socket, int level, int name, int value) =>
        SetOption(socket, level, name, BitConverter.GetBytes(value));

    /// <summary>send(2) (sendto without an address) with flags such as MSG_DONTWAIT; returns the bytes sent.</summary>
    public static unsafe int Send(FileDescriptor socket, ReadOnlySpan<byte> data, int flags)
    {
        using var fd = socket.Use();
        nint n;
        fixed (byte* p = data)
        {
            while (FileDescriptor.Interrupted(n = Libc.sendto(fd.Fd, p, (nuint)data.Length, flags | Libc.MSG_NOSIGNAL, null, 0))) { }
        }
        if (n < 0) throw new KernelException("send", Errno.Last, $"fd {fd.Fd}, {data.Length} bytes");
        return (int)n;
    }

    /// <summary>shutdown(2): 0 SHUT_RD, 1 SHUT_WR, 2 SHUT_RDWR.</summary>
    public static void Shutdown(FileDescriptor socket, int how)
    {
        using var fd = socket.Use();
        if (Libc.shutdown(fd.Fd, how) != 0) throw new KernelException("shutdown", Errno.Last, $"fd {fd.Fd} how {how}");
    }
}
