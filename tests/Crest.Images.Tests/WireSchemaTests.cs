// The descriptor-free entry schemas (Wire/WireSchemas.cs, read from the embedded protoc descriptor set) say
// what Google.Protobuf's descriptors say, for every message every image kind can hold; every kind names its
// messages (so dump and restore never build a descriptor); and the schema check accepts and refuses exactly
// the bytes the descriptor-driven parse accepts and refuses, on valid entries and on random corruptions.
using Crest.Images.Protos;
using Crest.Images.Wire;
using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace Crest.Images.Tests;

public sealed class WireSchemaTests
{
    public static TheoryData<string> KindsWithEntries()
    {
        var data = new TheoryData<string>();
        foreach (ImageKind kind in ImageKinds.All)
        {
            if (kind.Entry is not null) data.Add(ImageKinds.FileName(kind, 1));
        }
        return data;
    }

    private static ImageKind KindOf(string fileName) => ImageKinds.ForFileName(fileName)!;

    [Theory]
    [MemberData(nameof(KindsWithEntries))]
    public void EveryKindNamesItsMessagesAndTheSchemaMatchesTheDescriptor(string fileName)
    {
        ImageKind kind = KindOf(fileName);
        Assert.Equal(kind.Entry!.Name, kind.EntryName);
        Assert.Equal(kind.HeadEntry?.Name, kind.HeadEntryName);
        var seen = new HashSet<string>();
        AssertSame(kind.Entry, WireSchemas.FindCriu(kind.EntryName!), seen);
        if (kind.HeadEntry is not null) AssertSame(kind.HeadEntry, WireSchemas.FindCriu(kind.HeadEntryName!), seen);
    }

    private static void AssertSame(MessageDescriptor descriptor, MessageSchema? schema, HashSet<string> seen)
    {
        Assert.NotNull(schema);
        Assert.Equal(descriptor.FullName, schema.FullName);
        Assert.Equal(descriptor.Name, schema.Name);
        if (!seen.Add(descriptor.FullName)) return;
        Assert.Equal(descriptor.Fields.InFieldNumberOrder().Where(f => f.IsRequired).Select(f => f.FieldNumber),
            schema.Required.Select(f => f.Number));
        foreach (FieldDescriptor field in descriptor.Fields.InFieldNumberOrder())
        {
            SchemaField? mine = schema.FindFieldByNumber(field.FieldNumber);
            Assert.NotNull(mine);
            Assert.Equal(field.Name, mine.Name);
            Assert.Equal(field.FieldType, mine.Type);
            Assert.Equal(field.IsRequired, mine.IsRequired);
            Assert.Equal(field.IsRepeated, mine.IsRepeated);
            if (field.FieldType == FieldType.Enum)
                Assert.Equal(field.EnumType.Values.Select(v => v.Number).Order(), mine.EnumValues!.Order());
            else
                Assert.Null(mine.EnumValues);
            if (field.FieldType == FieldType.Message)
                AssertSame(field.MessageType, mine.MessageType, seen);
        }
    }

    [Fact]
    public void UnknownMessagesHaveNoSchema()
    {
        Assert.Null(WireSchemas.FindCriu("NoSuchEntry"));
        Assert.NotNull(WireSchemas.Find(".criu.CoreEntry"));
    }

    private static IEnumerable<(MessageDescriptor Descriptor, byte[] Bytes)> ValidEntries()
    {
        yield return (CoreEntry.Descriptor, new CoreEntry
        {
            Mtype = CoreEntry.Types.March.X8664,
            ThreadInfo = new ThreadInfoX86
            {
                ClearTidAddr = 0x7f3c2a1ff9d0,
                Gpregs = new UserX86RegsEntry
                {
                    R15 = 1, R14 = 2, R13 = 3, R12 = 4, Bp = 5, Bx = 6, R11 = 0x246, R10 = 0, R9 = 0, R8 = 0,
                    Ax = unchecked((ulong)-516), Cx = 0, Dx = 0, Si = 0, Di = 0, OrigAx = 230, Ip = 0x401000,
                    Cs = 0x33, Flags = 0x246, Sp = 0x7ffd6b1c2d28, Ss = 0x2b, FsBase = 0, GsBase = 0, Ds = 0, Es = 0,
                    Fs = 0, Gs = 0,
                },
                Fpregs = new UserX86FpregsEntry { Cwd = 0x37f, Swd = 0, Twd = 0, Fop = 0, Rip = 0, Rdp = 0, Mxcsr = 0x1f80, MxcsrMask = 0xffff, StSpace = { 1, 2, 3 }, XmmSpace = { 4, 5 } },
            },
            Tc = new TaskCoreEntry { TaskState = 1, ExitCode = 0, Personality = 0, Flags = 0, Comm = "sleeper", BlkSigset = 0x10000, OomScoreAdj = -17 },
        }.ToByteArray());
        yield return (MmEntry.Descriptor, new MmEntry
        {
            MmStartCode = 0x400000, MmEndCode = 0x401000, MmStartData = 0x600000, MmEndData = 0x601000,
            MmStartStack = 0x7ffd0000, MmStartBrk = 0x602000, MmBrk = 0x603000, MmArgStart = 1, MmArgEnd = 2,
            MmEnvStart = 3, MmEnvEnd = 4, ExeFileId = 5, MmSavedAuxv = { 1, 2, 3, 4 },
            Vmas = { new VmaEntry { Start = 0x400000, End = 0x401000, Pgoff = 0, Shmid = 0, Prot = 5, Flags = 2, Status = 1, Fd = -1 } },
        }.ToByteArray());
        yield return (PipeDataEntry.Descriptor, new PipeDataEntry { PipeId = 7, Bytes = 12, Size = 65536 }.ToByteArray());
        yield return (PagemapHead.Descriptor, new PagemapHead { PagesId = 1 }.ToByteArray());
    }

    [Fact]
    public void TheCheckAgreesWithTheParseOnValidAndCorruptedEntries()
    {
        var random = new Random(20261123);
        int refused = 0;
        foreach (var (descriptor, bytes) in ValidEntries())
        {
            MessageSchema schema = WireSchemas.Find(descriptor.FullName)!;
            ProtoWire.Check(schema, bytes);
            for (int round = 0; round < 3000; round++)
            {
                byte[] corrupted = Corrupt(bytes, random);
                string? parse = Outcome(() => ProtoWire.Parse(descriptor, corrupted));
                string? check = Outcome(() => ProtoWire.Check(schema, corrupted));
                Assert.Equal(parse, check);
                if (parse is not null) refused++;
            }
        }
        Assert.True(refused > 1000, $"only {refused} corruptions were refused: the corruption is too gentle to prove much");
    }

    [Fact]
    public void TheCheckRefusesAMissingRequiredFieldAndADroppedEnumValue()
    {
        MessageSchema schema = WireSchemas.FindCriu(nameof(PipeDataEntry))!;
        var ex = Assert.Throws<WireFormatException>(() => ProtoWire.Check(schema, new PipeDataEntry { PipeId = 1 }.ToByteArray()));
        Assert.Equal("required field PipeDataEntry.bytes is missing", ex.Message);

        // core_entry.mtype is a required closed enum: an undefined value is dropped, so the field is missing.
        byte[] core = [0x08, 0x7f];
        Assert.Throws<WireFormatException>(() => ProtoWire.Check(WireSchemas.FindCriu(nameof(CoreEntry))!, core));
        Assert.Throws<WireFormatException>(() => ProtoWire.Parse(CoreEntry.Descriptor, core));
    }

    [Fact]
    public void ScalarReadsTheLastValueOfATopLevelField()
    {
        MessageSchema schema = WireSchemas.FindCriu(nameof(PipeDataEntry))!;
        byte[] twice = [.. new PipeDataEntry { PipeId = 1, Bytes = 5 }.ToByteArray(), .. new PipeDataEntry { Bytes = 9 }.ToByteArray()];
        Assert.Equal(9UL, ProtoWire.Scalar(schema, twice, "bytes"));
        Assert.Null(ProtoWire.Scalar(schema, new PipeDataEntry { PipeId = 1 }.ToByteArray(), "bytes"));
    }

    // The exception type and message, or null when the bytes were accepted.
    private static string? Outcome(Action action)
    {
        try
        {
            action();
            return null;
        }
        catch (WireFormatException e)
        {
            return $"{e.Message} @{e.Offset}";
        }
    }

    private static byte[] Corrupt(byte[] bytes, Random random)
    {
        byte[] copy = (byte[])bytes.Clone();
        switch (random.Next(4))
        {
            case 0:
                copy[random.Next(copy.Length)] = (byte)random.Next(256);
                return copy;
            case 1:
                copy[random.Next(copy.Length)] ^= (byte)(1 << random.Next(8));
                return copy;
            case 2:
                return copy[..random.Next(copy.Length)];
            default:
                int at = random.Next(copy.Length);
                return [.. copy[..at], (byte)random.Next(256), (byte)random.Next(256), .. copy[at..]];
        }
    }
}
