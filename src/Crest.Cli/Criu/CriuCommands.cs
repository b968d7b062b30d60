// CRIU's commands (criu/crtools.c: dump, pre-dump, restore, lazy-pages, check, page-server,
// service, swrk, dedup, cpuinfo; image-proxy and image-cache from CRIU 3.14) and what each
// accepts after the command word.
namespace Crest.Cli.Criu;

/// <param name="MinOperands">Words required after the command (cpuinfo dump|check, swrk FD).</param>
/// <param name="MaxOperands">Words allowed after the command; restore takes more only with --exec-cmd.</param>
/// <param name="OpensImagesDir">CRIU opens the images directory for every command but service (and swrk, which it dispatches before parsing options).</param>
internal sealed record CriuCommand(string Name, string Summary, int MinOperands = 0, int MaxOperands = 0, bool OpensImagesDir = true);

internal static class CriuCommands
{
    public static readonly IReadOnlyList<CriuCommand> All =
    [
        new("dump", "checkpoint a process/tree identified by pid"),
        new("pre-dump", "pre-dump task(s) minimizing their frozen time"),
        new("restore", "restore a process/tree", MaxOperands: int.MaxValue),
        new("check", "checks whether the kernel support is up-to-date"),
        new("page-server", "launch page server"),
        new("service", "launch service", OpensImagesDir: false),
        new("swrk", "serve one RPC client on the socket given as FD", MinOperands: 1, MaxOperands: 1, OpensImagesDir: false),
        new("dedup", "remove duplicates in memory dump"),
        new("lazy-pages", "launch lazy-pages daemon"),
        new("cpuinfo", "cpuinfo dump|check: write or validate cpu information", MinOperands: 1, MaxOperands: 1),
        new("image-proxy", "launch image proxy (forwards images to an image-cache)", OpensImagesDir: false),
        new("image-cache", "launch image cache (serves images received from an image-proxy)", OpensImagesDir: false),
        new("migrate", "move a process tree to the image-cache at --address/--port and restore it there (Crest's own)", OpensImagesDir: false),
    ];

    public static CriuCommand? Find(string name) => All.FirstOrDefault(c => c.Name == name);
}
