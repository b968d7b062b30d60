namespace Crest.Engine.Restore;

/// <summary>What to restore and how (CONTRACT.md; CRIU's restore options of the same names).</summary>
public sealed record RestoreOptions
{
    /// <summary>The images directory (absolute or relative to the current directory).</summary>
    public required string ImagesDir { get; init; }

    /// <summary>-d / --restore-detached: return once the tree runs instead of waiting for the root task.</summary>
    public bool Detached { get; init; }

    /// <summary>--pidfile: absolute path, created O_EXCL, receives the root pid in decimal without a newline.</summary>
    public string? PidFile { get; init; }

    /// <summary>--inherit-fd: fds of this process that stand for resources of the images (external files above all).</summary>
    public IReadOnlyList<InheritedFd> InheritFds { get; init; } = [];

    /// <summary>-j / --shell-job: fds on the terminal of the shell that started the dumped tree get this process's terminal.</summary>
    public bool ShellJob { get; init; }

    /// <summary>--lazy-pages: the socket of the lazy-pages daemon that fills private anonymous memory after the tree runs.</summary>
    public string? LazyPagesSocket { get; init; }
}
