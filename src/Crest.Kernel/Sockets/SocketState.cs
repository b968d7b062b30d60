// Socket states as sock_diag reports them. The kernel uses the TCP_* numbers
// (include/net/tcp_states.h) for every family: a unix socket is TCP_LISTEN, TCP_ESTABLISHED or
// TCP_CLOSE too.
namespace Crest.Kernel.Sockets;

public enum SocketState : byte
{
    Established = 1,
    SynSent = 2,
    SynReceived = 3,
    FinWait1 = 4,
    FinWait2 = 5,
    TimeWait = 6,
    Close = 7,
    CloseWait = 8,
    LastAck = 9,
    Listen = 10,
    Closing = 11,
    NewSynReceived = 12,
    BoundInactive = 13,
}
