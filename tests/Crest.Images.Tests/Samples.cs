using Crest.Images.Json;

namespace Crest.Images.Tests;

/// <summary>The checked-in JSON samples encoded to images.</summary>
internal static class Samples
{
    public static string Directory => Path.Combine(AppContext.BaseDirectory, "samples");

    public static IEnumerable<string> Names =>
        System.IO.Directory.GetFiles(Directory, "*.json").Order().Select(p => Path.GetFileName(p)!);

    public static byte[] Image(string jsonName)
    {
        using FileStream json = File.OpenRead(Path.Combine(Directory, jsonName));
        var image = new MemoryStream();
        CritTool.Encode(json, jsonName, image);
        return image.ToArray();
    }
}

/// <summary>A stream that can only be read forward, like a pipe or a socket.</summary>
internal sealed class ForwardOnlyStream(Stream inner) : Stream
{
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, Math.Min(count, 7));
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
