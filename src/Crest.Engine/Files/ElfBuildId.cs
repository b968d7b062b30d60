// The GNU build id of an ELF file (the NT_GNU_BUILD_ID note the linker writes), read through its program
// headers: every PT_NOTE segment is scanned for a note named "GNU" of type 3. Stored in RegFileEntry.build_id
// as CRIU's --file-validation=buildid does: the id's bytes as little-endian 32-bit words, the last one padded
// with zeros. Every offset and length read from the file is checked against the file's size and our limits,
// so a truncated or hostile file yields "no build id", never an exception or a huge read.
using System.Buffers.Binary;
using Crest.Kernel;
using Crest.Kernel.Files;

namespace Crest.Engine.Files;

internal static class ElfBuildId
{
    private const uint PT_NOTE = 4, NT_GNU_BUILD_ID = 3;
    private const int MaxProgramHeaders = 4096, MaxNoteSegment = 64 * 1024, MaxBuildId = 64;

    /// <summary>The build id of the file open at <paramref name="fd"/>, as words, or null when it is not an ELF file or has none.</summary>
    public static uint[]? Read(FileDescriptor fd, long fileSize)
    {
        byte[]? id = ReadBytes(fd, fileSize);
        if (id is null) return null;
        var words = new uint[(id.Length + 3) / 4];
        var padded = new byte[words.Length * 4];
        id.CopyTo(padded, 0);
        for (int i = 0; i < words.Length; i++) words[i] = BinaryPrimitives.ReadUInt32LittleEndian(padded.AsSpan(i * 4));
        return words;
    }

    /// <summary>Open <paramref name="path"/> (a /proc link of the task) and read its build id; null if it cannot be opened.</summary>
    public static uint[]? ReadPath(string path, long fileSize)
    {
        try
        {
            using var fd = FileDescriptor.Open(path, OpenFlags.ReadOnly | OpenFlags.CloseOnExec);
            return Read(fd, fileSize);
        }
        catch (KernelException)
        {
            return null;
        }
    }

    public static string Format(IEnumerable<uint> words) =>
        string.Concat(words.Select(w => $"{w & 0xff:x2}{(w >> 8) & 0xff:x2}{(w >> 16) & 0xff:x2}{w >> 24:x2}"));

    private static bool ReadAt(FileDescriptor fd, Span<byte> buffer, long offset, long fileSize)
    {
        if (offset < 0 || offset > fileSize - buffer.Length) return false;
        int done = 0;
        while (done < buffer.Length)
        {
            int n = fd.PRead(buffer[done..], offset + done);
            if (n <= 0) return false;
            done += n;
        }
        return true;
    }

    private static byte[]? ReadBytes(FileDescriptor fd, long fileSize)
    {
        Span<byte> header = stackalloc byte[64];
        if (fileSize < 52 || !ReadAt(fd, header[..52], 0, fileSize)) return null;
        if (header[0] != 0x7f || header[1] != (byte)'E' || header[2] != (byte)'L' || header[3] != (byte)'F') return null;
        if (header[5] != 1) return null; // big-endian ELF: not on this machine
        bool is64 = header[4] == 2;
        if (!is64 && header[4] != 1) return null;
        if (is64 && (fileSize < 64 || !ReadAt(fd, header, 0, fileSize))) return null;
        long phoff = is64 ? (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(header[32..]), long.MaxValue) : BinaryPrimitives.ReadUInt32LittleEndian(header[28..]);
        int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(header[(is64 ? 54 : 42)..]);
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(header[(is64 ? 56 : 44)..]);
        if (phnum == 0 || phnum > MaxProgramHeaders || phentsize < (is64 ? 56 : 32) || phentsize > 256) return null;
        var headers = new byte[phentsize * phnum];
        if (!ReadAt(fd, headers, phoff, fileSize)) return null;
        for (int i = 0; i < phnum; i++)
        {
            var ph = headers.AsSpan(i * phentsize, phentsize);
            if (BinaryPrimitives.ReadUInt32LittleEndian(ph) != PT_NOTE) continue;
            ulong offset = is64 ? BinaryPrimitives.ReadUInt64LittleEndian(ph[8..]) : BinaryPrimitives.ReadUInt32LittleEndian(ph[4..]);
            ulong size = is64 ? BinaryPrimitives.ReadUInt64LittleEndian(ph[32..]) : BinaryPrimitives.ReadUInt32LittleEndian(ph[16..]);
            ulong align = is64 ? BinaryPrimitives.ReadUInt64LittleEndian(ph[48..]) : BinaryPrimitives.ReadUInt32LittleEndian(ph[28..]);
            if (size == 0 || size > MaxNoteSegment || offset > (ulong)fileSize) continue;
            var notes = new byte[(int)size];
            if (!ReadAt(fd, notes, (long)offset, fileSize)) continue;
            if (FindInNotes(notes, align == 8 ? 8 : 4) is { } id) return id;
        }
        return null;
    }

    private static byte[]? FindInNotes(ReadOnlySpan<byte> notes, int align)
    {
        int at = 0;
        while (notes.Length - at >= 12)
        {
            uint namesz = BinaryPrimitives.ReadUInt32LittleEndian(notes[at..]);
            uint descsz = BinaryPrimitives.ReadUInt32LittleEndian(notes[(at + 4)..]);
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(notes[(at + 8)..]);
            long nameAt = at + 12;
            long descAt = nameAt + Align(namesz, align);
            long next = descAt + Align(descsz, align);
            if (descAt + descsz > notes.Length) return null;
            if (type == NT_GNU_BUILD_ID && namesz == 4 && notes.Slice((int)nameAt, 4).SequenceEqual("GNU\0"u8)
                && descsz > 0 && descsz <= MaxBuildId)
                return notes.Slice((int)descAt, (int)descsz).ToArray();
            if (next > notes.Length) return null;
            at = (int)next;
        }
        return null;
    }

    private static long Align(uint value, int align) => ((long)value + align - 1) & ~(long)(align - 1);
}
