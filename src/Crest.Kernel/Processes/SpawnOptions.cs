namespace Crest.Kernel.Processes;

/// <summary>How <see cref="ChildProcess.Spawn"/> sets up the child before exec (posix_spawn attributes and file actions).</summary>
public sealed class SpawnOptions
{
    /// <summary>The child calls setsid(2) (POSIX_SPAWN_SETSID): its own session and process group.</summary>
    public bool NewSession { get; init; }

    /// <summary>
    /// Every signal back to SIG_DFL and an empty signal mask in the child (POSIX_SPAWN_SETSIGDEF and
    /// POSIX_SPAWN_SETSIGMASK), so nothing of the runtime's signal setup leaks into a tracee.
    /// </summary>
    public bool ResetSignals { get; init; } = true;

    /// <summary>The child's environment as NAME=value strings; null inherits ours.</summary>
    public IReadOnlyList<string>? Environment { get; init; }

    /// <summary>Directory the child starts in; null keeps ours.</summary>
    public string? WorkingDirectory { get; init; }

    /// <summary>Applied in order in the child before exec.</summary>
    public List<SpawnFileAction> FileActions { get; } = [];
}

/// <summary>One posix_spawn file action.</summary>
public abstract record SpawnFileAction
{
    /// <summary>open(path, flags, mode) onto descriptor <paramref name="Fd"/>.</summary>
    public sealed record Open(int Fd, string Path, int Flags, int Mode = 0x1a4 /* 0644 */) : SpawnFileAction;

    /// <summary>dup2(From, To).</summary>
    public sealed record Dup2(int From, int To) : SpawnFileAction;

    /// <summary>close(Fd).</summary>
    public sealed record Close(int Fd) : SpawnFileAction;

    public const int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0x40, O_TRUNC = 0x200, O_APPEND = 0x400,
        O_CLOEXEC = 0x80000;
}
