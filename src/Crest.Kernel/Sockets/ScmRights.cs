// Passing file descriptors over unix sockets: sendmsg(2)/recvmsg(2) with an SCM_RIGHTS control
// message (unix(7), cmsg(3)). At most SCM_MAX_FD (253) descriptors per message. The descriptors
// ride with the first byte of data, so a message must carry at least one byte (a stream socket
// sends nothing otherwise). Received descriptors are close-on-exec (MSG_CMSG_CLOEXEC, Linux 2.6.23)
// and owned by the caller. If the control buffer was too small (MSG_CTRUNC) the kernel drops the
// descriptors that did not fit; that is an error here, after closing the ones that arrived.
using Crest.Kernel.Files;
using Crest.Kernel.Interop;

namespace Crest.Kernel.Sockets;

public static class ScmRights
{
    public const int MaxDescriptors = Libc.SCM_MAX_FD;

    /// <summary>Sends data with fds attached; on a stream socket the rest of a partial send follows
    /// without descriptors. The caller keeps its descriptors (the receiver gets duplicates).</summary>
    public static void Send(FileDescriptor socket, ReadOnlySpan<int> fds, ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
            throw new ArgumentException("at least one byte of data must carry the descriptors", nameof(data));
        int n = TrySend(socket, fds, data);
        if (n < 0)
            throw new KernelException("sendmsg(SCM_RIGHTS)", new Errno(Errno.EAGAIN), $"fd {socket.Fd}, {fds.Length} descriptors");
        if (n < data.Length) socket.WriteAll(data[n..]);
    }

    /// <summary>One sendmsg(2) of <paramref name="first"/> then <paramref name="second"/> (two iovecs, no copy), with
    /// <paramref name="fds"/> attached to the first byte when there are any. Does not wait: returns the bytes sent, or -1
    /// when a non-blocking socket has no room (EAGAIN). EINTR is retried.</summary>
    public static unsafe int TrySend(FileDescriptor socket, ReadOnlySpan<int> fds, ReadOnlySpan<byte> first, ReadOnlySpan<byte> second = default)
    {
        if (fds.Length > Libc.SCM_MAX_FD)
            throw new ArgumentException($"at most {Libc.SCM_MAX_FD} descriptors per message, not {fds.Length}", nameof(fds));
        if (!fds.IsEmpty && first.IsEmpty && second.IsEmpty)
            throw new ArgumentException("at least one byte of data must carry the descriptors", nameof(first));

        int controlLength = fds.IsEmpty ? 0 : (int)Libc.CMSG_SPACE((nuint)(fds.Length * sizeof(int)));
        byte* control = stackalloc byte[Math.Max(controlLength, 1)];
        new Span<byte>(control, controlLength).Clear();
        if (!fds.IsEmpty)
        {
            var c = (cmsghdr*)control;
            c->cmsg_len = Libc.CMSG_LEN((nuint)(fds.Length * sizeof(int)));
            c->cmsg_level = Libc.SOL_SOCKET;
            c->cmsg_type = Libc.SCM_RIGHTS;
            fds.CopyTo(new Span<int>(control + Libc.CMSG_ALIGN((nuint)sizeof(cmsghdr)), fds.Length));
        }

        using var fd = socket.Use();
        nint n;
        fixed (byte* a = first)
        fixed (byte* b = second)
        {
            var iov = stackalloc iovec[2];
            int count = 0;
            if (!first.IsEmpty) iov[count++] = new iovec { iov_base = (nint)a, iov_len = (nuint)first.Length };
            if (!second.IsEmpty) iov[count++] = new iovec { iov_base = (nint)b, iov_len = (nuint)second.Length };
            var msg = new msghdr
            {
                msg_iov = iov,
                msg_iovlen = (nuint)count,
                msg_control = controlLength == 0 ? null : control,
                msg_controllen = (nuint)controlLength,
            };
            while (FileDescriptor.Interrupted(n = Libc.sendmsg(fd.Fd, &msg, Libc.MSG_NOSIGNAL))) { }
        }
        if (n >= 0) return (int)n;
        var errno = Errno.Last;
        if (errno.Value == Errno.EAGAIN) return -1;
        throw new KernelException(fds.IsEmpty ? "sendmsg" : "sendmsg(SCM_RIGHTS)", errno, $"fd {fd.Fd}, {fds.Length} descriptors");
    }

    /// <summary>Send for descriptors held as FileDescriptor objects: each is kept open until the
    /// message is on its way.</summary>
    public static void Send(FileDescriptor socket, IReadOnlyList<FileDescriptor> fds, ReadOnlySpan<byte> data)
    {
        Span<int> numbers = stackalloc int[Math.Min(fds.Count, Libc.SCM_MAX_FD + 1)];
        if (fds.Count > Libc.SCM_MAX_FD)
            throw new ArgumentException($"at most {Libc.SCM_MAX_FD} descriptors per message, not {fds.Count}", nameof(fds));
        int held = 0;
        try
        {
            for (; held < fds.Count; held++)
            {
                bool added = false;
                fds[held].DangerousAddRef(ref added);
                numbers[held] = fds[held].Fd;
            }
            Send(socket, numbers, data);
        }
        finally
        {
            for (int i = 0; i < held; i++) fds[i].DangerousRelease();
        }
    }

    /// <summary>One recvmsg(2) into data, with room for at least maxDescriptors descriptors (the
    /// control buffer is rounded up to 8 bytes, so an odd count leaves room for one more).
    /// <paramref name="flags"/> adds MSG_PEEK, MSG_DONTWAIT...: with MSG_DONTWAIT an empty queue throws EAGAIN.</summary>
    public static ReceivedMessage Receive(FileDescriptor socket, Span<byte> data, int maxDescriptors = Libc.SCM_MAX_FD, int flags = 0) =>
        Receive(socket, data, maxDescriptors, flags, nullWhenEmpty: false)!;

    /// <summary>Receive without waiting (MSG_DONTWAIT): null when nothing is queued yet (EAGAIN).</summary>
    public static ReceivedMessage? TryReceive(FileDescriptor socket, Span<byte> data, int maxDescriptors = Libc.SCM_MAX_FD) =>
        Receive(socket, data, maxDescriptors, Libc.MSG_DONTWAIT, nullWhenEmpty: true);

    private static unsafe ReceivedMessage? Receive(FileDescriptor socket, Span<byte> data, int maxDescriptors, int flags, bool nullWhenEmpty)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxDescriptors);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxDescriptors, Libc.SCM_MAX_FD);
        int controlLength = (int)Libc.CMSG_SPACE((nuint)(Math.Max(maxDescriptors, 1) * sizeof(int)));
        byte* control = stackalloc byte[controlLength];
        new Span<byte>(control, controlLength).Clear();

        using var fd = socket.Use();
        nint n;
        msghdr msg;
        fixed (byte* p = data)
        {
            var iov = new iovec { iov_base = (nint)p, iov_len = (nuint)data.Length };
            msg = new msghdr { msg_iov = &iov, msg_iovlen = 1, msg_control = control, msg_controllen = (nuint)controlLength };
            while (FileDescriptor.Interrupted(n = Libc.recvmsg(fd.Fd, &msg, Libc.MSG_CMSG_CLOEXEC | flags))) { }
        }
        if (n < 0)
        {
            var errno = Errno.Last;
            if (nullWhenEmpty && errno.Value == Errno.EAGAIN) return null;
            throw new KernelException("recvmsg(SCM_RIGHTS)", errno, $"fd {fd.Fd}");
        }

        var received = new List<FileDescriptor>();
        // Walk the control messages the kernel wrote, trusting no length beyond msg_controllen.
        nuint header = Libc.CMSG_ALIGN((nuint)sizeof(cmsghdr));
        nuint offset = 0;
        nuint total = Math.Min(msg.msg_controllen, (nuint)controlLength);
        while (offset + (nuint)sizeof(cmsghdr) <= total)
        {
            var c = (cmsghdr*)(control + offset);
            if (c->cmsg_len < header || c->cmsg_len > total - offset) break;
            if (c->cmsg_level == Libc.SOL_SOCKET && c->cmsg_type == Libc.SCM_RIGHTS)
            {
                int count = (int)((c->cmsg_len - header) / sizeof(int));
                int* fds = (int*)(control + offset + header);
                for (int i = 0; i < count; i++) received.Add(FileDescriptor.Own(fds[i]));
            }
            offset += Libc.CMSG_ALIGN(c->cmsg_len);
        }

        if ((msg.msg_flags & Libc.MSG_CTRUNC) != 0)
        {
            foreach (FileDescriptor r in received) r.Dispose();
            throw new KernelException("recvmsg(SCM_RIGHTS)", new Errno(Errno.EMSGSIZE),
                $"fd {fd.Fd}: more descriptors arrived than the {maxDescriptors} expected; the extra ones were dropped");
        }
        return new ReceivedMessage((int)n, received.ToArray(), (msg.msg_flags & Libc.MSG_TRUNC) != 0);
    }
}
