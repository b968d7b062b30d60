using Crest.Kernel.Files;

namespace Crest.Kernel.Sockets;

/// <summary>
/// What one recvmsg(2) brought: DataLength bytes into the caller's buffer (DataTruncated when a
/// datagram did not fit) and the descriptors of its SCM_RIGHTS messages, each owned by the caller.
/// DataLength 0 with no descriptors on a stream socket means the peer closed.
/// </summary>
public sealed record ReceivedMessage(int DataLength, FileDescriptor[] Descriptors, bool DataTruncated);
