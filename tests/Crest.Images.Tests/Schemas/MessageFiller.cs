// Builds a message with every field set (repeated fields twice) to distinct, deterministic values, so a
// round trip through crit checks each field's number, wire type and name at once.
using System.Collections;
using Crest.Images.Protos;
using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace Crest.Images.Tests.Schemas;

internal static class MessageFiller
{
    // Some messages nest themselves (cgroup directories hold their children): below this depth only
    // required message fields are filled, which ends the recursion.
    private const int MaxDepth = 3;

    public static IMessage Fill(MessageDescriptor descriptor, int seed = 0) => Fill(descriptor, seed, 0);

    private static IMessage Fill(MessageDescriptor descriptor, int seed, int depth)
    {
        IMessage message = descriptor.Parser.ParseFrom(ByteString.Empty);
        foreach (FieldDescriptor field in descriptor.Fields.InFieldNumberOrder())
        {
            if (field.FieldType == FieldType.Message && depth >= MaxDepth && !field.IsRequired)
                continue;
            if (field.IsRepeated)
            {
                // Addresses are one word (IPv4) or four (IPv6); crit's pretty printer knows no other length.
                int count = IsAddress(field) ? 4 : 2;
                var list = (IList)field.Accessor.GetValue(message);
                for (int i = 0; i < count; i++)
                    list.Add(Value(field, seed, i, depth));
            }
            else
            {
                field.Accessor.SetValue(message, Value(field, seed, 0, depth));
            }
        }
        return message;
    }

    private static object Value(FieldDescriptor field, int seed, int index, int depth)
    {
        int n = 1000 + field.FieldNumber * 17 + seed * 101 + index;
        return field.FieldType switch
        {
            FieldType.UInt32 or FieldType.Fixed32 => (uint)n,
            FieldType.Int32 or FieldType.SFixed32 => n,
            FieldType.SInt32 => -n,
            FieldType.UInt64 or FieldType.Fixed64 => 0x7ffd_0000_0000UL + (ulong)n,
            FieldType.Int64 or FieldType.SFixed64 => 0x1_0000_0000L + n,
            FieldType.SInt64 => -(0x1_0000_0000L + n),
            FieldType.Bool => index == 0,
            FieldType.String => $"{field.Name}-{seed}-{index}",
            FieldType.Bytes => ByteString.CopyFromUtf8($"{field.Name}:{seed}:{index}"),
            // The last declared value: non-zero, so it is always on the wire.
            FieldType.Enum => field.EnumType.Values[^1].Number,
            FieldType.Message or FieldType.Group => Fill(field.MessageType, seed + 1, depth + 1),
            _ => throw new ArgumentOutOfRangeException(nameof(field), field.FieldType, field.FullName),
        };
    }

    private static bool IsAddress(FieldDescriptor field) =>
        field.GetOptions()?.GetExtension(OptsExtensions.Criu)?.Ipadd == true;

    /// <summary>Sets a scalar field by its proto name (a count crit reads a payload by, say).</summary>
    public static void Set(IMessage message, string fieldName, object value)
    {
        FieldDescriptor field = message.Descriptor.FindFieldByName(fieldName)
            ?? throw new ArgumentException($"{message.Descriptor.Name} has no field {fieldName}", nameof(fieldName));
        field.Accessor.SetValue(message, value);
    }
}
