namespace Crest.Kernel.Netlink;

/// <summary>A netlink message or attribute whose lengths do not fit the bytes that arrived. The
/// parsers never read past what the kernel sent; they stop with this instead.</summary>
public sealed class NetlinkFormatException(string message) : Exception(message);
