// Converts between wire-level messages and crit's JSON shape (pycriu's pb2dict/dict2pb), guided only by
// descriptors, so it is trimming- and AOT-safe and re-encoding gives back the exact bytes CRIU wrote.
// Decode: present fields in field-number order under their proto names; enums by name; bytes as
// base64.encodebytes text; repeated fields as arrays. Pretty mode (crit --pretty) adds the (criu) option
// formats; a message field marked hex makes every integer inside it hex, as crit does.
// Encode accepts both forms back: hex and other int(x, 0) literals, flag names, "major:minor", addresses.
using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using Crest.Images.Protos;
using Crest.Images.Wire;
using Google.Protobuf.Reflection;

namespace Crest.Images.Json;

internal static class WireJson
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    // FieldDescriptor.GetOptions() clones the options message on every call: look each field up once.
    private static readonly ConcurrentDictionary<FieldDescriptor, CriuOpts?> s_options = new();

    private static CriuOpts? Options(FieldDescriptor field) =>
        s_options.GetOrAdd(field, static f =>
            f.GetOptions() is { } options && options.HasExtension(OptsExtensions.Criu) ? options.GetExtension(OptsExtensions.Criu) : null);

    // ---------------------------------------------------------------- decode

    /// <exception cref="FormatException">A value crit cannot print either (string that is not UTF-8).</exception>
    public static void Write(PythonJsonWriter json, WireMessage message, bool pretty, bool hex = false,
        Action<PythonJsonWriter>? extra = null)
    {
        json.StartObject();
        foreach (WireField field in message.Fields)
        {
            FieldDescriptor descriptor = field.Descriptor;
            json.Key(descriptor.Name);
            if (!descriptor.IsRepeated)
            {
                WriteValue(json, descriptor, field.Values[0], pretty, hex);
                continue;
            }
            json.StartArray();
            if (pretty && Options(descriptor)?.Ipadd == true && descriptor.FieldType is FieldType.UInt32 or FieldType.Fixed32)
                json.String(CritFormats.DecodeIp(field.Values.Select(v => (uint)(ulong)v).ToArray()));
            else
            {
                foreach (object value in field.Values)
                    WriteValue(json, descriptor, value, pretty, hex);
            }
            json.EndArray();
        }
        extra?.Invoke(json);
        json.EndObject();
    }

    private static void WriteValue(PythonJsonWriter json, FieldDescriptor field, object value, bool pretty, bool hex)
    {
        CriuOpts? options = Options(field);
        hex = hex || options?.Hex == true;
        switch (field.FieldType)
        {
            case FieldType.Message:
                Write(json, (WireMessage)value, pretty, hex);
                return;
            case FieldType.Bytes:
                byte[] bytes = (byte[])value;
                json.String(options?.Conv == "unix_name" ? CritFormats.EncodeQuotedPrintable(bytes) : CritFormats.EncodeBase64Lines(bytes));
                return;
            case FieldType.String:
                try
                {
                    json.String(StrictUtf8.GetString((byte[])value));
                }
                catch (DecoderFallbackException e)
                {
                    throw new FormatException($"field {field.Name} is not valid UTF-8", e);
                }
                return;
            case FieldType.Enum:
                json.String(field.EnumType.FindValueByNumber((int)(ulong)value)!.Name);
                return;
            case FieldType.Bool:
                json.Bool((ulong)value != 0);
                return;
            case FieldType.Float or FieldType.Double:
                throw new FormatException($"field {field.Name}: floating-point fields are not part of CRIU's images");
        }

        Int128 number = ToInteger(field.FieldType, (ulong)value);
        if (pretty)
        {
            if (hex)
            {
                json.String(CritFormats.Hex(number));
                return;
            }
            if (options?.Dev == true)
            {
                json.String(CritFormats.DecodeDev(number, options.Odev));
                return;
            }
            if (options is { HasFlags: true })
            {
                var table = CritFormats.FlagTable(options.Flags);
                json.String(table is null ? CritFormats.Hex(number) : CritFormats.MapFlags(number, table));
                return;
            }
            if (options is { HasDict: true }
                && CritFormats.DictTable(options.Dict, field.Name) is { } names
                && number >= int.MinValue && number <= int.MaxValue
                && names.TryGetValue((int)number, out string? name))
            {
                json.String(name);
                return;
            }
        }
        json.Number(number);
    }

    // The integer a Python protobuf message shows for a raw wire value of the field's type.
    private static Int128 ToInteger(FieldType type, ulong raw) => type switch
    {
        FieldType.Int32 or FieldType.SFixed32 => (int)raw,
        FieldType.UInt32 or FieldType.Fixed32 => (uint)raw,
        FieldType.Int64 or FieldType.SFixed64 => (long)raw,
        FieldType.SInt32 => (int)((uint)raw >> 1) ^ -(int)((uint)raw & 1),
        FieldType.SInt64 => (long)(raw >> 1) ^ -(long)(raw & 1),
        _ => raw,
    };

    // ---------------------------------------------------------------- encode

    /// <summary>Builds a message from a JSON object. <paramref name="skip"/> names keys that are not fields
    /// ("extra" at entry level).</summary>
    /// <exception cref="JsonImageException">A key is not a field, or a value does not fit its field.</exception>
    public static WireMessage Read(MessageDescriptor descriptor, JsonElement json, string input, string path, string? skip = null)
    {
        if (json.ValueKind != JsonValueKind.Object)
            throw new JsonImageException(input, path, $"expected an object for {descriptor.Name}, found {json.ValueKind}");
        var message = new WireMessage(descriptor);
        foreach (JsonProperty property in json.EnumerateObject())
        {
            if (property.Name == skip)
                continue;
            string fieldPath = $"{path}.{property.Name}";
            FieldDescriptor field = descriptor.FindFieldByName(property.Name)
                ?? throw new JsonImageException(input, fieldPath, $"{descriptor.Name} has no field {property.Name}");
            WireField present = message.GetOrAdd(field);
            present.Values.Clear(); // a key given twice: the last one counts, as in Python's json
            if (!field.IsRepeated)
            {
                present.Values.Add(ReadValue(field, property.Value, input, fieldPath));
                continue;
            }
            if (property.Value.ValueKind != JsonValueKind.Array)
                throw new JsonImageException(input, fieldPath, $"expected an array for repeated field {field.Name}");
            if (Options(field)?.Ipadd == true && property.Value.GetArrayLength() > 0
                && property.Value[0].ValueKind == JsonValueKind.String)
            {
                if (!CritFormats.TryEncodeIp(property.Value[0].GetString()!, out uint[] words))
                    throw new JsonImageException(input, fieldPath + "[0]", $"not an IP address: \"{property.Value[0].GetString()}\"");
                foreach (uint word in words)
                    present.Values.Add((ulong)word);
                continue;
            }
            int index = 0;
            foreach (JsonElement item in property.Value.EnumerateArray())
                present.Values.Add(ReadValue(field, item, input, $"{fieldPath}[{index++}]"));
        }

        foreach (FieldDescriptor field in descriptor.Fields.InFieldNumberOrder())
        {
            if (field.IsRequired && message.Find(field.FieldNumber) is null)
                throw new JsonImageException(input, path, $"required field {descriptor.Name}.{field.Name} is missing");
        }
        // An empty repeated field is simply absent on the wire.
        foreach (WireField field in message.Fields.Where(f => f.Values.Count == 0).ToList())
            message.Remove(field.Descriptor.FieldNumber);
        return message;
    }

    private static object ReadValue(FieldDescriptor field, JsonElement json, string input, string path)
    {
        CriuOpts? options = Options(field);
        switch (field.FieldType)
        {
            case FieldType.Message:
                return Read(field.MessageType, json, input, path);
            case FieldType.Bytes:
            {
                string text = ExpectString(json, input, path, field);
                if (options?.Conv == "unix_name")
                    return CritFormats.DecodeQuotedPrintable(Encoding.Latin1.GetBytes(text));
                if (!CritFormats.TryDecodeBase64(text, out byte[] bytes))
                    throw new JsonImageException(input, path, $"field {field.Name}: not base64");
                return bytes;
            }
            case FieldType.String:
                return Encoding.UTF8.GetBytes(ExpectString(json, input, path, field));
            case FieldType.Enum:
            {
                if (json.ValueKind == JsonValueKind.Number && json.TryGetInt32(out int number)
                    && field.EnumType.FindValueByNumber(number) is not null)
                    return (ulong)(long)number;
                string name = ExpectString(json, input, path, field);
                EnumValueDescriptor value = field.EnumType.FindValueByName(name)
                    ?? throw new JsonImageException(input, path, $"{name} is not a value of {field.EnumType.Name}");
                return (ulong)(long)value.Number;
            }
            case FieldType.Bool:
                return json.ValueKind switch
                {
                    JsonValueKind.True => 1UL,
                    JsonValueKind.False => 0UL,
                    _ => throw new JsonImageException(input, path, $"field {field.Name}: expected true or false, found {json.ValueKind}"),
                };
            case FieldType.Float or FieldType.Double:
                throw new JsonImageException(input, path, $"field {field.Name}: floating-point fields are not supported");
        }

        Int128 integer = ReadInteger(field, options, json, input, path);
        (Int128 min, Int128 max) = field.FieldType switch
        {
            FieldType.Int32 or FieldType.SInt32 or FieldType.SFixed32 => ((Int128)int.MinValue, (Int128)int.MaxValue),
            FieldType.UInt32 or FieldType.Fixed32 => (0, uint.MaxValue),
            FieldType.Int64 or FieldType.SInt64 or FieldType.SFixed64 => (long.MinValue, long.MaxValue),
            _ => (0, (Int128)ulong.MaxValue),
        };
        if (integer < min || integer > max)
            throw new JsonImageException(input, path, $"field {field.Name}: {integer} is out of range for {field.FieldType}");
        return field.FieldType switch
        {
            FieldType.SInt32 => (ulong)(uint)(((int)integer << 1) ^ ((int)integer >> 31)),
            FieldType.SInt64 => (ulong)(((long)integer << 1) ^ ((long)integer >> 63)),
            FieldType.Int32 or FieldType.Int64 or FieldType.SFixed64 => (ulong)(long)integer,
            FieldType.SFixed32 => (uint)(int)integer,
            _ => (ulong)integer,
        };
    }

    private static Int128 ReadInteger(FieldDescriptor field, CriuOpts? options, JsonElement json, string input, string path)
    {
        if (json.ValueKind == JsonValueKind.Number)
        {
            if (!CritFormats.TryParsePythonInt(json.GetRawText(), out Int128 number))
                throw new JsonImageException(input, path, $"field {field.Name}: {json.GetRawText()} is not an integer");
            return number;
        }
        if (json.ValueKind is JsonValueKind.True or JsonValueKind.False)
            return json.ValueKind == JsonValueKind.True ? 1 : 0;
        string text = ExpectString(json, input, path, field);
        if (options?.Dev == true)
        {
            if (CritFormats.TryEncodeDev(text, options.Odev, out Int128 dev))
                return dev;
            throw new JsonImageException(input, path, $"field {field.Name}: \"{text}\" is not major:minor");
        }
        if (options is { HasFlags: true } && CritFormats.FlagTable(options.Flags) is { } table)
        {
            if (CritFormats.TryUnmapFlags(text, table, out Int128 flags))
                return flags;
            throw new JsonImageException(input, path, $"field {field.Name}: \"{text}\" is not a set of {options.Flags} flags");
        }
        if (options is { HasDict: true } && CritFormats.DictTable(options.Dict, field.Name) is { } names)
        {
            foreach ((int value, string name) in names)
            {
                if (name == text)
                    return value;
            }
        }
        if (CritFormats.TryParsePythonInt(text, out Int128 parsed))
            return parsed;
        throw new JsonImageException(input, path, $"field {field.Name}: \"{text}\" is not an integer");
    }

    private static string ExpectString(JsonElement json, string input, string path, FieldDescriptor field) =>
        json.ValueKind == JsonValueKind.String
            ? json.GetString()!
            : throw new JsonImageException(input, path, $"field {field.Name}: expected a string, found {json.ValueKind}");
}
