// Entry schemas for the dump and restore paths, read from protoc's FileDescriptorSet of Protos/*.proto
// (embedded by Crest.Images.csproj as criu-schemas.pb), not from Google.Protobuf's reflection descriptors.
//
// Why: a generated message's Descriptor builds its whole .proto file and every import (core.proto pulls
// in six architectures, opts.proto pulls in descriptor.proto) and creates a reflection accessor for every
// field; under Native AOT that was 25-30 ms of a 45 ms dump of `sleep`. The checks an image entry needs
// (field numbers, wire types, labels, nested message types, enum values) are all in the descriptor set,
// which parses in well under a millisecond; a message's schema is built the first time it is asked for.
// The crit paths (JSON, show) keep using the Google descriptors: they need names, options and printing.
using System.Collections.Concurrent;
using Google.Protobuf.Reflection;

namespace Crest.Images.Wire;

/// <summary>One field as the entry checks need it.</summary>
internal sealed class SchemaField
{
    private readonly string? _typeName;
    private MessageSchema? _message;

    internal SchemaField(FieldDescriptorProto proto, IReadOnlySet<int>? enumValues)
    {
        Number = proto.Number;
        Name = proto.Name;
        Type = proto.Type switch
        {
            FieldDescriptorProto.Types.Type.Double => FieldType.Double,
            FieldDescriptorProto.Types.Type.Float => FieldType.Float,
            FieldDescriptorProto.Types.Type.Int64 => FieldType.Int64,
            FieldDescriptorProto.Types.Type.Uint64 => FieldType.UInt64,
            FieldDescriptorProto.Types.Type.Int32 => FieldType.Int32,
            FieldDescriptorProto.Types.Type.Fixed64 => FieldType.Fixed64,
            FieldDescriptorProto.Types.Type.Fixed32 => FieldType.Fixed32,
            FieldDescriptorProto.Types.Type.Bool => FieldType.Bool,
            FieldDescriptorProto.Types.Type.String => FieldType.String,
            FieldDescriptorProto.Types.Type.Group => FieldType.Group,
            FieldDescriptorProto.Types.Type.Message => FieldType.Message,
            FieldDescriptorProto.Types.Type.Bytes => FieldType.Bytes,
            FieldDescriptorProto.Types.Type.Uint32 => FieldType.UInt32,
            FieldDescriptorProto.Types.Type.Enum => FieldType.Enum,
            FieldDescriptorProto.Types.Type.Sfixed32 => FieldType.SFixed32,
            FieldDescriptorProto.Types.Type.Sfixed64 => FieldType.SFixed64,
            FieldDescriptorProto.Types.Type.Sint32 => FieldType.SInt32,
            FieldDescriptorProto.Types.Type.Sint64 => FieldType.SInt64,
            _ => throw new InvalidOperationException($"field {proto.Name}: unknown protobuf type {proto.Type}"),
        };
        IsRequired = proto.Label == FieldDescriptorProto.Types.Label.Required;
        IsRepeated = proto.Label == FieldDescriptorProto.Types.Label.Repeated;
        EnumValues = enumValues;
        _typeName = Type == FieldType.Message ? proto.TypeName : null;
    }

    public int Number { get; }

    public string Name { get; }

    public FieldType Type { get; }

    public bool IsRequired { get; }

    public bool IsRepeated { get; }

    /// <summary>The defined values of an enum field (proto2 enums are closed); null for other types.</summary>
    public IReadOnlySet<int>? EnumValues { get; }

    /// <summary>The schema of a message field, built on first use (schemas may be recursive).</summary>
    public MessageSchema MessageType =>
        _message ??= WireSchemas.Find(_typeName ?? throw new InvalidOperationException($"field {Name} is not a message"))
            ?? throw new InvalidOperationException($"field {Name}: message type {_typeName} is not in the schemas");
}

/// <summary>One message type: its fields by number and which of them are required.</summary>
internal sealed class MessageSchema
{
    private readonly Dictionary<int, SchemaField> _byNumber;

    internal MessageSchema(string fullName, string name, List<SchemaField> fields)
    {
        FullName = fullName;
        Name = name;
        _byNumber = fields.ToDictionary(f => f.Number);
        Required = [.. fields.Where(f => f.IsRequired).OrderBy(f => f.Number)];
    }

    /// <summary>"criu.CoreEntry".</summary>
    public string FullName { get; }

    /// <summary>"CoreEntry".</summary>
    public string Name { get; }

    /// <summary>Required fields in field-number order.</summary>
    public IReadOnlyList<SchemaField> Required { get; }

    public SchemaField? FindFieldByNumber(int number) => _byNumber.GetValueOrDefault(number);

    public SchemaField? FindFieldByName(string name) => _byNumber.Values.FirstOrDefault(f => f.Name == name);
}

/// <summary>The message schemas of Protos/*.proto by full name ("criu.CoreEntry").</summary>
internal static class WireSchemas
{
    /// <summary>The package of every CRIU schema (the .proto files say `package criu;`).</summary>
    public const string Package = "criu";

    private const string ResourceName = "criu-schemas.pb";

    private static readonly Lazy<Index> s_index = new(Load);
    private static readonly ConcurrentDictionary<string, MessageSchema> s_built = new(StringComparer.Ordinal);

    /// <summary>The schema of message <paramref name="fullName"/> ("criu.CoreEntry", a leading dot allowed), or null.</summary>
    public static MessageSchema? Find(string fullName)
    {
        ArgumentNullException.ThrowIfNull(fullName);
        if (fullName.StartsWith('.')) fullName = fullName[1..];
        if (s_built.TryGetValue(fullName, out MessageSchema? built)) return built;
        Index index = s_index.Value;
        if (!index.Messages.TryGetValue(fullName, out DescriptorProto? proto)) return null;
        var fields = new List<SchemaField>(proto.Field.Count);
        foreach (FieldDescriptorProto field in proto.Field)
        {
            IReadOnlySet<int>? values = null;
            if (field.Type == FieldDescriptorProto.Types.Type.Enum)
            {
                string enumName = field.TypeName.TrimStart('.');
                values = index.Enums.GetValueOrDefault(enumName)
                    ?? throw new InvalidOperationException($"{fullName}.{field.Name}: enum {enumName} is not in the schemas");
            }
            fields.Add(new SchemaField(field, values));
        }
        return s_built.GetOrAdd(fullName, new MessageSchema(fullName, proto.Name, fields));
    }

    /// <summary>The schema of message <paramref name="name"/> of the criu package ("CoreEntry"), or null.</summary>
    public static MessageSchema? FindCriu(string name) => Find($"{Package}.{name}");

    private sealed record Index(Dictionary<string, DescriptorProto> Messages, Dictionary<string, IReadOnlySet<int>> Enums);

    private static Index Load()
    {
        using Stream stream = typeof(WireSchemas).Assembly.GetManifestResourceStream(ResourceName)
            ?? throw new InvalidOperationException($"the embedded {ResourceName} is missing from {typeof(WireSchemas).Assembly.GetName().Name}");
        FileDescriptorSet set = FileDescriptorSet.Parser.ParseFrom(stream);
        var messages = new Dictionary<string, DescriptorProto>(StringComparer.Ordinal);
        var enums = new Dictionary<string, IReadOnlySet<int>>(StringComparer.Ordinal);
        foreach (FileDescriptorProto file in set.File)
        {
            string scope = file.Package;
            foreach (EnumDescriptorProto e in file.EnumType) AddEnum(enums, scope, e);
            foreach (DescriptorProto m in file.MessageType) AddMessage(messages, enums, scope, m);
        }
        return new Index(messages, enums);
    }

    private static void AddMessage(Dictionary<string, DescriptorProto> messages, Dictionary<string, IReadOnlySet<int>> enums,
        string scope, DescriptorProto message)
    {
        string fullName = Qualify(scope, message.Name);
        messages.Add(fullName, message);
        foreach (EnumDescriptorProto e in message.EnumType) AddEnum(enums, fullName, e);
        foreach (DescriptorProto nested in message.NestedType) AddMessage(messages, enums, fullName, nested);
    }

    private static void AddEnum(Dictionary<string, IReadOnlySet<int>> enums, string scope, EnumDescriptorProto e) =>
        enums.Add(Qualify(scope, e.Name), e.Value.Select(v => v.Number).ToHashSet());

    private static string Qualify(string scope, string name) => scope.Length == 0 ? name : $"{scope}.{name}";
}
