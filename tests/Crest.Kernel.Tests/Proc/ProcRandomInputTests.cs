using Crest.Kernel.Proc;

namespace Crest.Kernel.Tests.Proc;

/// <summary>
/// Random bytes and mutated golden samples: every parser must return a result or throw
/// ProcParseException — never an IndexOutOfRange, Format, Overflow or any other exception, and
/// never hang (each run is bounded).
/// </summary>
public class ProcRandomInputTests
{
    private delegate void Parser(ReadOnlySpan<byte> input);

    private static readonly (string Name, Parser Parse)[] Parsers =
    [
        ("stat", s => ProcStat.Parse(s)),
        ("status", s => ProcStatus.Parse(s)),
        ("maps", s => ProcMaps.Parse(s)),
        ("smaps", s => ProcSmaps.Parse(s)),
        ("fdinfo", s => FdInfo.Parse(s)),
        ("mountinfo", s => ProcMountInfo.Parse(s)),
        ("timers", s => ProcTimers.Parse(s)),
        ("limits", s => ProcLimits.Parse(s)),
        ("auxv", s => ProcAuxv.Parse(s)),
    ];

    public static TheoryData<string> ParserNames() => [.. Parsers.Select(p => p.Name)];

    /// <summary>Bytes the parsers treat specially, so mutations hit the interesting paths.</summary>
    private static readonly byte[] Interesting = "0123456789abcdefx -:()[]/\\\n\t,.kBEOF"u8.ToArray();

    private static void ParseOrParseException(Parser parse, byte[] input, List<string> failures)
    {
        try
        {
            parse(input);
        }
        catch (ProcParseException)
        {
            // The documented way to reject input.
        }
        catch (Exception e)
        {
            failures.Add($"{e.GetType().Name}: {e.Message} on [{Convert.ToHexString(input.AsSpan(0, Math.Min(input.Length, 200)))}]");
        }
    }

    private static void RunBounded(Action action)
    {
        var task = Task.Run(action);
        Assert.True(task.Wait(TimeSpan.FromMinutes(2)), "parsing random input did not finish: a parser loops");
    }

    [Theory]
    [MemberData(nameof(ParserNames))]
    public void RandomBytesYieldAResultOrAParseException(string name)
    {
        var parse = Parsers.Single(p => p.Name == name).Parse;
        var failures = new List<string>();
        RunBounded(() =>
        {
            var random = new Random(name.GetHashCode(StringComparison.Ordinal) ^ 0x5eed);
            for (int i = 0; i < 3000; i++)
            {
                var input = new byte[random.Next(0, 300)];
                if (random.Next(2) == 0)
                    random.NextBytes(input);
                else
                    for (int j = 0; j < input.Length; j++)
                        input[j] = Interesting[random.Next(Interesting.Length)];
                ParseOrParseException(parse, input, failures);
            }
        });
        Assert.Empty(failures);
    }

    [Fact]
    public void MutatedSamplesYieldAResultOrAParseException()
    {
        var failures = new List<string>();
        RunBounded(() =>
        {
            var random = new Random(20261123);
            foreach (string sample in ProcSamples.All)
            {
                byte[] original = ProcSamples.Read(sample);
                foreach (var (_, parse) in Parsers)
                {
                    ParseOrParseException(parse, original, failures);
                    for (int i = 0; i < 150; i++)
                        ParseOrParseException(parse, Mutate(original, random), failures);
                }
            }
        });
        Assert.Empty(failures);
    }

    [Fact]
    public void EveryTruncationOfEverySampleYieldsAResultOrAParseException()
    {
        var failures = new List<string>();
        RunBounded(() =>
        {
            foreach (string sample in ProcSamples.All.Where(s => !s.StartsWith("smaps", StringComparison.Ordinal)))
            {
                byte[] original = ProcSamples.Read(sample);
                var (_, parse) = Parsers.Single(p => sample.Split('.')[0] == p.Name);
                for (int length = 0; length <= original.Length; length++)
                    ParseOrParseException(parse, original[..length], failures);
            }
        });
        Assert.Empty(failures);
    }

    private static byte[] Mutate(byte[] original, Random random)
    {
        var bytes = new List<byte>(original);
        int edits = random.Next(1, 6);
        for (int e = 0; e < edits && bytes.Count > 0; e++)
        {
            int at = random.Next(bytes.Count);
            switch (random.Next(6))
            {
                case 0: bytes[at] = (byte)random.Next(256); break;
                case 1: bytes[at] = Interesting[random.Next(Interesting.Length)]; break;
                case 2: bytes.RemoveRange(at, Math.Min(random.Next(1, 40), bytes.Count - at)); break;
                case 3: bytes.Insert(at, Interesting[random.Next(Interesting.Length)]); break;
                case 4: bytes.InsertRange(at, Enumerable.Repeat((byte)'9', random.Next(1, 30))); break;
                default: bytes.RemoveRange(at, bytes.Count - at); break;
            }
        }
        return [.. bytes];
    }
}
