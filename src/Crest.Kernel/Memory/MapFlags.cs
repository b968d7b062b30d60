// MAP_* flags of mmap(2), x86_64 values (include/uapi/asm-generic/mman*.h).
namespace Crest.Kernel.Memory;

[Flags]
public enum MapFlags
{
    Shared = 0x01,
    Private = 0x02,
    SharedValidate = 0x03,
    Fixed = 0x10,
    Anonymous = 0x20,
    GrowsDown = 0x100,
    Locked = 0x2000,
    NoReserve = 0x4000,
    Populate = 0x8000,
    FixedNoReplace = 0x100000,
}
