// The proxy's TCP connection handed to a dump over their unix socket: one frame whose first byte carries the
// descriptor (SCM_RIGHTS, unix(7)); the dump receives it close-on-exec (MSG_CMSG_CLOEXEC). The descriptor must
// be read with recvmsg(2) and a control buffer: a plain read of those bytes would make the kernel drop it. Both
// sockets are .NET's and non-blocking, so a send or receive that finds the socket not ready waits in poll(2)
// (send) or in a zero-byte ReceiveAsync (receive, which can be cancelled while the dump waits for its turn).
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Crest.Kernel;
using Crest.Kernel.Files;
using Crest.Kernel.Sockets;
using Crest.Transport.Interop;
using Crest.Transport.Streams;

namespace Crest.Transport.Remote;

internal static class DescriptorPassing
{
    /// <summary>Sends <paramref name="frame"/> on <paramref name="unix"/> with a copy of <paramref name="descriptor"/> attached to its first byte.</summary>
    public static void Send(Socket unix, ReadOnlySpan<byte> frame, SafeHandle descriptor)
    {
        bool unixHeld = false, held = false;
        unix.SafeHandle.DangerousAddRef(ref unixHeld);
        try
        {
            descriptor.DangerousAddRef(ref held);
            using var socket = FileDescriptor.Borrow((int)unix.SafeHandle.DangerousGetHandle());
            ReadOnlySpan<int> attached = [(int)descriptor.DangerousGetHandle()];
            int sent = 0;
            while (sent < frame.Length)
            {
                int n = ScmRights.TrySend(socket, sent == 0 ? attached : [], frame[sent..]);
                if (n >= 0) sent += n;
                else SocketWaits.UntilWritable(socket, -1);
            }
        }
        catch (KernelException e)
        {
            throw new IOException(e.Message, e);
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
    private static int ReceiveNow(Socket unix, Span<byte> into, Action<int> received)
    {
        bool held = false;
        unix.SafeHandle.DangerousAddRef(ref held);
        try
        {
            using var socket = FileDescriptor.Borrow((int)unix.SafeHandle.DangerousGetHandle());
            ReceivedMessage? message;
            try
            {
                message = ScmRights.TryReceive(socket, into, maxDescriptors: 1);
            }
            catch (KernelException e) when (e.Errno.Value == Errno.EMSGSIZE)
            {
                throw new StreamProtocolException("the image-proxy sent more descriptors than one (the kernel dropped the rest)");
            }
            catch (KernelException e)
            {
                throw new IOException(e.Message, e);
            }
            if (message is null) return -1;
            if (message.Descriptors.Length > 1)
            {
                foreach (FileDescriptor extra in message.Descriptors) extra.Dispose();
                throw new StreamProtocolException("the image-proxy sent more descriptors than one");
            }
            if (message.Descriptors.Length == 1) received(message.Descriptors[0].Detach());
            return message.DataLength;
        }
        finally
        {
            if (held) unix.SafeHandle.DangerousRelease();
        }
    }
}
