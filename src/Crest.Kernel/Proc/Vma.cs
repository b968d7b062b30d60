// One line of /proc/PID/maps, also the header of each /proc/PID/smaps entry (fs/proc/task_mmu.c
// show_map_vma / show_vma_header_prefix):
//
//   start-end perm offset maj:min inode<pad>name
//   7f7b109f2000-7f7b109f4000 r--p 00000000 00:00 0                          [vvar_vclock]
//
// Numbers are hex except inode. The prefix ends with a space after inode; when a name follows, the
// kernel pads with spaces to column 72 (25 + 6 * sizeof(void *) - 1 on a 64-bit kernel) and writes
// one more space, so the name starts at max(prefix, 72) + 1 and may itself begin with spaces.
// File names come from d_path with '\n' escaped as "\012" (only newline is escaped, so a literal
// backslash stays as is) and " (deleted)" appended once the file is unlinked. Pseudo names are
// bracketed: [heap] [stack] [vdso] [vvar] [vvar_vclock] (6.14) [vsyscall] [uprobes]
// [anon:NAME] (PR_SET_VMA_ANON_NAME, 5.17) [anon_shmem:NAME] (6.2).
using System.Text;

namespace Crest.Kernel.Proc;

/// <summary>The "rwxp" column: protection bits and whether the mapping is shared ('s') or private ('p').</summary>
[Flags]
public enum VmaPermissions : byte
{
    None = 0,
    Read = 1,
    Write = 2,
    Execute = 4,
    /// <summary>'s': VM_MAYSHARE, a MAP_SHARED mapping.</summary>
    Shared = 8,
}

/// <summary>What backs a mapping, as far as its name tells.</summary>
public enum VmaKind
{
    /// <summary>No name: private or shared anonymous memory without a label.</summary>
    Anonymous,
    /// <summary>A file path (including /memfd:, /SYSV, /dev/zero and anon_inode: names).</summary>
    File,
    Heap,
    Stack,
    Vdso,
    Vvar,
    VvarVclock,
    Vsyscall,
    Uprobes,
    /// <summary>[anon:NAME], a named anonymous mapping; <see cref="Vma.Name"/> is NAME.</summary>
    AnonNamed,
    /// <summary>[anon_shmem:NAME], a named shared anonymous mapping; <see cref="Vma.Name"/> is NAME.</summary>
    AnonShmemNamed,
    /// <summary>Any other bracketed name (e.g. [stack:TID] of old kernels); <see cref="Vma.Name"/> is the whole name.</summary>
    OtherPseudo,
}

/// <summary>A virtual memory area as /proc/PID/maps describes it.</summary>
public sealed class Vma
{
    private string? _path;

    internal Vma(ulong start, ulong end, VmaPermissions permissions, ulong offset, uint devMajor, uint devMinor,
        ulong inode, VmaKind kind, byte[]? pathBytes, string? name, bool deleted)
    {
        Start = start;
        End = end;
        Permissions = permissions;
        Offset = offset;
        DevMajor = devMajor;
        DevMinor = devMinor;
        Inode = inode;
        Kind = kind;
        PathBytes = pathBytes;
        Name = name;
        IsDeleted = deleted;
    }

    public ulong Start { get; }
    public ulong End { get; }
    public ulong Size => End - Start;
    public VmaPermissions Permissions { get; }
    /// <summary>File offset in bytes (vm_pgoff &lt;&lt; PAGE_SHIFT).</summary>
    public ulong Offset { get; }
    public uint DevMajor { get; }
    public uint DevMinor { get; }
    public ulong Inode { get; }
    public VmaKind Kind { get; }

    /// <summary>For <see cref="VmaKind.File"/>: the path's bytes, "\012" unescaped and " (deleted)" removed.</summary>
    public byte[]? PathBytes { get; }

    /// <summary>For <see cref="VmaKind.File"/>: <see cref="PathBytes"/> decoded as UTF-8.</summary>
    public string? Path => PathBytes is null ? null : _path ??= Encoding.UTF8.GetString(PathBytes);

    /// <summary>
    /// For bracketed names: the label of [anon:NAME] and [anon_shmem:NAME], or the whole bracketed
    /// name for the others ("[heap]").
    /// </summary>
    public string? Name { get; }

    /// <summary>The file was unlinked: the kernel appended " (deleted)".</summary>
    public bool IsDeleted { get; }

    public override string ToString() =>
        $"{Start:x}-{End:x} {Permissions} {Offset:x} {DevMajor:x2}:{DevMinor:x2} {Inode} {Kind} {Path ?? Name}{(IsDeleted ? " (deleted)" : "")}";

    private const int NameColumn = 72;

    /// <summary>Parses one maps line (without its newline).</summary>
    internal static Vma ParseLine(ReadOnlySpan<byte> line, ProcFileKind kind, int lineNumber)
    {
        var f = new ProcFields(line, kind, lineNumber);
        ReadOnlySpan<byte> range = f.Next("address range");
        int dash = range.IndexOf((byte)'-');
        if (dash < 0)
            throw f.Fail("address range is not start-end");
        ulong start = ProcText.ParseUInt64(range[..dash], 16, kind, lineNumber, "start address");
        ulong end = ProcText.ParseUInt64(range[(dash + 1)..], 16, kind, lineNumber, "end address");
        if (end < start)
            throw f.Fail("end address below start address");

        ReadOnlySpan<byte> perm = f.Next("permissions");
        if (perm.Length != 4
            || perm[0] is not ((byte)'r' or (byte)'-') || perm[1] is not ((byte)'w' or (byte)'-')
            || perm[2] is not ((byte)'x' or (byte)'-') || perm[3] is not ((byte)'s' or (byte)'p'))
            throw f.Fail("bad permissions");
        var permissions = (perm[0] == (byte)'r' ? VmaPermissions.Read : 0)
            | (perm[1] == (byte)'w' ? VmaPermissions.Write : 0)
            | (perm[2] == (byte)'x' ? VmaPermissions.Execute : 0)
            | (perm[3] == (byte)'s' ? VmaPermissions.Shared : 0);

        ulong offset = f.NextHex("offset");
        ReadOnlySpan<byte> dev = f.Next("device");
        int colon = dev.IndexOf((byte)':');
        if (colon < 0)
            throw f.Fail("device is not major:minor");
        uint major = ProcText.ParseUInt32(dev[..colon], 16, kind, lineNumber, "device major");
        uint minor = ProcText.ParseUInt32(dev[(colon + 1)..], 16, kind, lineNumber, "device minor");
        ulong inode = f.NextUInt64("inode");

        int prefix = line.Length - f.Rest.Length;
        ReadOnlySpan<byte> rest = f.Rest;
        if (ProcText.IsBlank(rest))
            return new Vma(start, end, permissions, offset, major, minor, inode, VmaKind.Anonymous, null, null, false);
        if (rest[0] != (byte)' ')
            throw f.Fail("no space after inode");

        // The kernel's layout: prefix (ending in one space), padding to NameColumn, one space, name.
        // A line not laid out that way (hand-written, other kernel) falls back to "name after the blanks".
        ReadOnlySpan<byte> name;
        int column = Math.Max(prefix + 1, NameColumn);
        if (line.Length > column + 1 && line[(prefix + 1)..(column + 1)].IndexOfAnyExcept((byte)' ') < 0)
            name = line[(column + 1)..];
        else
            name = rest.TrimStart((byte)' ');

        if (name.Length >= 2 && name[0] == (byte)'[' && name[^1] == (byte)']')
        {
            ReadOnlySpan<byte> inner = name[1..^1];
            (VmaKind pseudo, string label) = inner switch
            {
                _ when inner.SequenceEqual("heap"u8) => (VmaKind.Heap, "[heap]"),
                _ when inner.SequenceEqual("stack"u8) => (VmaKind.Stack, "[stack]"),
                _ when inner.SequenceEqual("vdso"u8) => (VmaKind.Vdso, "[vdso]"),
                _ when inner.SequenceEqual("vvar"u8) => (VmaKind.Vvar, "[vvar]"),
                _ when inner.SequenceEqual("vvar_vclock"u8) => (VmaKind.VvarVclock, "[vvar_vclock]"),
                _ when inner.SequenceEqual("vsyscall"u8) => (VmaKind.Vsyscall, "[vsyscall]"),
                _ when inner.SequenceEqual("uprobes"u8) => (VmaKind.Uprobes, "[uprobes]"),
                _ when inner.StartsWith("anon:"u8) => (VmaKind.AnonNamed, ProcText.Utf8(inner[5..])),
                _ when inner.StartsWith("anon_shmem:"u8) => (VmaKind.AnonShmemNamed, ProcText.Utf8(inner[11..])),
                _ => (VmaKind.OtherPseudo, ProcText.Utf8(name)),
            };
            return new Vma(start, end, permissions, offset, major, minor, inode, pseudo, null, label, false);
        }

        bool deleted = name.EndsWith(" (deleted)"u8);
        if (deleted)
            name = name[..^" (deleted)"u8.Length];
        return new Vma(start, end, permissions, offset, major, minor, inode, VmaKind.File,
            ProcText.UnescapeOctal(name), null, deleted);
    }
}

/// <summary>Parser for /proc/PID/maps.</summary>
public static class ProcMaps
{
    public static IReadOnlyList<Vma> Parse(ReadOnlySpan<byte> text)
    {
        var result = new List<Vma>();
        var lines = new ProcLines(text);
        while (lines.Next(out var line))
        {
            if (!line.IsEmpty)
                result.Add(Vma.ParseLine(line, ProcFileKind.Maps, lines.Number));
        }
        return result;
    }
}
