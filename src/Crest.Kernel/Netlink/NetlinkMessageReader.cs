// Walks a buffer of netlink messages (netlink(7)):
//
//   +----------------------------- nlmsg_len ------------------------------+
//   | len u32 | type u16 | flags u16 | seq u32 | port id u32 | payload ... | pad to 4 | next message
//   +------------------ 16-byte nlmsghdr ------------------------+
//
// and the attributes inside a payload (struct nlattr / rtattr):
//
//   | len u16 | type u16 | value (len - 4 bytes) | pad to 4 | next attribute
//
// Every length is checked against the bytes that remain before it is used; a message or attribute
// that claims more than is there, or less than its own header, is a NetlinkFormatException.
using System.Buffers.Binary;
using Crest.Kernel.Interop;

namespace Crest.Kernel.Netlink;

/// <summary>One netlink message: its header fields and its payload (after the 16-byte header).</summary>
public readonly ref struct NetlinkMessage(ushort type, ushort flags, uint sequence, uint portId, ReadOnlySpan<byte> payload)
{
    public ushort Type { get; } = type;
    public ushort Flags { get; } = flags;
    public uint Sequence { get; } = sequence;
    public uint PortId { get; } = portId;
    public ReadOnlySpan<byte> Payload { get; } = payload;
}

public ref struct NetlinkMessageReader(ReadOnlySpan<byte> buffer)
{
    private ReadOnlySpan<byte> _rest = buffer;

    /// <summary>The next message, or false at the end of the buffer.</summary>
    public bool TryRead(out NetlinkMessage message)
    {
        message = default;
        if (_rest.IsEmpty) return false;
        if (_rest.Length < NetlinkConstants.NLMSG_HDRLEN)
            throw new NetlinkFormatException($"netlink: {_rest.Length} trailing bytes, less than a {NetlinkConstants.NLMSG_HDRLEN}-byte header");
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(_rest);
        if (length < NetlinkConstants.NLMSG_HDRLEN || length > (uint)_rest.Length)
            throw new NetlinkFormatException($"netlink: message length {length} does not fit (header {NetlinkConstants.NLMSG_HDRLEN}, {_rest.Length} bytes left)");
        message = new NetlinkMessage(
            BinaryPrimitives.ReadUInt16LittleEndian(_rest[4..]),
            BinaryPrimitives.ReadUInt16LittleEndian(_rest[6..]),
            BinaryPrimitives.ReadUInt32LittleEndian(_rest[8..]),
            BinaryPrimitives.ReadUInt32LittleEndian(_rest[12..]),
            _rest[NetlinkConstants.NLMSG_HDRLEN..(int)length]);
        int advance = NetlinkConstants.NLMSG_ALIGN((int)length);
        _rest = advance >= _rest.Length ? default : _rest[advance..];
        return true;
    }
}

public ref struct NetlinkAttributeReader(ReadOnlySpan<byte> attributes)
{
    private ReadOnlySpan<byte> _rest = attributes;

    /// <summary>The next attribute's type (flag bits removed) and value, or false at the end.</summary>
    public bool TryRead(out ushort type, out ReadOnlySpan<byte> value)
    {
        type = 0;
        value = default;
        if (_rest.IsEmpty) return false;
        if (_rest.Length < NetlinkConstants.NLA_HDRLEN)
            throw new NetlinkFormatException($"netlink: {_rest.Length} trailing bytes, less than an attribute header");
        ushort length = BinaryPrimitives.ReadUInt16LittleEndian(_rest);
        if (length < NetlinkConstants.NLA_HDRLEN || length > _rest.Length)
            throw new NetlinkFormatException($"netlink: attribute length {length} does not fit ({_rest.Length} bytes left)");
        type = (ushort)(BinaryPrimitives.ReadUInt16LittleEndian(_rest[2..]) & NetlinkConstants.NLA_TYPE_MASK);
        value = _rest[NetlinkConstants.NLA_HDRLEN..length];
        int advance = NetlinkConstants.NLMSG_ALIGN(length);
        _rest = advance >= _rest.Length ? default : _rest[advance..];
        return true;
    }
}
