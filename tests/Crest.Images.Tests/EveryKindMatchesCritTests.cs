// For every framed image kind: entries with every field set (the schema tests' MessageFiller), written by
// our ImageWriter, must decode to exactly the text crit prints, plain and --pretty, and our JSON must
// encode back to the very same bytes.
using System.Text;
using Crest.Images.Json;
using Crest.Images.Tests.Schemas;
using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace Crest.Images.Tests;

public sealed class EveryKindMatchesCritTests
{
    // Kinds crit 3.17 has no handler for in images.py, although CRIU writes them.
    private static readonly HashSet<string> s_critCannotDecode = ["SIGNAL", "BINFMT_MISC"];

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

    [Theory(Timeout = 120_000)]
    [MemberData(nameof(FramedKinds))]
    public async Task OurJsonIsCritsJsonAndEncodesBack(string fileNamePattern)
    {
        await Task.Yield();
        ImageKind kind = ImageKinds.All.Single(k => k.FileNamePattern == fileNamePattern);
        using var scratch = new TempDirectory();
        string path = scratch.File(ImageKinds.FileName(kind, 42));
        using (ImageWriter writer = ImageWriter.Create(path, kind, syncOnClose: false))
        {
            if (kind.HeadEntry is not null)
                writer.WriteEntry(WithoutNewerFields(MessageFiller.Fill(kind.HeadEntry, seed: 7)));
            int count = kind.Name == "GHOST_FILE" ? 1 : 3;
            for (int i = 0; i < count; i++)
            {
                IMessage entry = WithoutNewerFields(MessageFiller.Fill(kind.Entry!, seed: i));
                byte[] payload = PreparePayload(kind, entry, i);
                writer.WriteEntry(entry);
                writer.WritePayload(payload);
            }
        }

        byte[] image = File.ReadAllBytes(path);
        foreach (bool pretty in new[] { false, true })
        {
            var output = new MemoryStream();
            CritTool.Decode(new MemoryStream(image), Path.GetFileName(path), output, pretty);
            string ours = Encoding.ASCII.GetString(output.ToArray());
            Assert.Equal(Crit.Decode(path, pretty), ours);

            var again = new MemoryStream();
            CritTool.Encode(new MemoryStream(output.ToArray()), "decoded.json", again);
            Assert.Equal(Convert.ToHexString(image), Convert.ToHexString(again.ToArray()));
        }
    }

    // Fields CRIU added after crit 3.17: crit drops them as unknown, we print them; leave them out here.
    private static IMessage WithoutNewerFields(IMessage message)
    {
        foreach (FieldDescriptor field in message.Descriptor.Fields.InFieldNumberOrder())
        {
            if (CritJson.NewerThanCrit.Contains(field.FullName))
            {
                field.Accessor.Clear(message);
                continue;
            }
            if (field.FieldType != FieldType.Message)
                continue;
            if (field.IsRepeated)
            {
                foreach (IMessage item in (System.Collections.IList)field.Accessor.GetValue(message))
                    WithoutNewerFields(item);
            }
            else if (field.Accessor.HasValue(message))
                WithoutNewerFields((IMessage)field.Accessor.GetValue(message));
        }
        return message;
    }

    // Small payload counts with matching bytes; the irregular kinds get zero counts (their layouts are
    // covered by the samples) except ghost-file, whose contents follow its one entry.
    private static byte[] PreparePayload(ImageKind kind, IMessage entry, int index)
    {
        byte[] Bytes(int length) => Enumerable.Range(0, length).Select(i => (byte)(i * 7 + index)).ToArray();
        switch (kind.Name)
        {
            case "GHOST_FILE":
                MessageFiller.Set(entry, "chunks", false);
                return "contents of an unlinked file"u8.ToArray();
            case "IPCNS_SHM":
                MessageFiller.Set(entry, "size", 0UL);
                return [];
            case "IPCNS_SEM":
                MessageFiller.Set(entry, "nsems", 0U);
                return [];
            case "IPCNS_MSG":
                MessageFiller.Set(entry, "qnum", 0U);
                return [];
            case "TCP_STREAM":
                MessageFiller.Set(entry, "inq_len", 5U + (uint)index);
                MessageFiller.Set(entry, "outq_len", 3U);
                return Bytes(8 + index);
            case "BPFMAP_DATA":
                MessageFiller.Set(entry, "keys_bytes", 4U);
                MessageFiller.Set(entry, "values_bytes", 12U);
                return Bytes(16);
        }
        if (kind.ExtraPayloadFields is [string field])
        {
            MessageFiller.Set(entry, field, (uint)(10 + index));
            return Bytes(10 + index);
        }
        return [];
    }
}
