// Stand-in until the images branch is merged; see Pending/README.md.
namespace Crest.Images.Json;

public static class CritTool
{
    public static void Decode(Stream input, string inputName, Stream output, bool pretty) => throw new InvalidOperationException("pending merge");
    public static void Encode(Stream input, string inputName, Stream output) => throw new InvalidOperationException("pending merge");
    public static void Show(string path, TextWriter output) => throw new InvalidOperationException("pending merge");
    public static void Info(string path, TextWriter output) => throw new InvalidOperationException("pending merge");
}
