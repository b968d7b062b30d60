namespace Crest.Kernel.Processes;

/// <summary>How <see cref="ChildProcess.Spawn"/> sets up the child before exec (posix_spawn attributes and file actions).</summary>
public sealed class SpawnOptions
{
    /// <summary>The child calls setsid(2) (POSIX_SPAWN_SETSID): its own session and process group.</summary>
    public bool NewSession { get; init; }

    /// <summary>The child joins process group N (POSIX_SPAWN_SETPGROUP); 0 makes it a group of its own. Null: ours.</summary>
    public int? ProcessGroup { get; init; }

    /// <summary>Look the program up in PATH when it has no slash (posix_spawnp).</summary>
    public bool SearchPath { get; init; }

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
