// crit's verbs under crest, with crit's spelling (argparse in crit/__main__.py):
//   decode [-i IN] [-o OUT] [--pretty]   image -> JSON, stdin/stdout by default
//   encode [-i IN] [-o OUT]              JSON -> image, stdin/stdout by default
//   show IN                              pretty JSON of one image
//   info IN                              a short description of one image
// A bad image is reported with the file, entry and offset the image library names, exit 1;
// a usage error exits 2 as argparse does.
using System.CommandLine;
using Crest.Images;
using Crest.Images.Json;

namespace Crest.Cli.Crit;

internal static class CritVerbs
{
    public static readonly IReadOnlySet<string> Names = new HashSet<string> { "show", "decode", "encode", "info" };

    /// <summary>Exit code of a usage error, as Python's argparse (crit) gives it.</summary>
    public const int UsageExitCode = 2;

    public static void AddCommands(RootCommand root, TextWriter stdout, TextWriter stderr)
    {
        var decode = new Command("decode", "convert a CRIU image to JSON");
        var decodeIn = new Option<string?>("--in", "-i") { Description = "criu image in binary format to be decoded (stdin by default)" };
        var decodeOut = new Option<string?>("--out", "-o") { Description = "where to put criu image in json format (stdout by default)" };
        var pretty = new Option<bool>("--pretty") { Description = "multiline with indents and some numerical fields in field-specific format" };
        decode.Options.Add(decodeIn);
        decode.Options.Add(decodeOut);
        decode.Options.Add(pretty);
        decode.SetAction(parsed => Guard("decode", stderr, () =>
        {
            string? inPath = parsed.GetValue(decodeIn);
            using var input = inPath is null ? Console.OpenStandardInput() : File.OpenRead(inPath);
            using var output = OpenOutput(parsed.GetValue(decodeOut));
            CritTool.Decode(input, inPath ?? "stdin", output, parsed.GetValue(pretty));
        }));

        var encode = new Command("encode", "convert JSON back to a CRIU image");
        var encodeIn = new Option<string?>("--in", "-i") { Description = "criu image in json format (stdin by default)" };
        var encodeOut = new Option<string?>("--out", "-o") { Description = "where to put criu image in binary format (stdout by default)" };
        encode.Options.Add(encodeIn);
        encode.Options.Add(encodeOut);
        encode.SetAction(parsed => Guard("encode", stderr, () =>
        {
            string? inPath = parsed.GetValue(encodeIn);
            using var input = inPath is null ? Console.OpenStandardInput() : File.OpenRead(inPath);
            using var output = OpenOutput(parsed.GetValue(encodeOut));
            CritTool.Encode(input, inPath ?? "stdin", output);
        }));

        var show = new Command("show", "convert a CRIU image to pretty JSON");
        var showIn = new Argument<string>("in") { Description = "criu image in binary format" };
        show.Arguments.Add(showIn);
        show.SetAction(parsed => Guard("show", stderr, () => CritTool.Show(parsed.GetValue(showIn)!, stdout)));

        var info = new Command("info", "show info about an image");
        var infoIn = new Argument<string>("in") { Description = "criu image in binary format" };
        info.Arguments.Add(infoIn);
        info.SetAction(parsed => Guard("info", stderr, () => CritTool.Info(parsed.GetValue(infoIn)!, stdout)));

        root.Subcommands.Add(decode);
        root.Subcommands.Add(encode);
        root.Subcommands.Add(show);
        root.Subcommands.Add(info);
    }

    private static Stream OpenOutput(string? path) => path is null ? Console.OpenStandardOutput() : File.Create(path);

    /// <summary>Runs a verb; a bad image or an unreadable file is a message and exit 1.</summary>
    private static int Guard(string verb, TextWriter stderr, Action action)
    {
        try
        {
            action();
            return 0;
        }
        catch (ImageFormatException e)
        {
            stderr.WriteLine($"crest {verb}: {e.Message}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"crest {verb}: {e.Message}");
        }
        return 1;
    }
}
