// poll(2) on one socket whose descriptor is non-blocking (O_NONBLOCK is shared by every copy, and .NET sets it for its
// async I/O): what a sendmsg(2) that found no room (EAGAIN) waits in.
using Crest.Kernel.Files;

namespace Crest.Transport.Remote;

internal static class SocketWaits
{
    /// <summary>Waits until <paramref name="socket"/> has room to write, or an error or hang-up is pending on it (the
    /// next call reports that); false when <paramref name="timeoutMs"/> (-1: no limit) passed or a signal interrupted.</summary>
    public static bool UntilWritable(FileDescriptor socket, int timeoutMs)
    {
        Span<short> revents = stackalloc short[1];
        return Poll.Wait([socket.Fd], Poll.Out, revents, timeoutMs) > 0;
    }
}
