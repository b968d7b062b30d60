// Machine code Crest makes a stopped task run (ENGINE.md §3): the `syscall` instruction, and the poked
// `syscall; int3` gadget used in stub tasks on restore, where the trap after the call hands control back.
namespace Crest.Kernel.Arch.X64;

public static class InjectionGadget
{
    /// <summary>syscall (0f 05).</summary>
    public static ReadOnlySpan<byte> Syscall => [0x0f, 0x05];

    /// <summary>syscall; int3 (0f 05 cc).</summary>
    public static ReadOnlySpan<byte> SyscallTrap => [0x0f, 0x05, 0xcc];

    /// <summary>Length of the syscall instruction: rip after it minus 2 re-issues it.</summary>
    public const int SyscallLength = 2;
}
