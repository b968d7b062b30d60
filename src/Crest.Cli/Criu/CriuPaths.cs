// Where a CRIU command reads and writes. CRIU opens the images directory (-D, default the
// current directory), then changes into the work directory (-W, default the images directory)
// before it opens the log, so a relative --log-file or --pidfile lands in the work directory.
// --prev-images-dir becomes the "parent" symlink inside the images directory with the path
// given, so a relative one is resolved from the images directory (the same place as the work
// directory unless -W moves it). Crest keeps its own current directory and resolves instead.
namespace Crest.Cli.Criu;

/// <param name="LogFile">Absolute path; null when logging to stderr (no -o) or stdout (`-o -`).</param>
internal sealed record CriuPaths(string ImagesDir, string WorkDir, string? LogFile, bool LogToStdout, string? PidFile, string? PrevImagesDir)
{
    /// <param name="remote">image-proxy, image-cache and --remote: there is no images directory to work in, and the
    /// work directory (where the daemons' sockets are) defaults to /run/crest on both machines.</param>
    public static CriuPaths Resolve(CriuOptions options, string currentDirectory, bool remote = false)
    {
        string imagesDir = Path.GetFullPath(options.ImagesDir ?? ".", currentDirectory);
        string workDir = options.WorkDir is { } w ? Path.GetFullPath(w, currentDirectory)
            : remote ? Crest.Transport.Remote.ImageSockets.DefaultWorkDir
            : imagesDir;
        string? log = options.LogFile;
        bool stdout = log == "-";
        return new CriuPaths(
            imagesDir,
            workDir,
            log is null || stdout ? null : Path.GetFullPath(log, workDir),
            stdout,
            options.PidFile is { } pid ? Path.GetFullPath(pid, workDir) : null,
            options.PrevImagesDir is { } prev ? Path.GetFullPath(prev, imagesDir) : null);
    }
}
