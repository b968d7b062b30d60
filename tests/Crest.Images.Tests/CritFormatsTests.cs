// The value formats crit borrows from Python (quoted-printable unix socket names, IPv6 text, int(x, 0))
// checked against Python itself on many generated inputs, and JSON errors that name the input and path.
using System.Diagnostics;
using System.Text;
using Crest.Images.Json;

namespace Crest.Images.Tests;

public sealed class CritFormatsTests
{
    private static string[] Python(string script, IEnumerable<string> inputLines)
    {
        var start = new ProcessStartInfo("/usr/bin/python3")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(script);
        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        foreach (string line in inputLines)
            process.StandardInput.WriteLine(line);
        process.StandardInput.Close();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException("python3 did not finish");
        }
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, stderr.Result);
        return stdout.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    [Fact(Timeout = 120_000)]
    public async Task QuotedPrintableMatchesPythonQuopri()
    {
        await Task.Yield();
        var random = new Random(5);
        byte[] alphabet = "\0\t\n\r .=_-/abcXYZ019~\x7f"u8.ToArray();
        var inputs = new List<byte[]> { "/tmp/crest.sock"u8.ToArray(), "\0abstract"u8.ToArray(), "."u8.ToArray(), "a \n."u8.ToArray() };
        for (int i = 0; i < 3000; i++)
        {
            byte[] input = new byte[random.Next(0, 200)];
            for (int j = 0; j < input.Length; j++)
                input[j] = random.Next(4) == 0 ? (byte)random.Next(256) : alphabet[random.Next(alphabet.Length)];
            inputs.Add(input);
        }
        string[] python = Python(
            "import sys, quopri\nfor line in sys.stdin:\n    e = quopri.encodestring(bytes.fromhex(line.strip()))\n    print(\"qp:\" + e.hex() + \":\" + quopri.decodestring(e).hex())",
            inputs.Select(Convert.ToHexString));
        Assert.Equal(inputs.Count, python.Length);
        for (int i = 0; i < inputs.Count; i++)
        {
            string ours = CritFormats.EncodeQuotedPrintable(inputs[i]);
            byte[] decoded = CritFormats.DecodeQuotedPrintable(Encoding.Latin1.GetBytes(ours));
            Assert.Equal(python[i], $"qp:{Convert.ToHexString(Encoding.Latin1.GetBytes(ours))}:{Convert.ToHexString(decoded)}".ToLowerInvariant());
        }
    }

    [Fact(Timeout = 120_000)]
    public async Task IPv6TextMatchesPythonIpaddress()
    {
        await Task.Yield();
        var random = new Random(6);
        var words = new List<uint[]>();
        for (int i = 0; i < 2000; i++)
        {
            var address = new uint[4];
            for (int j = 0; j < 4; j++)
            {
                // Mostly zero halves so that runs of zero hextets of every length and place appear.
                uint high = random.Next(3) == 0 ? (uint)random.Next(0x10000) : 0;
                uint low = random.Next(3) == 0 ? (uint)random.Next(0x10000) : 0;
                address[j] = (high << 16) | low;
            }
            words.Add(address);
        }
        string[] python = Python(
            "import sys, socket\nfrom ipaddress import IPv6Address\nfor line in sys.stdin:\n"
            + "    w = [int(x) for x in line.split()]\n"
            + "    v = (socket.ntohl(w[0]) << 96) + (socket.ntohl(w[1]) << 64) + (socket.ntohl(w[2]) << 32) + socket.ntohl(w[3])\n"
            + "    print(IPv6Address(v).compressed)",
            words.Select(w => string.Join(' ', w)));
        for (int i = 0; i < words.Count; i++)
        {
            Assert.Equal(python[i], CritFormats.DecodeIp(words[i]));
            Assert.True(CritFormats.TryEncodeIp(python[i], out uint[] back));
            Assert.Equal(words[i], back);
        }
    }

    [Theory]
    [InlineData("0x1f", 31)]
    [InlineData("0X1F", 31)]
    [InlineData(" 42 ", 42)]
    [InlineData("-0x10", -16)]
    [InlineData("0o17", 15)]
    [InlineData("0b101", 5)]
    [InlineData("1_000", 1000)]
    [InlineData("0", 0)]
    [InlineData("00", 0)]
    public void PythonIntegerLiteralsAreAccepted(string text, long expected)
    {
        Assert.True(CritFormats.TryParsePythonInt(text, out Int128 value));
        Assert.Equal(expected, (long)value);
    }

    [Theory]
    [InlineData("")]
    [InlineData("0x")]
    [InlineData("012")]
    [InlineData("1__0")]
    [InlineData("_1")]
    [InlineData("1.5")]
    [InlineData("0xg")]
    public void OtherTextIsNotAnInteger(string text) =>
        Assert.False(CritFormats.TryParsePythonInt(text, out _));

    [Theory]
    [InlineData("""{"magic": "PSTREE", "entries": [{"pid": 1, "ppid": 0, "pgid": 1}]}""", "$.entries[0]", "required field PstreeEntry.sid is missing")]
    [InlineData("""{"magic": "PSTREE", "entries": [{"pid": 1, "ppid": 0, "pgid": 1, "sid": 1, "tid": 3}]}""", "$.entries[0].tid", "PstreeEntry has no field tid")]
    [InlineData("""{"magic": "PSTREE", "entries": [{"pid": -1, "ppid": 0, "pgid": 1, "sid": 1}]}""", "$.entries[0].pid", "-1 is out of range for UInt32")]
    [InlineData("""{"magic": "PSTREE", "entries": [{"pid": 1, "ppid": 0, "pgid": 1, "sid": 1, "threads": [1, "two"]}]}""", "$.entries[0].threads[1]", "\"two\" is not an integer")]
    [InlineData("""{"magic": "CORE", "entries": [{"mtype": "VAX"}]}""", "$.entries[0].mtype", "VAX is not a value of March")]
    [InlineData("""{"magic": "NOPE", "entries": []}""", "$.magic", "unknown image magic \"NOPE\"")]
    [InlineData("""{"magic": "PAGES", "entries": []}""", "$.magic", "raw data")]
    [InlineData("""{"magic": "PIPES_DATA", "entries": [{"pipe_id": 1, "bytes": 3, "extra": "YQ==\n"}]}""", "$.entries[0].extra", "holds 1 bytes but the entry declares 3")]
    [InlineData("""{"magic": "MM", "entries": [{"vmas": [{"prot": "PROT_FLY"}]}]}""", "$.entries[0].vmas[0].prot", "not a set of mmap.prot flags")]
    [InlineData("""{"magic": "PSTREE", "entries": [}""", "$", "not JSON")]
    public void JsonErrorsNameTheInputAndThePath(string json, string path, string reason)
    {
        JsonImageException error = Assert.Throws<JsonImageException>(
            () => CritTool.Encode(new MemoryStream(Encoding.UTF8.GetBytes(json)), "broken.json", Stream.Null));
        Assert.Equal("broken.json", error.Input);
        Assert.Equal(path, error.JsonPath);
        Assert.Contains(reason, error.Message);
        Assert.StartsWith($"broken.json: {path}: ", error.Message);
    }
}
