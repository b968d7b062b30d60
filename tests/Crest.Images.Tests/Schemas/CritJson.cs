// Compares a message with crit's plain (not --pretty) JSON for it: crit prints every field that is set,
// by its name in CRIU's own schema, integers as numbers, enums by value name, bytes as base64
// (quoted-printable for (criu).conv = "unix_name").
using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Crest.Images.Protos;
using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace Crest.Images.Tests.Schemas;

internal static class CritJson
{
    /// <summary>Fields our schemas carry that crit 3.17's do not: crit must skip them as unknown.</summary>
    public static readonly IReadOnlySet<string> NewerThanCrit = new HashSet<string>(StringComparer.Ordinal)
    {
        "criu.TaskCoreEntry.stop_signo",
        "criu.ThreadCoreEntry.cg_set",
        "criu.InventoryEntry.plugins_entry",
        "criu.InventoryEntry.dump_criu_run_id",
        "criu.IpOptsEntry.pktinfo",
        "criu.IpOptsEntry.tos",
        "criu.IpOptsEntry.ttl",
        "criu.CredsEntry.no_new_privs",
        "criu.CredsEntry.cap_amb",
        // Crest's own extension (vma.proto field 1000), in no CRIU version: guard regions of a VMA.
        "criu.VmaEntry.crest_guard_ranges",
        // Crest's own extensions (regfile.proto fields 1000-1002): identity of a file at dump time.
        "criu.RegFileEntry.crest_dev",
        "criu.RegFileEntry.crest_ino",
        "criu.RegFileEntry.crest_mtime_ns",
        // Crest's own extension (pipe.proto field 1000): a pipe end marked --external at dump.
        "criu.PipeEntry.crest_ext",
    };

    public static void AssertMatches(IMessage message, JsonElement json, string path)
    {
        Assert.Equal(JsonValueKind.Object, json.ValueKind);
        foreach (FieldDescriptor field in message.Descriptor.Fields.InFieldNumberOrder())
        {
            object value = field.Accessor.GetValue(message);
            bool isSet = field.IsRepeated ? ((IList)value).Count > 0 : field.Accessor.HasValue(message);
            if (!isSet)
                continue;

            string where = $"{path}.{field.Name}";
            if (NewerThanCrit.Contains(field.FullName))
            {
                Assert.False(json.TryGetProperty(field.Name, out _), $"{where}: crit 3.17 should not know this field");
                continue;
            }
            Assert.True(json.TryGetProperty(field.Name, out JsonElement element), $"{where} is missing from crit's output");

            if (field.IsRepeated)
            {
                var list = (IList)value;
                Assert.Equal(JsonValueKind.Array, element.ValueKind);
                Assert.Equal(list.Count, element.GetArrayLength());
                for (int i = 0; i < list.Count; i++)
                    AssertValue(field, list[i]!, element[i], $"{where}[{i}]");
            }
            else
            {
                AssertValue(field, value, element, where);
            }
        }
    }

    private static void AssertValue(FieldDescriptor field, object value, JsonElement element, string where)
    {
        switch (field.FieldType)
        {
            case FieldType.Message:
            case FieldType.Group:
                AssertMatches((IMessage)value, element, where);
                break;
            case FieldType.Enum:
                Assert.Equal(field.EnumType.FindValueByNumber(Convert.ToInt32(value, CultureInfo.InvariantCulture)).Name, element.GetString());
                break;
            case FieldType.Bool:
                Assert.Equal((bool)value, element.GetBoolean());
                break;
            case FieldType.String:
                Assert.Equal((string)value, element.GetString());
                break;
            case FieldType.Bytes:
                byte[] expected = ((ByteString)value).ToByteArray();
                string text = element.GetString() ?? "";
                byte[] actual = Conv(field) == "unix_name" ? Encoding.ASCII.GetBytes(text) : Convert.FromBase64String(text);
                Assert.Equal(expected, actual);
                break;
            default:
                Assert.True(element.ValueKind == JsonValueKind.Number, $"{where}: expected a number, got {element}");
                Assert.Equal(Convert.ToString(value, CultureInfo.InvariantCulture), element.GetRawText());
                break;
        }
    }

    private static string? Conv(FieldDescriptor field) => field.GetOptions()?.GetExtension(OptsExtensions.Criu)?.Conv;

    /// <summary>The entries array of a decoded image, after checking its magic name.</summary>
    public static JsonElement Entries(JsonDocument document, string magic)
    {
        Assert.Equal(magic, document.RootElement.GetProperty("magic").GetString());
        return document.RootElement.GetProperty("entries");
    }
}
