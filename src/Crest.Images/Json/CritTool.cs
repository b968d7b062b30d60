// crit's commands over our images: decode (image -> JSON), encode (JSON -> image), show (pretty decode),
// info (magic and entry count). The JSON shape is pycriu's (lib/pycriu/images/images.py):
//
//   {"magic": "CORE", "entries": [ {entry fields..., "extra": payload}, ... ]}
//
// "magic" is crit's name for the kind (the prefix magic is implied by it). Kinds with raw data after an
// entry carry it as "extra": base64 text for pipes-data, fifo-data, sk-queues, bpfmap-data and ghost-file
// chunks, {"inq": ..., "outq": ...} for tcp-stream, a list of u16 values for ipcns-sem, and a list
// alternating message objects and base64 for ipcns-msg. A pagemap's entries are [head, entry, ...].
// Decode output is produced whole before anything is written, so a failure leaves no partial JSON.
using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Crest.Images.Protos;
using Crest.Images.Wire;
using Google.Protobuf.Reflection;

namespace Crest.Images.Json;

public static class CritTool
{
    /// <summary>crest decode: the image in <paramref name="input"/> as crit's JSON (one line, or crit's
    /// --pretty form), followed by a newline.</summary>
    /// <exception cref="ImageFormatException">The image is malformed.</exception>
    public static void Decode(Stream input, string inputName, Stream output, bool pretty)
    {
        ArgumentNullException.ThrowIfNull(output);
        string text = DecodeToString(input, inputName, pretty);
        output.Write(Encoding.ASCII.GetBytes(text));
        output.Flush();
    }

    /// <summary>crest encode: crit's JSON (pretty or not) back to the binary image.</summary>
    /// <exception cref="JsonImageException">The JSON is not a valid image description.</exception>
    public static void Encode(Stream input, string inputName, Stream output)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(input, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new JsonImageException(inputName, e.Path ?? "$",
                $"not JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1}): {e.Message}", e);
        }
        using (document)
        {
            var image = new MemoryStream();
            EncodeImage(document.RootElement, inputName, image);
            image.WriteTo(output);
            output.Flush();
        }
    }

    /// <summary>crest show FILE: decode --pretty to <paramref name="output"/>.</summary>
    public static void Show(string path, TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(output);
        using FileStream file = OpenImage(path);
        output.Write(DecodeToString(file, Path.GetFileName(path), pretty: true));
        output.Flush();
    }

    /// <summary>crest info FILE: {"magic": ..., "count": N} as crit info prints it (indent 4); a pagemap's
    /// head is not counted.</summary>
    public static void Info(string path, TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(output);
        using FileStream file = OpenImage(path);
        using var reader = new ImageReader(file, Path.GetFileName(path), leaveOpen: true);
        int count = 0;
        WalkEntries(reader, new PythonJsonWriter(TextWriter.Null, indent: false), pretty: false, () => count++);
        if (reader.Kind.HasHeadEntry && count > 0)
            count--;
        var json = new PythonJsonWriter(output, indent: true);
        json.StartObject();
        json.Key("magic");
        json.String(reader.Kind.Name);
        json.Key("count");
        json.Number(count);
        json.EndObject();
        output.Write('\n');
        output.Flush();
    }

    private static FileStream OpenImage(string path) =>
        new(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, System.IO.FileOptions.SequentialScan);

    private static string DecodeToString(Stream input, string inputName, bool pretty)
    {
        ArgumentNullException.ThrowIfNull(input);
        using var reader = new ImageReader(input, inputName, leaveOpen: true);
        var text = new StringWriter { NewLine = "\n" };
        var json = new PythonJsonWriter(text, pretty);
        json.StartObject();
        json.Key("magic");
        json.String(reader.Kind.Name);
        json.Key("entries");
        json.StartArray();
        WalkEntries(reader, json, pretty, onEntry: null);
        json.EndArray();
        json.EndObject();
        text.Write('\n');
        return text.ToString();
    }

    // ---------------------------------------------------------------- image -> JSON

    private static void WalkEntries(ImageReader reader, PythonJsonWriter json, bool pretty, Action? onEntry)
    {
        switch (reader.Kind.Name)
        {
            case "GHOST_FILE":
                WalkGhostFile(reader, json, pretty, onEntry);
                return;
            case "IPCNS_SHM" or "IPCNS_SEM" or "IPCNS_MSG":
                WalkIpc(reader, json, pretty, onEntry);
                return;
        }

        while (true)
        {
            int index = reader.EntryIndex;
            long offset = reader.Offset;
            WireMessage? entry = reader.ReadWireEntry();
            if (entry is null)
                return;
            Action<PythonJsonWriter>? extra = null;
            if (reader.Kind.ExtraPayloadFields.Count > 0)
            {
                byte[] payload = reader.ReadPayload();
                if (reader.Kind.Name == "TCP_STREAM")
                {
                    int inq = (int)(entry.Scalar("inq_len") ?? 0);
                    extra = j =>
                    {
                        j.StartObject();
                        j.Key("inq");
                        j.String(CritFormats.EncodeBase64Lines(payload.AsSpan(0, inq)));
                        j.Key("outq");
                        j.String(CritFormats.EncodeBase64Lines(payload.AsSpan(inq)));
                        j.EndObject();
                    };
                }
                else
                    extra = j => j.String(CritFormats.EncodeBase64Lines(payload));
            }
            WriteEntry(reader, json, entry, pretty, extra, index, offset);
            onEntry?.Invoke();
        }
    }

    // ghost-file: a ghost_file_entry; if it says `chunks`, ghost_chunk_entry entries each followed by `len`
    // bytes; otherwise the rest of the file is the file's contents.
    private static void WalkGhostFile(ImageReader reader, PythonJsonWriter json, bool pretty, Action? onEntry)
    {
        long offset = reader.Offset;
        if (!reader.TryReadEntryBytes(out byte[] headBytes))
            throw reader.Error(0, offset, "ghost file image has no entry");
        WireMessage head = reader.ParseWire(GhostFileEntry.Descriptor, headBytes, 0, offset);
        if ((head.Scalar("chunks") ?? 0) == 0)
        {
            byte[] contents = reader.ReadToEnd(0);
            WriteEntry(reader, json, head, pretty, j => j.String(CritFormats.EncodeBase64Lines(contents)), 0, offset);
            onEntry?.Invoke();
            return;
        }
        WriteEntry(reader, json, head, pretty, null, 0, offset);
        onEntry?.Invoke();
        while (true)
        {
            int index = reader.EntryIndex;
            offset = reader.Offset;
            if (!reader.TryReadEntryBytes(out byte[] chunkBytes))
                return;
            WireMessage chunk = reader.ParseWire(GhostChunkEntry.Descriptor, chunkBytes, index, offset);
            reader.ExpectPayload(ToLength(reader, chunk.Scalar("len") ?? 0, index), index);
            byte[] data = reader.ReadPayload();
            WriteEntry(reader, json, chunk, pretty, j => j.String(CritFormats.EncodeBase64Lines(data)), index, offset);
            onEntry?.Invoke();
        }
    }

    // ipcns-shm: segment bytes padded to 4; ipcns-sem: nsems u16 values padded to 8; ipcns-msg: qnum times
    // (u32 length, ipc_msg, msize bytes padded to 8).
    private static void WalkIpc(ImageReader reader, PythonJsonWriter json, bool pretty, Action? onEntry)
    {
        while (true)
        {
            int index = reader.EntryIndex;
            long offset = reader.Offset;
            if (!reader.TryReadEntryBytes(out byte[] bytes))
                return;
            WireMessage entry = reader.ParseWire(reader.Kind.Entry!, bytes, index, offset);
            Action<PythonJsonWriter> extra;
            switch (reader.Kind.Name)
            {
                case "IPCNS_SHM":
                {
                    long size = ToLength(reader, entry.Scalar("size") ?? 0, index);
                    reader.ExpectPayload(RoundUp(size, 4), index);
                    byte[] data = reader.ReadPayload();
                    extra = j => j.String(CritFormats.EncodeBase64Lines(data.AsSpan(0, (int)size)));
                    break;
                }
                case "IPCNS_SEM":
                {
                    long count = (long)(entry.Scalar("nsems") ?? 0);
                    reader.ExpectPayload(RoundUp(2 * count, 8), index);
                    byte[] data = reader.ReadPayload();
                    extra = j =>
                    {
                        j.StartArray();
                        for (int i = 0; i < count; i++)
                            j.Number(BinaryPrimitives.ReadUInt16LittleEndian(data.AsSpan(2 * i)));
                        j.EndArray();
                    };
                    break;
                }
                default:
                {
                    ulong queued = entry.Scalar("qnum") ?? 0;
                    var messages = new List<(WireMessage Message, byte[] Data)>();
                    for (ulong i = 0; i < queued; i++)
                    {
                        int messageIndex = reader.EntryIndex;
                        long messageOffset = reader.Offset;
                        if (!reader.TryReadEntryBytes(out byte[] messageBytes))
                            throw reader.Error(messageIndex, messageOffset, $"queue holds {queued} messages but the image ends after {i}");
                        WireMessage message = reader.ParseWire(IpcMsg.Descriptor, messageBytes, messageIndex, messageOffset);
                        long size = (long)(message.Scalar("msize") ?? 0);
                        reader.ExpectPayload(RoundUp(size, 8), messageIndex);
                        messages.Add((message, reader.ReadPayload()[..(int)size]));
                    }
                    extra = j =>
                    {
                        j.StartArray();
                        foreach ((WireMessage message, byte[] data) in messages)
                        {
                            WireJson.Write(j, message, pretty: false);
                            j.String(CritFormats.EncodeBase64Lines(data));
                        }
                        j.EndArray();
                    };
                    break;
                }
            }
            WriteEntry(reader, json, entry, pretty, extra, index, offset);
            onEntry?.Invoke();
        }
    }

    private static long ToLength(ImageReader reader, ulong value, int index) =>
        value <= (ulong)reader.MaxPayloadSize ? (long)value
            : throw reader.Error(index, reader.Offset, $"payload length {value} exceeds the limit of {reader.MaxPayloadSize} bytes");

    private static long RoundUp(long value, long alignment) => (value + alignment - 1) / alignment * alignment;

    private static void WriteEntry(ImageReader reader, PythonJsonWriter json, WireMessage entry, bool pretty,
        Action<PythonJsonWriter>? extra, int index, long offset)
    {
        try
        {
            WireJson.Write(json, entry, pretty, extra: extra is null ? null : j =>
            {
                j.Key("extra");
                extra(j);
            });
        }
        catch (FormatException e)
        {
            throw reader.Error(index, offset, e.Message, e);
        }
    }

    // ---------------------------------------------------------------- JSON -> image

    private static void EncodeImage(JsonElement root, string input, Stream output)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new JsonImageException(input, "$", "expected an object with \"magic\" and \"entries\"");
        if (!root.TryGetProperty("magic", out JsonElement magicJson) || magicJson.ValueKind != JsonValueKind.String)
            throw new JsonImageException(input, "$.magic", "missing or not a string");
        string magic = magicJson.GetString()!;
        ImageKind kind = ImageKinds.ByName(magic)
            ?? throw new JsonImageException(input, "$.magic", $"unknown image magic \"{magic}\"");
        if (kind.IsRaw)
            throw new JsonImageException(input, "$.magic", $"{magic} images are raw data, not entries");
        if (!root.TryGetProperty("entries", out JsonElement entries) || entries.ValueKind != JsonValueKind.Array)
            throw new JsonImageException(input, "$.entries", "missing or not an array");
        foreach (JsonProperty property in root.EnumerateObject())
        {
            if (property.Name is not ("magic" or "entries"))
                throw new JsonImageException(input, "$." + property.Name, "unexpected key");
        }

        using var writer = new ImageWriter(output, kind, leaveOpen: true);
        int index = 0;
        bool ghostChunks = false;
        foreach (JsonElement item in entries.EnumerateArray())
        {
            string path = $"$.entries[{index}]";
            MessageDescriptor descriptor = kind.Name == "GHOST_FILE" && index > 0
                ? GhostChunkEntry.Descriptor
                : (index == 0 ? kind.HeadEntry : null) ?? kind.Entry!;
            bool hasExtra = kind.ExtraPayloadFields.Count > 0 || kind.HasIrregularLayout;
            WireMessage entry = WireJson.Read(descriptor, item, input, path, hasExtra ? "extra" : null);
            writer.WriteEntry(ProtoWire.Serialize(entry), descriptor);
            JsonElement? extra = item.ValueKind == JsonValueKind.Object && item.TryGetProperty("extra", out JsonElement e) ? e : null;
            string extraPath = path + ".extra";

            switch (kind.Name)
            {
                case "TCP_STREAM":
                {
                    byte[] inq = Base64Field(extra, "inq", input, extraPath);
                    byte[] outq = Base64Field(extra, "outq", input, extraPath);
                    ExpectLength(inq.Length, entry.Scalar("inq_len") ?? 0, input, extraPath + ".inq");
                    ExpectLength(outq.Length, entry.Scalar("outq_len") ?? 0, input, extraPath + ".outq");
                    writer.WritePayload(inq);
                    writer.WritePayload(outq);
                    break;
                }
                case "GHOST_FILE":
                    if (index == 0)
                    {
                        ghostChunks = (entry.Scalar("chunks") ?? 0) != 0;
                        if (!ghostChunks)
                            writer.WritePayload(Base64(extra, input, extraPath));
                        else if (extra is not null)
                            throw new JsonImageException(input, extraPath, "a chunked ghost file keeps its data in the chunk entries");
                    }
                    else
                    {
                        if (!ghostChunks)
                            throw new JsonImageException(input, path, "a ghost file without chunks has exactly one entry");
                        byte[] data = Base64(extra, input, extraPath);
                        ExpectLength(data.Length, entry.Scalar("len") ?? 0, input, extraPath);
                        writer.WritePayload(data);
                    }
                    break;
                case "IPCNS_SHM":
                {
                    byte[] data = Base64(extra, input, extraPath);
                    ulong size = entry.Scalar("size") ?? 0;
                    ExpectLength(data.Length, size, input, extraPath);
                    writer.WritePayload(data);
                    writer.WritePayload(new byte[RoundUp(data.Length, 4) - data.Length]);
                    break;
                }
                case "IPCNS_SEM":
                    writer.WritePayload(Semaphores(extra, (long)(entry.Scalar("nsems") ?? 0), input, extraPath));
                    break;
                case "IPCNS_MSG":
                    WriteMessageQueue(writer, extra, entry.Scalar("qnum") ?? 0, input, extraPath);
                    break;
                default:
                    if (kind.ExtraPayloadFields.Count > 0)
                    {
                        byte[] data = extra is null ? [] : Base64(extra, input, extraPath);
                        ulong declared = 0;
                        foreach (string name in kind.ExtraPayloadFields)
                            declared += entry.Scalar(name) ?? 0;
                        ExpectLength(data.Length, declared, input, extraPath);
                        writer.WritePayload(data);
                    }
                    break;
            }
            index++;
        }
        writer.Complete();
    }

    private static void ExpectLength(long actual, ulong declared, string input, string path)
    {
        if ((ulong)actual != declared)
            throw new JsonImageException(input, path, $"holds {actual} bytes but the entry declares {declared}");
    }

    private static byte[] Base64(JsonElement? json, string input, string path)
    {
        if (json is not { ValueKind: JsonValueKind.String } text)
            throw new JsonImageException(input, path, "missing or not a base64 string");
        if (!CritFormats.TryDecodeBase64(text.GetString()!, out byte[] data))
            throw new JsonImageException(input, path, "not base64");
        return data;
    }

    private static byte[] Base64Field(JsonElement? json, string name, string input, string path)
    {
        if (json is not { ValueKind: JsonValueKind.Object } obj || !obj.TryGetProperty(name, out JsonElement value))
            throw new JsonImageException(input, $"{path}.{name}", "missing");
        return Base64(value, input, $"{path}.{name}");
    }

    private static byte[] Semaphores(JsonElement? json, long count, string input, string path)
    {
        if (json is not { ValueKind: JsonValueKind.Array } list)
            throw new JsonImageException(input, path, "missing or not a list of semaphore values");
        if (list.GetArrayLength() != count)
            throw new JsonImageException(input, path, $"holds {list.GetArrayLength()} values but nsems is {count}");
        byte[] data = new byte[RoundUp(2 * count, 8)];
        int i = 0;
        foreach (JsonElement value in list.EnumerateArray())
        {
            if (value.ValueKind != JsonValueKind.Number || !value.TryGetUInt16(out ushort semaphore))
                throw new JsonImageException(input, $"{path}[{i}]", "not a 16-bit semaphore value");
            BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(2 * i), semaphore);
            i++;
        }
        return data;
    }

    private static void WriteMessageQueue(ImageWriter writer, JsonElement? json, ulong queued, string input, string path)
    {
        if (json is not { ValueKind: JsonValueKind.Array } list)
            throw new JsonImageException(input, path, "missing or not a list of messages");
        if ((ulong)list.GetArrayLength() != 2 * queued)
            throw new JsonImageException(input, path, $"holds {list.GetArrayLength()} items but qnum {queued} needs {2 * queued}");
        for (int i = 0; i < list.GetArrayLength(); i += 2)
        {
            WireMessage message = WireJson.Read(IpcMsg.Descriptor, list[i], input, $"{path}[{i}]");
            byte[] data = Base64(list[i + 1], input, $"{path}[{i + 1}]");
            ExpectLength(data.Length, message.Scalar("msize") ?? 0, input, $"{path}[{i + 1}]");
            writer.WriteEntry(ProtoWire.Serialize(message), IpcMsg.Descriptor);
            writer.WritePayload(data);
            writer.WritePayload(new byte[RoundUp(data.Length, 8) - data.Length]);
        }
    }
}
