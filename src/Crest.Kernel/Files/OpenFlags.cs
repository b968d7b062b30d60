// open(2) flags with the x86_64 values (include/uapi/asm-generic/fcntl.h).
namespace Crest.Kernel.Files;

[Flags]
public enum OpenFlags
{
    ReadOnly = 0,
    WriteOnly = 0x1,
    ReadWrite = 0x2,
    AccessModeMask = 0x3,
    Create = 0x40,
    Exclusive = 0x80,
    NoCtty = 0x100,
    Truncate = 0x200,
    Append = 0x400,
    NonBlock = 0x800,
    DSync = 0x1000,
    Async = 0x2000,
    Direct = 0x4000,
    LargeFile = 0x8000,
    Directory = 0x10000,
    NoFollow = 0x20000,
    NoAtime = 0x40000,
    CloseOnExec = 0x80000,
    Sync = 0x101000,
    Path = 0x200000,
    TmpFile = 0x410000,
}
