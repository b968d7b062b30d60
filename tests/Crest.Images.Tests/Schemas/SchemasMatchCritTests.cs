// Compares Crest's schemas with the ones the installed crit was built from (read out of pycriu's
// descriptors by crit_schema_dump.py): every CRIU message and enum must exist here with the same fields,
// numbers, types, labels, defaults, packing and (criu) print options. The round-trip tests prove the wire
// format with values; this one also covers what values cannot show (labels, defaults, print options).
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using Crest.Images.Protos;
using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace Crest.Images.Tests.Schemas;

public sealed class SchemasMatchCritTests
{
    // pycriu messages that are not image contents: criu-image-streamer's protocol and the option message.
    private static readonly HashSet<string> s_notImages = ["img_streamer_request_entry", "img_streamer_reply_entry", "CRIU_Opts"];

    // Messages we carry that crit 3.17 predates.
    private static readonly HashSet<string> s_newerMessages = ["criu.PluginsEntry"];

    private static readonly Lazy<Dictionary<string, MessageDescriptor>> s_ourMessages = new(() => OurDescriptors().Messages);
    private static readonly Lazy<Dictionary<string, EnumDescriptor>> s_ourEnums = new(() => OurDescriptors().Enums);

    [Fact]
    public void EveryCritMessageHasTheSameFields()
    {
        int compared = 0;
        foreach (JsonProperty message in CritSchemas.Document.RootElement.GetProperty("messages").EnumerateObject())
        {
            if (s_notImages.Contains(message.Name))
                continue;
            string ourName = OurName(message.Name);
            Assert.True(s_ourMessages.Value.TryGetValue(ourName, out MessageDescriptor? ours), $"{message.Name}: no {ourName} in Crest's schemas");

            var critNumbers = new HashSet<int>();
            foreach (JsonElement critField in message.Value.EnumerateArray())
            {
                int number = critField.GetProperty("number").GetInt32();
                critNumbers.Add(number);
                string where = $"{message.Name}.{critField.GetProperty("name").GetString()} (= {number})";
                FieldDescriptor? field = ours!.FindFieldByNumber(number);
                Assert.True(field is not null, $"{where}: missing in {ourName}");
                AssertSameField(critField, field!, where);
                compared++;
            }

            foreach (FieldDescriptor extra in ours!.Fields.InFieldNumberOrder())
            {
                if (!critNumbers.Contains(extra.FieldNumber))
                    Assert.True(CritJson.NewerThanCrit.Contains(extra.FullName), $"{extra.FullName} is not in CRIU's {message.Name} and not listed as newer");
            }
        }
        Assert.True(compared > 900, $"only {compared} fields compared");
    }

    [Fact]
    public void EveryCritEnumHasTheSameValues()
    {
        foreach (JsonProperty critEnum in CritSchemas.Document.RootElement.GetProperty("enums").EnumerateObject())
        {
            string ourName = OurName(critEnum.Name);
            Assert.True(s_ourEnums.Value.TryGetValue(ourName, out EnumDescriptor? ours), $"{critEnum.Name}: no {ourName}");
            Assert.Equal(critEnum.Value.EnumerateObject().Count(), ours!.Values.Count);
            foreach (JsonProperty value in critEnum.Value.EnumerateObject())
            {
                EnumValueDescriptor? ourValue = ours.FindValueByName(value.Name);
                Assert.True(ourValue is not null, $"{critEnum.Name}.{value.Name} missing");
                Assert.Equal(value.Value.GetInt32(), ourValue!.Number);
            }
        }
    }

    [Fact]
    public void OurExtraMessagesAreTheKnownNewerOnes()
    {
        var critNames = CritSchemas.Document.RootElement.GetProperty("messages").EnumerateObject().Select(m => OurName(m.Name)).ToHashSet();
        string[] extra = [.. s_ourMessages.Value.Keys.Where(n => !critNames.Contains(n) && n != "criu.CriuOpts").Order()];
        Assert.Equal(s_newerMessages.Order(), extra);
    }

    private static void AssertSameField(JsonElement crit, FieldDescriptor ours, string where)
    {
        Assert.True(crit.GetProperty("name").GetString() == ours.Name, $"{where}: named {ours.Name} here");
        Assert.True(crit.GetProperty("type").GetString() == TypeName(ours.FieldType), $"{where}: {TypeName(ours.FieldType)} here");
        Assert.True(crit.GetProperty("label").GetString() == Label(ours), $"{where}: {Label(ours)} here");
        Assert.True(crit.GetProperty("packed").GetBoolean() == ours.IsPacked, $"{where}: packed={ours.IsPacked} here");

        if (crit.GetProperty("type_name").GetString() is string typeName)
        {
            string ourTypeName = ours.FieldType == FieldType.Enum ? ours.EnumType.FullName : ours.MessageType.FullName;
            Assert.True(OurName(typeName) == ourTypeName, $"{where}: of type {ourTypeName} here, {typeName} in CRIU");
        }

        if (crit.GetProperty("default").GetString() is string critDefault)
        {
            // A proto2 getter returns the declared default while the field is unset.
            IMessage empty = ours.ContainingType.Parser.ParseFrom(ByteString.Empty);
            object value = ours.Accessor.GetValue(empty);
            string ourDefault = ours.FieldType == FieldType.Enum
                ? Convert.ToInt32(value, CultureInfo.InvariantCulture).ToString(CultureInfo.InvariantCulture)
                : Convert.ToString(value, CultureInfo.InvariantCulture)!;
            Assert.True(critDefault == ourDefault, $"{where}: default {ourDefault} here, {critDefault} in CRIU");
        }

        var critOptions = crit.GetProperty("criu").EnumerateObject()
            .ToDictionary(p => p.Name, p => p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()! : p.Value.GetRawText());
        Assert.True(Same(critOptions, PrintOptions(ours)), $"{where}: (criu) options differ: CRIU {Show(critOptions)}, here {Show(PrintOptions(ours))}");
    }

    private static Dictionary<string, string> PrintOptions(FieldDescriptor field)
    {
        var options = new Dictionary<string, string>();
        CriuOpts? criu = field.GetOptions()?.GetExtension(OptsExtensions.Criu);
        if (criu is null)
            return options;
        if (criu.HasHex) options["hex"] = criu.Hex ? "true" : "false";
        if (criu.HasIpadd) options["ipadd"] = criu.Ipadd ? "true" : "false";
        if (criu.HasFlags) options["flags"] = criu.Flags;
        if (criu.HasDev) options["dev"] = criu.Dev ? "true" : "false";
        if (criu.HasOdev) options["odev"] = criu.Odev ? "true" : "false";
        if (criu.HasDict) options["dict"] = criu.Dict;
        if (criu.HasConv) options["conv"] = criu.Conv;
        return options;
    }

    private static bool Same(Dictionary<string, string> a, Dictionary<string, string> b) =>
        a.Count == b.Count && a.All(kv => b.TryGetValue(kv.Key, out string? v) && v == kv.Value);

    private static string Show(Dictionary<string, string> options) =>
        "{" + string.Join(", ", options.Select(kv => $"{kv.Key}={kv.Value}")) + "}";

    private static string Label(FieldDescriptor field) =>
        field.IsRepeated ? "repeated" : field.IsRequired ? "required" : "optional";

    private static string TypeName(FieldType type) => type.ToString().ToLowerInvariant();

    // CRIU's names are snake_case without a package; ours are PascalCase in package criu.
    private static string OurName(string criuName) =>
        "criu." + string.Join('.', criuName.Split('.').Select(part =>
            string.Concat(part.Split('_').Select(w => w.Length == 0 ? w : char.ToUpperInvariant(w[0]) + w[1..]))));

    private static (Dictionary<string, MessageDescriptor> Messages, Dictionary<string, EnumDescriptor> Enums) OurDescriptors()
    {
        var messages = new Dictionary<string, MessageDescriptor>(StringComparer.Ordinal);
        var enums = new Dictionary<string, EnumDescriptor>(StringComparer.Ordinal);
        foreach (Type type in typeof(CoreEntry).Assembly.GetTypes())
        {
            if (type.Namespace != "Crest.Images.Protos" || !type.Name.EndsWith("Reflection", StringComparison.Ordinal))
                continue;
            var file = (FileDescriptor)type.GetProperty("Descriptor", BindingFlags.Public | BindingFlags.Static)!.GetValue(null)!;
            foreach (MessageDescriptor message in file.MessageTypes)
                AddMessage(message, messages, enums);
            foreach (EnumDescriptor e in file.EnumTypes)
                enums[e.FullName] = e;
        }
        return (messages, enums);
    }

    private static void AddMessage(MessageDescriptor message, Dictionary<string, MessageDescriptor> messages, Dictionary<string, EnumDescriptor> enums)
    {
        messages[message.FullName] = message;
        foreach (MessageDescriptor nested in message.NestedTypes)
            AddMessage(nested, messages, enums);
        foreach (EnumDescriptor e in message.EnumTypes)
            enums[e.FullName] = e;
    }
}
