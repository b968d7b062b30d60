// The dump's copy of the image-proxy's TCP connection, written with sendmsg(2) straight from the caller's memory:
// a frame header and its data go out in one call (two iovecs), so that a page image leaves the dump's read buffer
// for the socket with no copy in between. The descriptor shares O_NONBLOCK with the proxy's copy (.NET sets it for
// its async I/O), so a full socket buffer is EAGAIN, waited for in poll(2). Writes are synchronous, also when
// called as WriteAsync (a dump writes from one thread; the caller blocks as it would on a blocking socket).
// Owns the descriptor: Dispose closes this copy only; the proxy's keeps the connection up. A write stuck on a peer
// that reads nothing more is stopped with Abort.
using Crest.Kernel;
using Crest.Kernel.Files;
using Crest.Kernel.Sockets;
using Crest.Transport.Streams;

namespace Crest.Transport.Remote;

internal sealed class LentSocketStream(int descriptor) : WriteOnlyStream, IGatherStream
{
    private readonly FileDescriptor _socket = FileDescriptor.Own(descriptor);
    private volatile string? _aborted;

    /// <summary>Every later write fails with an IOException that says <paramref name="why"/>, and one waiting for room gives up
    /// within a quarter second. Thread-safe.</summary>
    public void Abort(string why) => _aborted ??= why;

    public override void Write(ReadOnlySpan<byte> buffer) => Write(buffer, []);

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Write(buffer.Span);
        return ValueTask.CompletedTask;
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <summary>Both pieces, in order, with as few sendmsg(2) calls as the socket buffer allows (one, mostly).</summary>
    public void Write(ReadOnlySpan<byte> first, ReadOnlySpan<byte> second)
    {
        ObjectDisposedException.ThrowIf(_socket.IsClosed, this);
        if (_aborted is { } why) throw new IOException(why);
        int total = first.Length + second.Length, done = 0;
        try
        {
            while (done < total)
            {
                int n = done < first.Length
                    ? ScmRights.TrySend(_socket, [], first[done..], second)
                    : ScmRights.TrySend(_socket, [], second[(done - first.Length)..]);
                if (n >= 0)
                {
                    done += n;
                    continue;
                }
                while (!SocketWaits.UntilWritable(_socket, 250))
                    if (_aborted is { } stopped) throw new IOException(stopped);
            }
        }
        catch (KernelException e)
        {
            throw new IOException($"{e.Message} (the lent connection to the image-cache)", e);
        }
    }

    protected override void Dispose(bool disposing)
    {
        _socket.Dispose();
        base.Dispose(disposing);
    }
}
