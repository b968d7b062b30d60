// A deliberately small writer of CRIU's image framing, local to these tests so that the schema tests do
// not depend on Crest's own image writer: [prefix magic] own magic, then per entry a u32 length, the
// message bytes and any raw payload. All integers little-endian.
using System.Buffers.Binary;
using Google.Protobuf;

namespace Crest.Images.Tests.Schemas;

internal static class CriuImageFraming
{
    public static byte[] Build(ImageKind kind, IEnumerable<(IMessage Entry, byte[]? Payload)> entries)
    {
        using var stream = new MemoryStream();
        switch (kind.Prefix)
        {
            case MagicPrefix.Common:
                WriteU32(stream, ImageKinds.CommonMagic);
                break;
            case MagicPrefix.Service:
                WriteU32(stream, ImageKinds.ServiceMagic);
                break;
            case MagicPrefix.None:
                break;
            default:
                throw new ArgumentException($"{kind.Name} is a raw image without framing", nameof(kind));
        }
        WriteU32(stream, kind.Magic);

        foreach ((IMessage entry, byte[]? payload) in entries)
        {
            byte[] bytes = entry.ToByteArray();
            WriteU32(stream, (uint)bytes.Length);
            stream.Write(bytes);
            if (payload is not null)
                stream.Write(payload);
        }
        return stream.ToArray();
    }

    public static byte[] Build(ImageKind kind, params IMessage[] entries) =>
        Build(kind, entries.Select(e => (e, (byte[]?)null)));

    private static void WriteU32(Stream stream, uint value)
    {
        Span<byte> buffer = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(buffer, value);
        stream.Write(buffer);
    }
}
