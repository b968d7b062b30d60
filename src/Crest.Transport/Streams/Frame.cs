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
//   one image:  ImageBegin{snapshot, name}  ImageData{bytes} ...  ImageEnd{length, xxh3}
//   a dump:     images ...  DumpEnd{snapshot}   ->   Ack{snapshot} from the receiver
//
// Strings in payloads are u16 LE length + UTF-8. Payloads are bounded (MaxPayload) so a reader
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
}

public static class FrameFormat
{
    /// <summary>"CRSF" read as a little-endian u32.</summary>
    public const uint Magic = 0x46535243;
    public const int HeaderSize = 16;
    /// <summary>Largest payload of one frame; image data is cut into chunks of at most this.</summary>
    public const int MaxPayload = 1 << 20;
    public const uint ProtocolVersion = 1;
}

/// <summary>The stream broke a rule of the framing: names what arrived and where.</summary>
public sealed class StreamProtocolException(string message) : Exception(message);
