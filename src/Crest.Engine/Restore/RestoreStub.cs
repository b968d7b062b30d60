// The restore stub (ENGINE.md §4.1): a tiny static x86_64 ELF with no libc. It stops itself with
// SIGSTOP and then sleeps in pause() forever; Crest seizes it and makes it the parent of the first
// restored task. Its code also carries the `syscall; int3` gadget that injected syscalls jump to
// in stub-born tasks, so restore never has to poke code into a task.
//
//   file offset 0     ELF header (64 bytes)
//               64    PT_LOAD program header: the whole file, R+X, at BaseAddress
//               120   PT_GNU_STACK program header: non-executable stack
//               176   code: getpid; kill(pid, SIGSTOP); loop { pause }   then the gadget
using System.Buffers.Binary;

namespace Crest.Engine.Restore;

public static class RestoreStub
{
    private const int ElfHeaderSize = 64, ProgramHeaderSize = 56, CodeOffset = ElfHeaderSize + 2 * ProgramHeaderSize;

    private static ReadOnlySpan<byte> Code =>
    [
        0xb8, 0x27, 0x00, 0x00, 0x00, // mov eax, 39 (getpid)
        0x0f, 0x05,                   // syscall
        0x89, 0xc7,                   // mov edi, eax
        0xbe, 0x13, 0x00, 0x00, 0x00, // mov esi, 19 (SIGSTOP)
        0xb8, 0x3e, 0x00, 0x00, 0x00, // mov eax, 62 (kill)
        0x0f, 0x05,                   // syscall
        0xb8, 0x22, 0x00, 0x00, 0x00, // loop: mov eax, 34 (pause)
        0x0f, 0x05,                   // syscall
        0xeb, 0xf7,                   // jmp loop
        0x0f, 0x05, 0xcc,             // gadget: syscall; int3
    ];

    /// <summary>Offset of the `syscall; int3` gadget from the start of the stub's mapping.</summary>
    public const int GadgetOffset = CodeOffset + 30;

    /// <summary>The stub's size in bytes (it is mapped whole, one page).</summary>
    public static int Size => CodeOffset + Code.Length;

    /// <summary>
    /// Builds the stub ELF to be loaded at <paramref name="baseAddress"/> (page-aligned, at or above
    /// vm.mmap_min_addr). The restore engine picks an address no dumped VMA uses.
    /// </summary>
    public static byte[] Build(ulong baseAddress)
    {
        if ((baseAddress & 0xfff) != 0 || baseAddress < 0x10000 || baseAddress >= 0x0000_8000_0000_0000)
            throw new ArgumentOutOfRangeException(nameof(baseAddress), $"stub base 0x{baseAddress:x} must be page-aligned user space above 64 KiB");
        var image = new byte[Size];
        var s = image.AsSpan();

        // ELF header: 64-bit, little-endian, version 1, System V ABI, static executable for x86-64.
        s[0] = 0x7f; s[1] = (byte)'E'; s[2] = (byte)'L'; s[3] = (byte)'F';
        s[4] = 2; s[5] = 1; s[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(s[16..], 2);      // e_type ET_EXEC
        BinaryPrimitives.WriteUInt16LittleEndian(s[18..], 62);     // e_machine EM_X86_64
        BinaryPrimitives.WriteUInt32LittleEndian(s[20..], 1);      // e_version
        BinaryPrimitives.WriteUInt64LittleEndian(s[24..], baseAddress + CodeOffset); // e_entry
        BinaryPrimitives.WriteUInt64LittleEndian(s[32..], ElfHeaderSize);            // e_phoff
        BinaryPrimitives.WriteUInt16LittleEndian(s[52..], ElfHeaderSize);            // e_ehsize
        BinaryPrimitives.WriteUInt16LittleEndian(s[54..], ProgramHeaderSize);        // e_phentsize
        BinaryPrimitives.WriteUInt16LittleEndian(s[56..], 2);                        // e_phnum
        BinaryPrimitives.WriteUInt16LittleEndian(s[58..], 64);                       // e_shentsize

        WriteProgramHeader(s[ElfHeaderSize..], type: 1 /* PT_LOAD */, flags: 5 /* R+X */,
            vaddr: baseAddress, size: (ulong)Size, align: 0x1000);
        WriteProgramHeader(s[(ElfHeaderSize + ProgramHeaderSize)..], type: 0x6474e551 /* PT_GNU_STACK */,
            flags: 6 /* R+W */, vaddr: 0, size: 0, align: 16);
        Code.CopyTo(s[CodeOffset..]);
        return image;
    }

    private static void WriteProgramHeader(Span<byte> p, uint type, uint flags, ulong vaddr, ulong size, ulong align)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(p, type);
        BinaryPrimitives.WriteUInt32LittleEndian(p[4..], flags);
        BinaryPrimitives.WriteUInt64LittleEndian(p[8..], 0);       // p_offset
        BinaryPrimitives.WriteUInt64LittleEndian(p[16..], vaddr);  // p_vaddr
        BinaryPrimitives.WriteUInt64LittleEndian(p[24..], vaddr);  // p_paddr
        BinaryPrimitives.WriteUInt64LittleEndian(p[32..], size);   // p_filesz
        BinaryPrimitives.WriteUInt64LittleEndian(p[40..], size);   // p_memsz
        BinaryPrimitives.WriteUInt64LittleEndian(p[48..], align);
    }
}
