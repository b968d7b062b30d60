// For every framed image kind: fill each field of its entry message, write two entries in CRIU's framing
// (with the counted payload the kind carries), and check that crit 3.17 decodes the file and prints back
// every field under CRIU's name with the value we wrote. A wrong field number, wire type, label, name or
// payload length in our schemas shows up here as a crit failure or a mismatch.
using System.Text.Json;
using Google.Protobuf;

namespace Crest.Images.Tests.Schemas;

public sealed class EveryKindDecodesWithCritTests : IClassFixture<ScratchDirectory>
{
    // Kinds crit 3.17 has no decoder for (images.py has no handler), although CRIU writes them.
    private static readonly HashSet<string> s_critCannotDecode = ["SIGNAL", "BINFMT_MISC"];

    private readonly ScratchDirectory _scratch;

    public EveryKindDecodesWithCritTests(ScratchDirectory scratch) => _scratch = scratch;

    public static TheoryData<string> FramedKinds()
    {
        var data = new TheoryData<string>();
        foreach (ImageKind kind in ImageKinds.All)
        {
            if (!kind.IsRaw && !s_critCannotDecode.Contains(kind.Name))
                data.Add(kind.FileNamePattern);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(FramedKinds))]
    public void CritDecodesEveryField(string fileNamePattern)
    {
        ImageKind kind = ImageKinds.All.Single(k => k.FileNamePattern == fileNamePattern);
        var written = new List<(IMessage Entry, byte[]? Payload)>();

        if (kind.HeadEntry is not null)
            written.Add((MessageFiller.Fill(kind.HeadEntry, seed: 7), null));
        int count = kind.Name == "GHOST_FILE" ? 1 : 2;
        for (int i = 0; i < count; i++)
        {
            IMessage entry = MessageFiller.Fill(kind.Entry!, seed: i);
            written.Add((entry, PreparePayload(kind, entry, i)));
        }

        string path = _scratch.Write(ImageKinds.FileName(kind, 42), CriuImageFraming.Build(kind, written));
        using JsonDocument decoded = Crit.Decode(path);
        JsonElement entries = CritJson.Entries(decoded, kind.Name);

        Assert.Equal(written.Count, entries.GetArrayLength());
        for (int i = 0; i < written.Count; i++)
        {
            (IMessage entry, byte[]? payload) = written[i];
            CritJson.AssertMatches(entry, entries[i], $"{kind.Name}[{i}]");
            if (payload is not null)
                AssertPayload(kind, entry, payload, entries[i].GetProperty("extra"));
        }

        // The pretty printer applies the (criu) options (hex, flags, dict, ipadd, dev); it must cope too.
        using JsonDocument pretty = Crit.Decode(path, pretty: true);
        Assert.Equal(written.Count, CritJson.Entries(pretty, kind.Name).GetArrayLength());
    }

    // Counts that crit reads payloads by get small values and the payload bytes to match; kinds whose
    // layout is irregular get zero counts so that the entry stands alone.
    private static byte[]? PreparePayload(ImageKind kind, IMessage entry, int index)
    {
        switch (kind.Name)
        {
            case "GHOST_FILE":
                MessageFiller.Set(entry, "chunks", false);
                return "contents of an unlinked file"u8.ToArray();
            case "IPCNS_SHM":
                MessageFiller.Set(entry, "size", 0UL);
                return null;
            case "IPCNS_SEM":
                MessageFiller.Set(entry, "nsems", 0U);
                return null;
            case "IPCNS_MSG":
                MessageFiller.Set(entry, "qnum", 0U);
                return null;
        }
        if (kind.ExtraPayloadFields.Count == 0)
            return null;

        var payload = new List<byte>();
        for (int part = 0; part < kind.ExtraPayloadFields.Count; part++)
        {
            uint length = (uint)(3 + 2 * part + index);
            MessageFiller.Set(entry, kind.ExtraPayloadFields[part], length);
            for (int b = 0; b < length; b++)
                payload.Add((byte)('a' + part * 8 + b));
        }
        return [.. payload];
    }

    private static void AssertPayload(ImageKind kind, IMessage entry, byte[] payload, JsonElement extra)
    {
        if (kind.Name == "TCP_STREAM")
        {
            // crit splits the payload into the receive queue (inq_len bytes) and the send queue.
            byte[] inq = Convert.FromBase64String(extra.GetProperty("inq").GetString()!);
            byte[] outq = Convert.FromBase64String(extra.GetProperty("outq").GetString()!);
            Assert.Equal(payload, inq.Concat(outq).ToArray());
            Assert.Equal(((Crest.Images.Protos.TcpStreamEntry)entry).InqLen, (uint)inq.Length);
            return;
        }
        Assert.Equal(payload, Convert.FromBase64String(extra.GetString()!));
    }
}
