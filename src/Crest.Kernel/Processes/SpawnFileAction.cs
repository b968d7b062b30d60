namespace Crest.Kernel.Processes;

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
