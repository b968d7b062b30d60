// The proxy's TCP connection handed to a dump over their unix socket: one frame whose first byte carries the
// descriptor (SCM_RIGHTS, unix(7)); the dump receives it close-on-exec (MSG_CMSG_CLOEXEC). The descriptor must
// be read with recvmsg(2) and a control buffer: a plain read of those bytes would make the kernel drop it. Both
// sockets are .NET's and non-blocking, so a send or receive that finds the socket not ready waits in poll(2)
// (send) or in a zero-byte ReceiveAsync (receive, which can be cancelled while the dump waits for its turn).
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Crest.Transport.Interop;
using Crest.Transport.Streams;

namespace Crest.Transport.Remote;

internal static class DescriptorPassing
{
    /// <summary>Sends <paramref name="frame"/> on <paramref name="unix"/> with a copy of <paramref name="descriptor"/> attached to its first byte.</summary>
    public static unsafe void Send(Socket unix, ReadOnlySpan<byte> frame, SafeHandle descriptor)
    {
        bool unixHeld = false, held = false;
        unix.SafeHandle.DangerousAddRef(ref unixHeld);
        try
        {
            descriptor.DangerousAddRef(ref held);
            int fd = (int)unix.SafeHandle.DangerousGetHandle();
            byte* control = stackalloc byte[Libc.OneDescriptorControlSize];
            new Span<byte>(control, Libc.OneDescriptorControlSize).Clear();
            var c = (cmsghdr*)control;
            c->cmsg_len = (nuint)(sizeof(cmsghdr) + sizeof(int));
            c->cmsg_level = Libc.SOL_SOCKET;
            c->cmsg_type = Libc.SCM_RIGHTS;
            *(int*)(control + sizeof(cmsghdr)) = (int)descriptor.DangerousGetHandle();
            int sent = 0;
            fixed (byte* p = frame)
            {
                while (sent < frame.Length)
                {
                    var iov = new iovec { iov_base = (nint)(p + sent), iov_len = (nuint)(frame.Length - sent) };
                    var msg = new msghdr { msg_iov = &iov, msg_iovlen = 1 };
                    if (sent == 0)
                    {
                        msg.msg_control = control;
                        msg.msg_controllen = Libc.OneDescriptorControlSize;
                    }
                    nint n = Libc.sendmsg(fd, &msg, Libc.MSG_NOSIGNAL);
                    if (n >= 0)
                    {
                        sent += (int)n;
                        continue;
                    }
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == Libc.EINTR) continue;
                    if (errno != Libc.EAGAIN) throw Libc.SocketFailure($"sendmsg(fd {fd}, SCM_RIGHTS)", errno);
                    Libc.WaitFor(fd, Libc.POLLOUT, $"fd {fd}");
                }
            }
        }
        finally
        {
            if (held) descriptor.DangerousRelease();
            if (unixHeld) unix.SafeHandle.DangerousRelease();
        }
    }

    /// <summary>
    /// Reads one whole frame from <paramref name="unix"/> and the descriptor that came with it (-1 when none did; the
    /// caller owns it). The frame is bounded by the largest control frame (an Error with its text).
    /// </summary>
    public static async Task<(byte[] Frame, int Descriptor)> ReceiveFrameAsync(Socket unix, CancellationToken cancel)
    {
        var header = new byte[FrameFormat.HeaderSize];
        int descriptor = -1;
        try
        {
            await ReceiveExactlyAsync(unix, header, d => descriptor = d, cancel).ConfigureAwait(false);
            ulong length = BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(8));
            if (BinaryPrimitives.ReadUInt32LittleEndian(header) != FrameFormat.Magic || length > 8192)
                throw new StreamProtocolException($"the image-proxy sent a frame that is no answer to Borrow (magic 0x{BinaryPrimitives.ReadUInt32LittleEndian(header):x8}, {length} bytes)");
            var frame = new byte[FrameFormat.HeaderSize + (int)length];
            header.CopyTo(frame, 0);
            await ReceiveExactlyAsync(unix, frame.AsMemory(FrameFormat.HeaderSize), d => descriptor = descriptor < 0 ? d : Close(d), cancel).ConfigureAwait(false);
            return (frame, descriptor);
        }
        catch
        {
            if (descriptor >= 0) Libc.close(descriptor);
            throw;
        }
    }

    private static int Close(int descriptor)
    {
        Libc.close(descriptor);
        throw new StreamProtocolException("the image-proxy sent two descriptors with one frame");
    }

    private static async Task ReceiveExactlyAsync(Socket unix, Memory<byte> into, Action<int> received, CancellationToken cancel)
    {
        int got = 0;
        while (got < into.Length)
        {
            int n = ReceiveNow(unix, into.Span[got..], received);
            if (n == 0) throw new IOException("the image-proxy closed the connection");
            if (n > 0)
            {
                got += n;
                continue;
            }
            // Nothing there yet: a zero-byte receive returns once there is.
            await unix.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, cancel).ConfigureAwait(false);
        }
    }

    /// <summary>One recvmsg(2) without waiting: the bytes read, 0 at the end of the stream, -1 when none are there yet.</summary>
    private static unsafe int ReceiveNow(Socket unix, Span<byte> into, Action<int> received)
    {
        bool held = false;
        unix.SafeHandle.DangerousAddRef(ref held);
        try
        {
            int fd = (int)unix.SafeHandle.DangerousGetHandle();
            byte* control = stackalloc byte[Libc.OneDescriptorControlSize];
            new Span<byte>(control, Libc.OneDescriptorControlSize).Clear();
            nint n;
            msghdr msg;
            fixed (byte* p = into)
            {
                var iov = new iovec { iov_base = (nint)p, iov_len = (nuint)into.Length };
                msg = new msghdr { msg_iov = &iov, msg_iovlen = 1, msg_control = control, msg_controllen = Libc.OneDescriptorControlSize };
                while ((n = Libc.recvmsg(fd, &msg, Libc.MSG_CMSG_CLOEXEC | Libc.MSG_DONTWAIT)) < 0 && Marshal.GetLastPInvokeError() == Libc.EINTR) { }
            }
            if (n < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno == Libc.EAGAIN) return -1;
                throw Libc.SocketFailure($"recvmsg(fd {fd})", errno);
            }
            var c = (cmsghdr*)control;
            if (msg.msg_controllen >= (nuint)sizeof(cmsghdr) && c->cmsg_level == Libc.SOL_SOCKET && c->cmsg_type == Libc.SCM_RIGHTS
                && c->cmsg_len == (nuint)(sizeof(cmsghdr) + sizeof(int)))
                received(*(int*)(control + sizeof(cmsghdr)));
            if ((msg.msg_flags & Libc.MSG_CTRUNC) != 0)
                throw new StreamProtocolException("the image-proxy sent more descriptors than one (the kernel dropped the rest)");
            return (int)n;
        }
        finally
        {
            if (held) unix.SafeHandle.DangerousRelease();
        }
    }
}
