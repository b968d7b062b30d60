// The netlink parsers against hand-built messages: well-formed ones decode, malformed ones fail
// with NetlinkFormatException, and random bytes never cause anything else (no out-of-range read).
using System.Buffers.Binary;
using Crest.Kernel.Netlink;
using Crest.Kernel.Sockets;

namespace Crest.Kernel.Tests.Netlink;

public class NetlinkParsingTests
{
    private static byte[] Message(ushort type, ushort flags, uint seq, byte[] payload)
    {
        int length = 16 + payload.Length;
        var m = new byte[(length + 3) & ~3];
        BinaryPrimitives.WriteUInt32LittleEndian(m, (uint)length);
        BinaryPrimitives.WriteUInt16LittleEndian(m.AsSpan(4), type);
        BinaryPrimitives.WriteUInt16LittleEndian(m.AsSpan(6), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(8), seq);
        payload.CopyTo(m, 16);
        return m;
    }

    private static byte[] Attribute(ushort type, byte[] value)
    {
        var a = new byte[(4 + value.Length + 3) & ~3];
        BinaryPrimitives.WriteUInt16LittleEndian(a, (ushort)(4 + value.Length));
        BinaryPrimitives.WriteUInt16LittleEndian(a.AsSpan(2), type);
        value.CopyTo(a, 4);
        return a;
    }

    private static byte[] UnixMessage(params byte[][] attributes)
    {
        var fixedPart = new byte[16];
        fixedPart[0] = 1;   // AF_UNIX
        fixedPart[1] = 5;   // SOCK_SEQPACKET
        fixedPart[2] = 10;  // TCP_LISTEN
        BinaryPrimitives.WriteUInt32LittleEndian(fixedPart.AsSpan(4), 4242);
        BinaryPrimitives.WriteUInt32LittleEndian(fixedPart.AsSpan(8), 7);
        BinaryPrimitives.WriteUInt32LittleEndian(fixedPart.AsSpan(12), 1);
        return [.. fixedPart, .. attributes.SelectMany(a => a)];
    }

    [Fact]
    public void AUnixDiagMessageDecodesWithEveryAttribute()
    {
        byte[] payload = UnixMessage(
            Attribute(0, "\0abstract"u8.ToArray()),
            Attribute(2, BitConverter.GetBytes(99u)),
            Attribute(3, [.. BitConverter.GetBytes(5u), .. BitConverter.GetBytes(6u)]),
            Attribute(4, [.. BitConverter.GetBytes(2u), .. BitConverter.GetBytes(128u)]),
            Attribute(6, [3]),
            Attribute(7, BitConverter.GetBytes(1000u)),
            Attribute(0x7ff, [1, 2, 3]));   // unknown attributes are skipped
        UnixSocketInfo info = SockDiag.ParseUnix(payload);
        Assert.Equal(4242u, info.Inode);
        Assert.Equal(SocketKind.SeqPacket, info.Kind);
        Assert.Equal(SocketState.Listen, info.State);
        Assert.Equal(7ul | 1ul << 32, info.Cookie);
        Assert.Equal("@abstract", info.DisplayName);
        Assert.Equal(99u, info.PeerInode);
        Assert.Equal(new uint[] { 5, 6 }, info.PendingConnections);
        Assert.Equal((2u, 128u), (info.ReceiveQueue, info.SendQueue));
        Assert.Equal(3, info.Shutdown);
        Assert.Equal(1000u, info.Uid);
    }

    [Fact]
    public void VfsDeviceConvertsFromTheKernelsDevTToStatsEncoding()
    {
        var info = new UnixSocketInfo { VfsDevice = (8u << 20) | 300 };
        Assert.Equal(8u, Crest.Kernel.Files.FileStatus.Major(info.VfsStatDevice));
        Assert.Equal(300u, Crest.Kernel.Files.FileStatus.Minor(info.VfsStatDevice));
    }

    [Fact]
    public void MessagesWalkInOrderAndPaddingIsSkipped()
    {
        byte[] stream = [.. Message(20, 2, 9, [1, 2, 3]), .. Message(3, 2, 9, new byte[4])];
        var reader = new NetlinkMessageReader(stream);
        Assert.True(reader.TryRead(out NetlinkMessage first));
        Assert.Equal(20, first.Type);
        Assert.Equal(9u, first.Sequence);
        Assert.Equal(new byte[] { 1, 2, 3 }, first.Payload.ToArray());
        Assert.True(reader.TryRead(out NetlinkMessage done));
        Assert.Equal(3, done.Type);
        Assert.False(reader.TryRead(out _));
    }

    [Theory]
    [InlineData(new byte[] { 1, 2, 3 })]                                        // shorter than a header
    [InlineData(new byte[] { 8, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 })]  // length below the header
    [InlineData(new byte[] { 64, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 })] // length past the end
    public void MalformedMessageHeadersAreRejected(byte[] bytes)
    {
        Assert.Throws<NetlinkFormatException>(() =>
        {
            var reader = new NetlinkMessageReader(bytes);
            while (reader.TryRead(out _)) { }
        });
    }

    [Fact]
    public void MalformedUnixPayloadsAreRejected()
    {
        Assert.Throws<NetlinkFormatException>(() => SockDiag.ParseUnix(new byte[15]));
        byte[] overlong = UnixMessage(Attribute(2, BitConverter.GetBytes(1u)));
        overlong[16] = 200; // attribute claims more than there is
        Assert.Throws<NetlinkFormatException>(() => SockDiag.ParseUnix(overlong));
        Assert.Throws<NetlinkFormatException>(() => SockDiag.ParseUnix(UnixMessage(Attribute(2, [1, 2]))));   // peer needs 4 bytes
        Assert.Throws<NetlinkFormatException>(() => SockDiag.ParseUnix(UnixMessage(Attribute(3, [1, 2, 3])))); // icons of 4-byte inodes
        Assert.Throws<NetlinkFormatException>(() => SockDiag.ParseUnix(UnixMessage(Attribute(4, new byte[7]))));
        Assert.Throws<NetlinkFormatException>(() => SockDiag.ParseInet(new byte[71], 6));
        var badFamily = new byte[72];
        badFamily[0] = 1;
        Assert.Throws<NetlinkFormatException>(() => SockDiag.ParseInet(badFamily, 6));
    }

    [Fact]
    public void RandomMessageStreamsNeverReadOutOfRange()
    {
        var random = new Random(20261123);
        int rejected = 0, walked = 0;
        for (int round = 0; round < 20000; round++)
        {
            var bytes = new byte[random.Next(0, 200)];
            random.NextBytes(bytes);
            // Half the rounds get a plausible first length so the walk goes deeper.
            if (bytes.Length >= 16 && round % 2 == 0)
                BinaryPrimitives.WriteUInt32LittleEndian(bytes, (uint)random.Next(16, bytes.Length + 8));
            try
            {
                var reader = new NetlinkMessageReader(bytes);
                while (reader.TryRead(out NetlinkMessage m))
                    Assert.True(m.Payload.Length <= bytes.Length - 16);
                walked++;
            }
            catch (NetlinkFormatException)
            {
                rejected++;   // the one way random input may fail
            }
        }
        Assert.True(rejected > 0 && walked > 0, $"{walked} walked, {rejected} rejected");
    }

    [Fact]
    public void RandomAttributesNeverReadOutOfRange()
    {
        var random = new Random(1123);
        int rejected = 0, parsed = 0;
        for (int round = 0; round < 20000; round++)
        {
            // A valid fixed part, then random attributes with small types so the known ones are hit.
            var tail = new byte[random.Next(0, 64)];
            random.NextBytes(tail);
            for (int i = 0; i + 4 <= tail.Length; i += 4 + random.Next(0, 8))
            {
                BinaryPrimitives.WriteUInt16LittleEndian(tail.AsSpan(i), (ushort)random.Next(0, tail.Length - i + 4));
                BinaryPrimitives.WriteUInt16LittleEndian(tail.AsSpan(i + 2), (ushort)random.Next(0, 10));
            }
            byte[] unix = [.. UnixMessage(), .. tail];
            var inetFixed = new byte[72];
            inetFixed[0] = (byte)(round % 2 == 0 ? 2 : 10);
            byte[] inet = [.. inetFixed, .. tail];
            try
            {
                UnixSocketInfo u = SockDiag.ParseUnix(unix);
                Assert.True(u.PendingConnections.Length * 4 <= tail.Length && (u.Name?.Length ?? 0) <= tail.Length);
                Assert.NotNull(SockDiag.ParseInet(inet, 6).SourceAddress);
                parsed++;
            }
            catch (NetlinkFormatException)
            {
                rejected++;   // the one way random input may fail
            }
        }
        Assert.True(rejected > 0 && parsed > 0, $"{parsed} parsed, {rejected} rejected");
    }
}
