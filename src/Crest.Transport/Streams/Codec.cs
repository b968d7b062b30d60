// Compression of image data chunks: LZ4 (K4os.Compression.LZ4, block format; compressed through its
// Pubternal.CompressFast, which takes LZ4's acceleration) and zstd (ZstdSharp,
// a managed port of libzstd), both pure managed code and AOT-safe. Each chunk is compressed on its
// own, so a reader needs no state beyond the chunk and never more memory than MaxChunk.
using K4os.Compression.LZ4;
using K4os.Compression.LZ4.Engine;
using ZstdSharp;

namespace Crest.Transport.Streams;

public enum Codec : byte
{
    None = 0,
    Lz4 = 1,
    Zstd = 2,
}

public static class Codecs
{
    /// <summary>The codec of a --compress word (none, lz4, zstd); null when the word is none of them.</summary>
    public static Codec? Parse(string word) => word switch
    {
        "none" => Codec.None,
        "lz4" => Codec.Lz4,
        "zstd" => Codec.Zstd,
        _ => null,
    };

    public static string Name(Codec codec) => codec switch
    {
        Codec.None => "none",
        Codec.Lz4 => "lz4",
        Codec.Zstd => "zstd",
        _ => $"codec {(byte)codec}",
    };

    /// <summary>zstd level 1: the fast end, where it still compresses page data better than LZ4.</summary>
    private const int ZstdLevel = 1;

    [ThreadStatic] private static Compressor? t_zstdCompressor;
    [ThreadStatic] private static Decompressor? t_zstdDecompressor;

    /// <summary>Compresses <paramref name="raw"/> into <paramref name="output"/> (at least MaxPayload bytes);
    /// returns the bytes written, or 0 when the result would not be smaller than the input.</summary>
    public static int Compress(Codec codec, ReadOnlySpan<byte> raw, Span<byte> output)
    {
        int n;
        switch (codec)
        {
            case Codec.Lz4:
                n = CompressLz4(raw, output);
                break;
            case Codec.Zstd:
                t_zstdCompressor ??= new Compressor(ZstdLevel);
                if (!t_zstdCompressor.TryWrap(raw, output, out n)) n = -1;
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(codec), $"cannot compress with {Name(codec)}");
        }
        return n <= 0 || n >= raw.Length ? 0 : n;
    }

    /// <summary>
    /// LZ4's acceleration (LZ4_compress_fast): how fast the match search gives up on bytes that do not compress. Memory is
    /// pages of kinds side by side (zero, text, random), and each random page restarts the search at step 1. On the
    /// bench's page-like data, AOT-compiled, 1 MiB chunks: LZ4Codec.Encode (L00_FAST, acceleration 1) 470 ms of CPU per
    /// GiB, acceleration 4 435 ms, 8 360 ms for 1.1 % more bytes (367847 -> 371880 per MiB). The output is an ordinary
    /// LZ4 block.
    /// </summary>
    private const int Lz4Acceleration = 8;

    /// <summary>One independent LZ4 block: a fresh stream context each time (a reused one would refer to the chunk before).</summary>
    private static unsafe int CompressLz4(ReadOnlySpan<byte> raw, Span<byte> output)
    {
        using var context = new Pubternal.FastContext();
        fixed (byte* source = raw)
        fixed (byte* target = output)
            return Pubternal.CompressFast(context, source, target, raw.Length, output.Length, Lz4Acceleration);
    }

    /// <summary>Decompresses exactly <paramref name="output"/>.Length bytes; a mismatch is a protocol error.</summary>
    public static void Decompress(Codec codec, ReadOnlySpan<byte> compressed, Span<byte> output, string what)
    {
        int n;
        try
        {
            switch (codec)
            {
                case Codec.Lz4:
                    n = LZ4Codec.Decode(compressed, output);
                    break;
                case Codec.Zstd:
                    t_zstdDecompressor ??= new Decompressor();
                    if (!t_zstdDecompressor.TryUnwrap(compressed, output, out n)) n = -1;
                    break;
                default:
                    throw new StreamProtocolException($"{what}: unknown codec {(byte)codec}");
            }
        }
        catch (ZstdException e)
        {
            throw new StreamProtocolException($"{what}: zstd data is corrupt ({e.Message})");
        }
        if (n != output.Length)
            throw new StreamProtocolException($"{what}: {Name(codec)} chunk decompressed to {n} bytes, {output.Length} expected (data corrupted in transit)");
    }
}
