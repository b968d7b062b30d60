// PROT_* bits of mmap(2)/mprotect(2).
namespace Crest.Kernel.Memory;

[Flags]
public enum MemoryProtection
{
    None = 0,
    Read = 0x1,
    Write = 0x2,
    Execute = 0x4,
}
