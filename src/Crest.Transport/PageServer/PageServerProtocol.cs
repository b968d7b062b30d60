// CRIU's page-server wire protocol (criu/page-xfer.c), spoken over one TCP connection (optionally TLS):
//
//   dump side                                             page server
//   PS_IOV_OPEN2  {dst_id}                        ---->   opens pagemap-ID.img + pages-N.img
//                                                 <----   u8 has_parent (a "parent" link holding pagemap-ID.img)
//   PS_IOV_ADD_F  {cmd = flags << 16 | 6, nr_pages, vaddr, dst_id}
//   [nr_pages * 4096 bytes when flags has PE_PRESENT] ---->  one pagemap entry (+ its data in pages-N.img)
//   ... (OPEN2 for the next task, ...)
//   PS_IOV_CLOSE                                  ---->   all images stored
//                                                 <----   i32 status (0)
//   close                                         ---->   server exits (after EOF)
//
// Every command is a 24-byte struct page_server_iov in the host's (little-endian) order:
//   +--------+------------+----------------+----------------+
//   | u32 cmd| u32 nr_pages| u64 vaddr     | u64 dst_id     |
//   +--------+------------+----------------+----------------+
// dst_id = id << 8 | type, type 1 = a task's pagemap (PS_TYPE_PID), 2 = shmem (PS_TYPE_SHMEM); older CRIUs used
// other type numbers, which are still accepted. Older commands: PS_IOV_OPEN (no answer), PS_IOV_ADD (present
// pages), PS_IOV_HOLE (PE_PARENT), PS_IOV_PARENT (answer: i32 has_parent). PS_IOV_GET / GET_ALL serve lazy pages.
using System.Buffers.Binary;

namespace Crest.Transport.PageServer;

public static class PageServerProtocol
{
    public const uint PS_IOV_ADD = 1;
    public const uint PS_IOV_HOLE = 2;
    public const uint PS_IOV_OPEN = 3;
    public const uint PS_IOV_OPEN2 = 4;
    public const uint PS_IOV_PARENT = 5;
    public const uint PS_IOV_ADD_F = 6;
    public const uint PS_IOV_GET = 7;
    public const uint PS_IOV_GET_ALL = 8;
    public const uint PS_IOV_CLOSE = 0x1023;
    public const uint PS_IOV_FORCE_CLOSE = 0x1024;

    public const int PS_CMD_BITS = 16;
    public const uint PS_CMD_MASK = (1u << PS_CMD_BITS) - 1;
    public const int PS_TYPE_BITS = 8;
    public const ulong PS_TYPE_MASK = (1ul << PS_TYPE_BITS) - 1;
    public const uint PS_TYPE_PID = 1;
    public const uint PS_TYPE_SHMEM = 2;

    public const int PageSize = 4096;

    /// <summary>The kind of pagemap a dst_id names.</summary>
    public enum PagemapType { Unknown, Task, Shmem }

    public static ulong EncodeDstId(PagemapType type, ulong id) =>
        id << PS_TYPE_BITS | (type == PagemapType.Shmem ? PS_TYPE_SHMEM : PS_TYPE_PID);

    /// <summary>The type and id of a dst_id, with the type numbers of older CRIUs.</summary>
    public static (PagemapType Type, ulong Id) DecodeDstId(ulong dstId)
    {
        var type = (dstId & PS_TYPE_MASK) switch
        {
            PS_TYPE_PID or 10 or 11 or 16 or 17 => PagemapType.Task,
            PS_TYPE_SHMEM or 27 or 28 or 29 or 32 or 33 or 34 => PagemapType.Shmem,
            _ => PagemapType.Unknown,
        };
        return (type, dstId >> PS_TYPE_BITS);
    }

    public static uint EncodeCommand(uint command, uint flags) => flags << PS_CMD_BITS | command;
}

/// <summary>struct page_server_iov.</summary>
public readonly record struct PageServerIov(uint Cmd, uint NrPages, ulong Vaddr, ulong DstId)
{
    public const int Size = 24;

    public uint Command => Cmd & PageServerProtocol.PS_CMD_MASK;
    public uint Flags => Cmd >> PageServerProtocol.PS_CMD_BITS;

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination, Cmd);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], NrPages);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], Vaddr);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[16..], DstId);
    }

    public static PageServerIov Read(ReadOnlySpan<byte> source) => new(
        BinaryPrimitives.ReadUInt32LittleEndian(source),
        BinaryPrimitives.ReadUInt32LittleEndian(source[4..]),
        BinaryPrimitives.ReadUInt64LittleEndian(source[8..]),
        BinaryPrimitives.ReadUInt64LittleEndian(source[16..]));

    public override string ToString() => $"cmd 0x{Command:x} flags 0x{Flags:x} {NrPages} pages at 0x{Vaddr:x} dst 0x{DstId:x}";
}

/// <summary>The page-server conversation broke: the peer went away, sent what the protocol does not allow, or refused.</summary>
public sealed class PageServerException(string message, Exception? inner = null) : IOException(message, inner);
