// JSON that cannot become an image (crest encode): names the input and the JSON path of the bad value.
namespace Crest.Images.Json;

public sealed class JsonImageException : Exception
{
    public JsonImageException(string input, string jsonPath, string reason, Exception? inner = null)
        : base($"{input}: {jsonPath}: {reason}", inner)
    {
        Input = input;
        JsonPath = jsonPath;
        Reason = reason;
    }

    /// <summary>The JSON input's name (a file name or "stdin").</summary>
    public string Input { get; }

    /// <summary>Where in the document the problem is, e.g. "$.entries[0].tc.comm".</summary>
    public string JsonPath { get; }

    public string Reason { get; }
}
