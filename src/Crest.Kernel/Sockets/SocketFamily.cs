// AF_* address families (include/linux/socket.h).
namespace Crest.Kernel.Sockets;

public enum SocketFamily : ushort
{
    Unspecified = 0,
    Unix = 1,
    Inet = 2,
    Inet6 = 10,
    Netlink = 16,
    Packet = 17,
}
