// TCP repair mode (TCP_REPAIR, Linux 3.5; needs CAP_NET_ADMIN), and repair of a half-closed
// connection (TCP_REPAIR accepted outside ESTABLISHED: what CRIU calls tcp_half_closed). The
// half-closed probe makes a real loopback connection; sockets closed in repair mode go away silently.
using Nr = Crest.Kernel.Arch.X64.SyscallNumbers;
using static Crest.Kernel.Features.FeatureInterop;

namespace Crest.Kernel.Features;

public static unsafe partial class FeatureProbes
{
    private const int AF_INET = 2, SOCK_STREAM = 1, SOCK_CLOEXEC = 0x80000;
    private const int SOL_SOCKET = 1, SO_SNDTIMEO = 21, SOL_TCP = 6, TCP_REPAIR = 19, SHUT_WR = 1;

    /// <summary>setsockopt(TCP_REPAIR, 1) on a fresh TCP socket.</summary>
    public static ProbeResult ProbeTcpRepair()
    {
        long sk = Sys(Nr.socket, out var errno, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (sk == -1) return ProbeResult.Missing($"untested: socket(AF_INET, SOCK_STREAM): {errno}", errno);
        try
        {
            return SetRepair(sk, out errno) ? ProbeResult.Ok() : ProbeResult.Failed("setsockopt(TCP_REPAIR)", errno);
        }
        finally
        {
            Close(sk);
        }
    }

    /// <summary>Connect over loopback, shut the sending side, and put the half-closed socket in repair mode.</summary>
    public static ProbeResult ProbeTcpHalfClosed()
    {
        long listener = -1, client = -1;
        try
        {
            listener = Sys(Nr.socket, out var errno, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (listener == -1) return ProbeResult.Missing($"untested: socket: {errno}", errno);
            // struct sockaddr_in { u16 family; be16 port; be32 addr; u8 zero[8]; }: 127.0.0.1, port 0.
            ulong* address = stackalloc ulong[2] { AF_INET | (0x0100007FUL << 32), 0 };
            int length = 16;
            if (Sys(Nr.bind, out errno, listener, (long)address, 16) == -1) return ProbeResult.Missing($"untested: bind(127.0.0.1): {errno}", errno);
            if (Sys(NR_listen, out errno, listener, 1) == -1) return ProbeResult.Missing($"untested: listen: {errno}", errno);
            if (Sys(NR_getsockname, out errno, listener, (long)address, (long)&length) == -1)
                return ProbeResult.Missing($"untested: getsockname: {errno}", errno);

            client = Sys(Nr.socket, out errno, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (client == -1) return ProbeResult.Missing($"untested: socket: {errno}", errno);
            // Bound the connect: struct timeval { 2 s, 0 }.
            long* timeout = stackalloc long[2] { 2, 0 };
            Sys(NR_setsockopt, out _, client, SOL_SOCKET, SO_SNDTIMEO, (long)timeout, 16);
            if (Sys(Nr.connect, out errno, client, (long)address, 16) == -1)
                return ProbeResult.Missing($"untested: connect(127.0.0.1): {errno}", errno);
            if (Sys(NR_shutdown, out errno, client, SHUT_WR) == -1)
                return ProbeResult.Missing($"untested: shutdown(SHUT_WR): {errno}", errno);
            return SetRepair(client, out errno)
                ? ProbeResult.Ok("TCP_REPAIR accepted on a connection after shutdown(SHUT_WR)")
                : ProbeResult.Failed("setsockopt(TCP_REPAIR) on a half-closed socket", errno);
        }
        finally
        {
            Close(client);
            Close(listener);
        }
    }

    private static bool SetRepair(long sk, out Errno errno)
    {
        int on = 1;
        return Sys(NR_setsockopt, out errno, sk, SOL_TCP, TCP_REPAIR, (long)&on, sizeof(int)) == 0;
    }
}
