// A protobuf message held as its wire values, organised by the schema's field descriptors
// (protobuf encoding: https://protobuf.dev/programming-guides/encoding/). It is what lets crit-style JSON be
// produced and re-encoded without Google.Protobuf's reflection: every value keeps its exact wire form, and
// serialisation writes fields in field-number order, as protobuf-c (CRIU) and crit's Python protobuf do.
using Google.Protobuf.Reflection;

namespace Crest.Images.Wire;

/// <summary>One present field: the descriptor and its values in the order they were read or given.</summary>
internal sealed class WireField(FieldDescriptor descriptor)
{
    public FieldDescriptor Descriptor { get; } = descriptor;

    /// <summary>
    /// Values: <see cref="ulong"/> for varint and fixed-width scalars (the raw wire bits: a varint's value,
    /// the little-endian fixed32/fixed64 word), <see cref="byte"/>[] for string and bytes,
    /// <see cref="WireMessage"/> for messages. A non-repeated field has exactly one value.
    /// </summary>
    public List<object> Values { get; } = [];
}

/// <summary>A message as a set of present fields, kept sorted by field number.</summary>
internal sealed class WireMessage(MessageDescriptor descriptor)
{
    private readonly SortedDictionary<int, WireField> _fields = [];

    public MessageDescriptor Descriptor { get; } = descriptor;

    /// <summary>Present fields in field-number order (the order protobuf-c and Python's ListFields use).</summary>
    public IEnumerable<WireField> Fields => _fields.Values;

    public WireField? Find(int number) => _fields.GetValueOrDefault(number);

    public WireField? Find(string name)
    {
        FieldDescriptor? field = Descriptor.FindFieldByName(name);
        return field is null ? null : Find(field.FieldNumber);
    }

    public void Remove(int number) => _fields.Remove(number);

    public WireField GetOrAdd(FieldDescriptor field)
    {
        if (!_fields.TryGetValue(field.FieldNumber, out WireField? present))
        {
            present = new WireField(field);
            _fields.Add(field.FieldNumber, present);
        }
        return present;
    }

    /// <summary>The raw scalar of a present non-repeated integer field, or null.</summary>
    public ulong? Scalar(string name) =>
        Find(name) is { Values: [.., ulong value] } ? value : null;

    /// <summary>
    /// Protobuf merge semantics: a non-repeated scalar takes the later value, a repeated field appends,
    /// a non-repeated message merges field by field. A message field seen twice on the wire is merged so.
    /// </summary>
    public void MergeFrom(WireMessage other)
    {
        foreach (WireField field in other.Fields)
        {
            WireField mine = GetOrAdd(field.Descriptor);
            if (field.Descriptor.IsRepeated)
                mine.Values.AddRange(field.Values);
            else if (mine.Values is [WireMessage existing] && field.Values is [WireMessage incoming])
                existing.MergeFrom(incoming);
            else
            {
                mine.Values.Clear();
                mine.Values.AddRange(field.Values);
            }
        }
    }
}
