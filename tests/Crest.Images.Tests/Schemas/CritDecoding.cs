// Writes entries as an image of a kind, runs crit on it and hands back the decoded entries.
using System.Text.Json;
using Google.Protobuf;

namespace Crest.Images.Tests.Schemas;

internal static class CritDecoding
{
    /// <summary>The "entries" array crit prints for the image, after checking its "magic" name.</summary>
    public static JsonElement DecodeEntries(ScratchDirectory scratch, ImageKind kind, bool pretty, IEnumerable<(IMessage Entry, byte[]? Payload)> entries, ulong id = 1)
    {
        string path = scratch.Write(ImageKinds.FileName(kind, id), CriuImageFraming.Build(kind, entries));
        using JsonDocument document = Crit.Decode(path, pretty);
        return CritJson.Entries(document, kind.Name).Clone();
    }

    public static JsonElement DecodeEntries(ScratchDirectory scratch, ImageKind kind, bool pretty, params IMessage[] entries) =>
        DecodeEntries(scratch, kind, pretty, entries.Select(e => (e, (byte[]?)null)));

    /// <summary>Decodes plainly and checks every field crit printed against the messages, then decodes
    /// with --pretty and returns that output for checks of the print options.</summary>
    public static JsonElement DecodeAndCompare(ScratchDirectory scratch, ImageKind kind, params IMessage[] entries)
    {
        JsonElement plain = DecodeEntries(scratch, kind, pretty: false, entries);
        Assert.Equal(entries.Length, plain.GetArrayLength());
        for (int i = 0; i < entries.Length; i++)
            CritJson.AssertMatches(entries[i], plain[i], $"{kind.Name}[{i}]");
        return DecodeEntries(scratch, kind, pretty: true, entries);
    }
}
