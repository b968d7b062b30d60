// /proc/PID/auxv (proc(5), fs/proc/base.c proc_auxv): the ELF auxiliary vector the kernel put on the
// initial stack, as native (type, value) pairs ending with AT_NULL. For a 64-bit task each half is a
// little-endian u64 (a 32-bit compat task has u32 pairs; this parser reads the 64-bit layout).
// A kernel thread's file is empty.
using System.Buffers.Binary;

namespace Crest.Kernel.Proc;

/// <summary>One auxv entry; see getauxval(3) for the types.</summary>
public readonly record struct AuxvEntry(ulong Type, ulong Value);

/// <summary>AT_* types (include/uapi/linux/auxvec.h and asm/auxvec.h).</summary>
public static class AuxvType
{
    public const ulong AT_NULL = 0, AT_IGNORE = 1, AT_EXECFD = 2, AT_PHDR = 3, AT_PHENT = 4, AT_PHNUM = 5,
        AT_PAGESZ = 6, AT_BASE = 7, AT_FLAGS = 8, AT_ENTRY = 9, AT_NOTELF = 10, AT_UID = 11, AT_EUID = 12,
        AT_GID = 13, AT_EGID = 14, AT_PLATFORM = 15, AT_HWCAP = 16, AT_CLKTCK = 17, AT_SECURE = 23,
        AT_BASE_PLATFORM = 24, AT_RANDOM = 25, AT_HWCAP2 = 26, AT_RSEQ_FEATURE_SIZE = 27, AT_RSEQ_ALIGN = 28,
        AT_HWCAP3 = 29, AT_HWCAP4 = 30, AT_EXECFN = 31, AT_SYSINFO_EHDR = 33, AT_MINSIGSTKSZ = 51;
}

/// <summary>Parser for /proc/PID/auxv.</summary>
public static class ProcAuxv
{
    private const int EntrySize = 16;

    /// <summary>The entries before AT_NULL (AT_NULL itself is not returned).</summary>
    public static IReadOnlyList<AuxvEntry> Parse(ReadOnlySpan<byte> data)
    {
        if (data.Length % EntrySize != 0)
            throw new ProcParseException(ProcFileKind.Auxv, 0, $"length {data.Length} is not a multiple of {EntrySize}");
        var result = new List<AuxvEntry>(data.Length / EntrySize);
        for (int offset = 0; offset < data.Length; offset += EntrySize)
        {
            ulong type = BinaryPrimitives.ReadUInt64LittleEndian(data[offset..]);
            ulong value = BinaryPrimitives.ReadUInt64LittleEndian(data[(offset + 8)..]);
            if (type == AuxvType.AT_NULL)
            {
                if (offset + EntrySize != data.Length)
                    throw new ProcParseException(ProcFileKind.Auxv, offset, "data after AT_NULL");
                return result;
            }
            result.Add(new AuxvEntry(type, value));
        }
        if (data.Length > 0)
            throw new ProcParseException(ProcFileKind.Auxv, data.Length, "no AT_NULL at the end");
        return result;
    }
}
