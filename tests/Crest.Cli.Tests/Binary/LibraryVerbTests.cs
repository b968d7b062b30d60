// The verbs backed by the image library (Crest.Images.Json.CritTool) and the kernel check
// (Crest.Engine.Check.KernelCheck), run through the binary.
namespace Crest.Cli.Tests.Binary;

public class LibraryVerbTests
{
    [Fact]
    public void CheckOfAnUnknownFeatureFails()
    {
        using var dir = new TempDirectory();
        var run = CrestProcess.Run(dir.Path, "check", "--no-default-config", "--no-default-config", "-verbosity=0",
            "--feature", "no_such_feature");
        Assert.Equal(1, run.ExitCode);
    }

    [Fact]
    public void CheckOfAPresentFeatureSucceeds()
    {
        // timerfd (Linux 2.6.25) is on every kernel Crest runs on.
        using var dir = new TempDirectory();
        var run = CrestProcess.Run(dir.Path, "check", "--no-default-config", "--no-default-config", "-verbosity=0",
            "--feature", "timerfd");
        Assert.Equal(0, run.ExitCode);
    }

    [Fact]
    public void DecodeOfAFileThatIsNoImageNamesTheFile()
    {
        using var dir = new TempDirectory();
        string bad = Path.Combine(dir.Path, "core-1.img");
        File.WriteAllBytes(bad, [1, 2, 3]);
        var run = CrestProcess.Run(dir.Path, "decode", "-i", bad);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("core-1.img", run.Stderr);
    }

    [Fact]
    public void ShowOfAFileThatIsNoImageFails()
    {
        using var dir = new TempDirectory();
        string bad = Path.Combine(dir.Path, "pstree.img");
        File.WriteAllBytes(bad, [0x19, 0x43, 0x56, 0x54]);
        var run = CrestProcess.Run(dir.Path, "show", bad);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("pstree.img", run.Stderr);
    }
}
