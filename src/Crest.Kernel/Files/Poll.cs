// poll(2) over several descriptors, for event loops that serve more than one fd on one thread (the lazy-pages
// daemon). The caller keeps the descriptors open while it waits.
using Crest.Kernel.Interop;

namespace Crest.Kernel.Files;

public static class Poll
{
    public const short In = Libc.POLLIN, Out = Libc.POLLOUT, Error = Libc.POLLERR, HangUp = Libc.POLLHUP;

    /// <summary>Waits up to <paramref name="timeoutMs"/> (-1: no limit) for <paramref name="events"/> on any of
    /// <paramref name="fds"/>; each one's returned events land in <paramref name="revents"/>. Returns how many
    /// have events (0 on timeout; EINTR counts as a timeout).</summary>
    public static unsafe int Wait(ReadOnlySpan<int> fds, short events, Span<short> revents, int timeoutMs)
    {
        if (revents.Length < fds.Length) throw new ArgumentException("revents is shorter than fds", nameof(revents));
        var entries = new pollfd[fds.Length];
        for (int i = 0; i < fds.Length; i++) entries[i] = new pollfd { fd = fds[i], events = events };
        int r;
        fixed (pollfd* p = entries) r = Libc.poll(p, (ulong)entries.Length, timeoutMs);
        if (r < 0)
        {
            var errno = Errno.Last;
            if (errno.Value == Errno.EINTR) r = 0;
            else throw new KernelException("poll", errno, $"{fds.Length} fds");
        }
        for (int i = 0; i < fds.Length; i++) revents[i] = r == 0 ? (short)0 : entries[i].revents;
        return r;
    }
}
