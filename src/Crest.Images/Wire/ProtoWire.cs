// Reads and writes the protobuf wire format (https://protobuf.dev/programming-guides/encoding/) guided by
// message schemas, with every length checked against the bytes that remain (the one walk is ProtoWire.Check.cs). Proto2 rules as crit's
// Python protobuf applies them: a value of the wrong wire type or an undefined value of a (closed) enum is
// an unknown field and is dropped; a required field that is absent makes the message invalid.
using System.Buffers.Binary;
using Google.Protobuf.Reflection;

namespace Crest.Images.Wire;

/// <summary>Bytes that are not a valid message of the expected type; Offset is relative to the message start.</summary>
internal sealed class WireFormatException(string reason, int offset) : Exception(reason)
{
    public int Offset { get; } = offset;
}

internal static partial class ProtoWire
{
    public const int WireVarint = 0, WireFixed64 = 1, WireLengthDelimited = 2, WireStartGroup = 3,
        WireEndGroup = 4, WireFixed32 = 5;

    // Nesting is bounded by the schemas, but a schema could be recursive: bound it so bytes cannot
    // drive the parser into a stack overflow.
    private const int MaxDepth = 64;

    /// <summary>Parses <paramref name="data"/> as a message of <paramref name="descriptor"/> (one of Protos/*.proto):
    /// the walk of <see cref="Check(MessageSchema, ReadOnlySpan{byte})"/>, the values kept.</summary>
    /// <exception cref="WireFormatException">The bytes are malformed or a required field is missing.</exception>
    public static WireMessage Parse(MessageDescriptor descriptor, ReadOnlySpan<byte> data)
    {
        MessageSchema schema = WireSchemas.Find(descriptor.FullName)
            ?? throw new ArgumentException($"{descriptor.FullName} is not one of the image schemas", nameof(descriptor));
        var message = new WireMessage(descriptor);
        Walk(schema, data, 0, 0, message);
        return message;
    }

    private static void Add(WireMessage message, FieldDescriptor field, object value)
    {
        WireField present = message.GetOrAdd(field);
        if (field.IsRepeated)
            present.Values.Add(value);
        else if (value is WireMessage incoming && present.Values is [WireMessage existing])
            existing.MergeFrom(incoming);
        else
        {
            present.Values.Clear();
            present.Values.Add(value);
        }
    }

    public static int ExpectedWireType(FieldType type) => type switch
    {
        FieldType.Int32 or FieldType.Int64 or FieldType.UInt32 or FieldType.UInt64 or FieldType.SInt32
            or FieldType.SInt64 or FieldType.Bool or FieldType.Enum => WireVarint,
        FieldType.Fixed64 or FieldType.SFixed64 or FieldType.Double => WireFixed64,
        FieldType.Fixed32 or FieldType.SFixed32 or FieldType.Float => WireFixed32,
        FieldType.Group => WireStartGroup,
        _ => WireLengthDelimited,
    };

    private static void SkipValue(int wireType, int number, ReadOnlySpan<byte> data, ref int pos, int baseOffset, int depth)
    {
        switch (wireType)
        {
            case WireVarint:
                ReadVarint(data, ref pos, baseOffset);
                break;
            case WireFixed64:
                ReadFixed64(data, ref pos, baseOffset);
                break;
            case WireFixed32:
                ReadFixed32(data, ref pos, baseOffset);
                break;
            case WireLengthDelimited:
                ulong length = ReadVarint(data, ref pos, baseOffset);
                if (length > (ulong)(data.Length - pos))
                    throw Truncated(length, data.Length - pos, baseOffset + pos);
                pos += (int)length;
                break;
            case WireStartGroup:
                if (depth > MaxDepth)
                    throw new WireFormatException($"groups nested deeper than {MaxDepth}", baseOffset + pos);
                while (true)
                {
                    if (pos >= data.Length)
                        throw new WireFormatException($"group {number} is not closed", baseOffset + pos);
                    int tagOffset = pos;
                    ulong tag = ReadVarint(data, ref pos, baseOffset);
                    int innerType = (int)(tag & 7);
                    if (innerType == WireEndGroup)
                    {
                        if ((int)(tag >> 3) != number)
                            throw new WireFormatException($"group {number} closed by end of group {tag >> 3}", baseOffset + tagOffset);
                        break;
                    }
                    SkipValue(innerType, (int)(tag >> 3), data, ref pos, baseOffset, depth + 1);
                }
                break;
            default:
                throw new WireFormatException($"invalid wire type {wireType} for field {number}", baseOffset + pos);
        }
    }

    private static WireFormatException Truncated(ulong length, int remaining, int offset) =>
        new($"length {length} but only {remaining} bytes remain", offset);

    private static ulong ReadVarint(ReadOnlySpan<byte> data, ref int pos, int baseOffset)
    {
        ulong result = 0;
        int start = pos;
        for (int shift = 0; shift < 70; shift += 7)
        {
            if (pos >= data.Length)
                throw new WireFormatException("truncated varint", baseOffset + start);
            byte b = data[pos++];
            result |= (ulong)(b & 0x7f) << shift;
            if (b < 0x80)
                return result;
        }
        throw new WireFormatException("varint longer than 10 bytes", baseOffset + start);
    }

    private static ulong ReadFixed64(ReadOnlySpan<byte> data, ref int pos, int baseOffset)
    {
        if (data.Length - pos < 8)
            throw new WireFormatException("truncated fixed64", baseOffset + pos);
        ulong value = BinaryPrimitives.ReadUInt64LittleEndian(data[pos..]);
        pos += 8;
        return value;
    }

    private static uint ReadFixed32(ReadOnlySpan<byte> data, ref int pos, int baseOffset)
    {
        if (data.Length - pos < 4)
            throw new WireFormatException("truncated fixed32", baseOffset + pos);
        uint value = BinaryPrimitives.ReadUInt32LittleEndian(data[pos..]);
        pos += 4;
        return value;
    }

    /// <summary>Serialises <paramref name="message"/>: fields in field-number order, repeated scalars
    /// packed only when the schema says so (proto2 default: one tag per value), as protobuf-c does.</summary>
    public static byte[] Serialize(WireMessage message)
    {
        var output = new MemoryStream();
        Write(message, output);
        return output.ToArray();
    }

    private static void Write(WireMessage message, MemoryStream output)
    {
        foreach (WireField field in message.Fields)
        {
            FieldDescriptor descriptor = field.Descriptor;
            int number = descriptor.FieldNumber;
            int wireType = ExpectedWireType(descriptor.FieldType);
            if (descriptor.IsPacked && wireType != WireLengthDelimited)
            {
                var packed = new MemoryStream();
                foreach (object value in field.Values)
                    WriteScalar(packed, wireType, (ulong)value);
                WriteTag(output, number, WireLengthDelimited);
                WriteVarint(output, (ulong)packed.Length);
                packed.WriteTo(output);
                continue;
            }
            foreach (object value in field.Values)
            {
                WriteTag(output, number, wireType);
                switch (value)
                {
                    case ulong scalar:
                        WriteScalar(output, wireType, scalar);
                        break;
                    case byte[] bytes:
                        WriteVarint(output, (ulong)bytes.Length);
                        output.Write(bytes);
                        break;
                    case WireMessage nested:
                        byte[] body = Serialize(nested);
                        WriteVarint(output, (ulong)body.Length);
                        output.Write(body);
                        break;
                }
            }
        }
    }

    private static void WriteScalar(MemoryStream output, int wireType, ulong value)
    {
        Span<byte> buffer = stackalloc byte[8];
        switch (wireType)
        {
            case WireVarint:
                WriteVarint(output, value);
                break;
            case WireFixed64:
                BinaryPrimitives.WriteUInt64LittleEndian(buffer, value);
                output.Write(buffer);
                break;
            default:
                BinaryPrimitives.WriteUInt32LittleEndian(buffer, (uint)value);
                output.Write(buffer[..4]);
                break;
        }
    }

    private static void WriteTag(MemoryStream output, int number, int wireType) =>
        WriteVarint(output, ((ulong)number << 3) | (uint)wireType);

    private static void WriteVarint(MemoryStream output, ulong value)
    {
        while (value >= 0x80)
        {
            output.WriteByte((byte)(value | 0x80));
            value >>= 7;
        }
        output.WriteByte((byte)value);
    }
}
