// The image stream: how image-proxy, image-cache and `crest migrate` carry many image files, of
// several snapshots, over one connection. Every frame is typed; there are no sentinel strings
// inside the data, and every image carries its length and checksum.
//
//   frame:   0        4      5      8                 16
//            +--------+------+------+-----------------+----------------------+
//            | magic  | type | zero | payload length  | payload ...          |
//            | "CRSF" |  u8  | 3 B  | u64 LE          | (length bytes)       |
//            +--------+------+------+-----------------+----------------------+
//
//   one image:  ImageBegin{codec u8, snapshot, name}  ImageData{chunk} ...  ImageEnd{length u64, xxh3 u64}
//               a chunk is the raw bytes (codec none) or {u32 raw length | StoredFlag, bytes} (lz4, zstd);
//               length and checksum are of the raw image, whatever the codec
//   a dump:     Hello  images ...  DumpEnd{snapshot}   ->   Ack{snapshot} (or Error{text}) from the cache
//   a dump that borrows the proxy's TCP connection (unix socket only; ImageProxy.cs):
//               Hello  Borrow{snapshot} -> Lend{codec u8, attached u8} (attached 1: the connection's descriptor rides
//               with this frame, SCM_RIGHTS; 0: send the images here as above, the proxy relays them)
//               [images written by the dump straight into the lent connection]  Returned{raw u64, sent u64}
//               DumpEnd{snapshot}  ->  Ack{snapshot} (or Error{text}), relayed by the proxy
//   a restore:  Hello  Get{snapshot, name} -> the image or NotFound{snapshot, name, why}
//               GetSnapshot{snapshot}      -> every image of it, then DumpEnd{snapshot}; or NotFound / Error
//   a migrate:  Hello  Restore{snapshot} (on a TCP connection of its own, after the final DumpEnd was acknowledged)
//               -> Restored{pid i32, restore time µs u64, snapshot} once the tree runs there, or Error{text};
//               Restore{""} (no snapshot) asks whether the cache restores at all: Ack{""} or Error{why not}
//               Forget{prefix} (a migration failed before its final dump) -> Ack{prefix} once every snapshot whose id
//               starts with prefix is dropped, or Error{why not}
//
// The checksum is XXH3-64 of the raw image, computed incrementally: System.IO.Hashing's XxHash3 (SIMD) takes
// 50-90 ms per GiB in 1 MiB appends, AOT-compiled, where its XxHash64 took 200-300 (protocol 1 used XXH64; an
// early XxHash3 package had been far slower). Strings in payloads are u16 LE length + UTF-8. Payloads are bounded (MaxPayload) so a reader
// never allocates what a corrupt or hostile length asks for.
namespace Crest.Transport.Streams;

public enum FrameType : byte
{
    Hello = 1,
    ImageBegin = 2,
    ImageData = 3,
    ImageEnd = 4,
    DumpEnd = 5,
    Ack = 6,
    Error = 7,
    Get = 8,
    GetSnapshot = 9,
    NotFound = 10,
    Restore = 11,
    Restored = 12,
    Forget = 13,
    Borrow = 14,
    Lend = 15,
    Returned = 16,
}

public static class FrameFormat
{
    /// <summary>"CRSF" read as a little-endian u32.</summary>
    public const uint Magic = 0x46535243;
    public const int HeaderSize = 16;
    /// <summary>Largest raw chunk of image data in one frame.</summary>
    public const int MaxChunk = 1 << 20;
    /// <summary>Largest payload of one frame: a chunk, plus what a compressor may add to incompressible data.</summary>
    public const int MaxPayload = MaxChunk + (64 << 10);
    /// <summary>2: XXH3 checksums (1 had XXH64), Borrow/Lend/Returned.</summary>
    public const uint ProtocolVersion = 2;
    /// <summary>Set in a compressed chunk's raw length when the bytes that follow are stored uncompressed.</summary>
    public const uint StoredFlag = 0x8000_0000;
}

/// <summary>The stream broke a rule of the framing: names what arrived and where.</summary>
public sealed class StreamProtocolException(string message) : Exception(message);
