// Relative paths resolve as in CRIU: -D from the current directory, -W from it too (default -D),
// --log-file and --pidfile from the work directory, --prev-images-dir from the images directory.
using Crest.Cli.Criu;

namespace Crest.Cli.Tests.Criu;

public class CriuPathsTests
{
    private static CriuPaths Resolve(params string[] args) =>
        CriuPaths.Resolve(CriuCommandLine.Parse(args, _ => null).Options, "/cwd");

    [Fact]
    public void DefaultsAreTheCurrentDirectory()
    {
        var paths = Resolve("dump");
        Assert.Equal("/cwd", paths.ImagesDir);
        Assert.Equal("/cwd", paths.WorkDir);
        Assert.Null(paths.LogFile);
        Assert.False(paths.LogToStdout);
    }

    [Fact]
    public void RelativeLogAndPidfileLiveInTheImagesDirectory()
    {
        var paths = Resolve("dump", "-D", "imgs", "-o", "dump.log", "--pidfile", "p", "--prev-images-dir", "../prev");
        Assert.Equal("/cwd/imgs", paths.ImagesDir);
        Assert.Equal("/cwd/imgs", paths.WorkDir);
        Assert.Equal("/cwd/imgs/dump.log", paths.LogFile);
        Assert.Equal("/cwd/imgs/p", paths.PidFile);
        Assert.Equal("/cwd/prev", paths.PrevImagesDir);
    }

    [Fact]
    public void WorkDirMovesTheLogAndPidfile()
    {
        var paths = Resolve("dump", "-D", "/imgs", "-W", "work", "-o", "dump.log", "--pidfile", "p", "--prev-images-dir", "../prev");
        Assert.Equal("/cwd/work", paths.WorkDir);
        Assert.Equal("/cwd/work/dump.log", paths.LogFile);
        Assert.Equal("/cwd/work/p", paths.PidFile);
        Assert.Equal("/prev", paths.PrevImagesDir);
    }

    [Fact]
    public void AbsolutePathsStay()
    {
        var paths = Resolve("dump", "-D", "/imgs", "-o", "/var/log/d.log", "--pidfile", "/run/p");
        Assert.Equal("/var/log/d.log", paths.LogFile);
        Assert.Equal("/run/p", paths.PidFile);
    }

    [Fact]
    public void DashLogsToStdout()
    {
        var paths = Resolve("dump", "-o", "-");
        Assert.True(paths.LogToStdout);
        Assert.Null(paths.LogFile);
    }
}
