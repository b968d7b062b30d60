// SOCK_* socket types (include/linux/net.h); SOCK_CLOEXEC and SOCK_NONBLOCK are separate arguments
// of the managed calls.
namespace Crest.Kernel.Sockets;

public enum SocketKind
{
    Stream = 1,
    Datagram = 2,
    Raw = 3,
    Rdm = 4,
    SeqPacket = 5,
    Packet = 10,
}
