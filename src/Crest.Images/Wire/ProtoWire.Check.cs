// The one walk over a message's bytes, against a MessageSchema (WireSchemas.cs): Check (the dump and restore
// paths) walks without keeping anything; Parse (ProtoWire.cs, for crit's decode and edits) walks the same way and
// builds a WireMessage. A value of the wrong wire type or an undefined value of a closed enum is an unknown
// field; a required field without a (kept) value makes the message invalid; every length is checked.
using Google.Protobuf.Reflection;

namespace Crest.Images.Wire;

internal static partial class ProtoWire
{
    /// <summary>Checks that <paramref name="data"/> is a valid message of <paramref name="schema"/>.</summary>
    /// <exception cref="WireFormatException">The bytes are malformed or a required field is missing.</exception>
    public static void Check(MessageSchema schema, ReadOnlySpan<byte> data) => Walk(schema, data, 0, 0, null);

    /// <summary>
    /// The value of the non-repeated integer field <paramref name="name"/> at the top level of a message
    /// already checked with <see cref="Check(MessageSchema, ReadOnlySpan{byte})"/> (the last one on the wire,
    /// as protobuf merges), or null when it is absent.
    /// </summary>
    public static ulong? Scalar(MessageSchema schema, ReadOnlySpan<byte> data, string name)
    {
        SchemaField field = schema.FindFieldByName(name)
            ?? throw new ArgumentException($"{schema.Name} has no field {name}", nameof(name));
        int expected = ExpectedWireType(field.Type);
        if (field.IsRepeated || expected == WireLengthDelimited)
            throw new ArgumentException($"{schema.Name}.{name} is not a single integer", nameof(name));
        ulong? value = null;
        int pos = 0;
        while (pos < data.Length)
        {
            ulong tag = ReadVarint(data, ref pos, 0);
            int wireType = (int)(tag & 7);
            if ((int)(tag >> 3) == field.Number && wireType == expected)
            {
                ulong read = ReadScalar(expected, data, ref pos, 0);
                if (field.EnumValues is null || field.EnumValues.Contains((int)read))
                    value = read;
            }
            else
                SkipValue(wireType, (int)(tag >> 3), data, ref pos, 0, 0);
        }
        return value;
    }

    /// <summary>Walks one message; with <paramref name="into"/> (a message of the same type), the values it keeps go there.</summary>
    private static void Walk(MessageSchema schema, ReadOnlySpan<byte> data, int baseOffset, int depth, WireMessage? into)
    {
        if (depth > MaxDepth)
            throw new WireFormatException($"messages nested deeper than {MaxDepth}", baseOffset);

        // Required fields seen, by their index in schema.Required (a message has few of them).
        Span<bool> seen = schema.Required.Count <= 64 ? stackalloc bool[schema.Required.Count] : new bool[schema.Required.Count];
        int pos = 0;
        while (pos < data.Length)
        {
            int tagOffset = pos;
            ulong tag = ReadVarint(data, ref pos, baseOffset);
            int wireType = (int)(tag & 7);
            ulong number = tag >> 3;
            if (number == 0 || number > 536870911)
                throw new WireFormatException($"invalid field number {number} in {schema.FullName}", baseOffset + tagOffset);

            SchemaField? field = schema.FindFieldByNumber((int)number);
            if (field is null || !TryReadField(field, wireType, data, ref pos, baseOffset, depth, into, out bool kept))
                SkipValue(wireType, (int)number, data, ref pos, baseOffset, depth);
            else if (kept && field.IsRequired)
                MarkSeen(schema, field, seen);
        }

        for (int i = 0; i < seen.Length; i++)
        {
            if (!seen[i])
                throw new WireFormatException($"required field {schema.Name}.{schema.Required[i].Name} is missing", baseOffset);
        }
    }

    private static void MarkSeen(MessageSchema schema, SchemaField field, Span<bool> seen)
    {
        for (int i = 0; i < seen.Length; i++)
        {
            if (ReferenceEquals(schema.Required[i], field))
            {
                seen[i] = true;
                return;
            }
        }
    }

    // Reads one value of a known field (into a message being built, when there is one). False when the wire type
    // does not fit the field (the value is then an unknown field, skipped by the caller); pos is unchanged in that
    // case. kept: a value was taken (an undefined value of a closed enum is dropped, as protobuf drops it).
    private static bool TryReadField(SchemaField field, int wireType, ReadOnlySpan<byte> data, ref int pos,
        int baseOffset, int depth, WireMessage? into, out bool kept)
    {
        kept = false;
        FieldType type = field.Type;
        int expected = ExpectedWireType(type);
        if (type == FieldType.Group)
            throw new WireFormatException($"group field {field.Name} is not supported", baseOffset + pos);
        FieldDescriptor? target = into is null ? null
            : into.Descriptor.FindFieldByNumber(field.Number)
              ?? throw new InvalidOperationException($"{into.Descriptor.FullName} has no field {field.Number} ({field.Name}) of its schema");

        if (wireType == expected)
        {
            switch (expected)
            {
                case WireVarint:
                case WireFixed64:
                case WireFixed32:
                    ulong value = ReadScalar(expected, data, ref pos, baseOffset);
                    kept = field.EnumValues is null || field.EnumValues.Contains((int)value);
                    if (kept && target is not null) Add(into!, target, value);
                    break;
                default:
                    ReadOnlySpan<byte> bytes = ReadLengthDelimitedSpan(data, ref pos, baseOffset);
                    int start = baseOffset + (pos - bytes.Length);
                    if (type == FieldType.Message)
                    {
                        WireMessage? nested = target is null ? null : new WireMessage(target.MessageType);
                        Walk(field.MessageType, bytes, start, depth + 1, nested);
                        if (nested is not null) Add(into!, target!, nested);
                    }
                    else if (target is not null)
                        Add(into!, target, bytes.ToArray());
                    kept = true;
                    break;
            }
            return true;
        }

        // A packed run of a repeated scalar: length-delimited, then values back to back.
        if (wireType == WireLengthDelimited && field.IsRepeated && expected != WireLengthDelimited)
        {
            ReadOnlySpan<byte> packed = ReadLengthDelimitedSpan(data, ref pos, baseOffset);
            int packedBase = baseOffset + pos - packed.Length;
            int inner = 0;
            while (inner < packed.Length)
            {
                ulong value = ReadScalar(expected, packed, ref inner, packedBase);
                if (field.EnumValues is not null && !field.EnumValues.Contains((int)value)) continue;
                kept = true;
                if (target is not null) Add(into!, target, value);
            }
            return true;
        }
        return false;
    }

    private static ulong ReadScalar(int wireType, ReadOnlySpan<byte> data, ref int pos, int baseOffset) => wireType switch
    {
        WireVarint => ReadVarint(data, ref pos, baseOffset),
        WireFixed64 => ReadFixed64(data, ref pos, baseOffset),
        _ => ReadFixed32(data, ref pos, baseOffset),
    };

    private static ReadOnlySpan<byte> ReadLengthDelimitedSpan(ReadOnlySpan<byte> data, ref int pos, int baseOffset)
    {
        int start = pos;
        ulong length = ReadVarint(data, ref pos, baseOffset);
        if (length > (ulong)(data.Length - pos))
            throw Truncated(length, data.Length - pos, baseOffset + start);
        ReadOnlySpan<byte> bytes = data.Slice(pos, (int)length);
        pos += (int)length;
        return bytes;
    }
}
