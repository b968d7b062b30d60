namespace Crest.Engine.Dump;

/// <summary>
/// A dump failed. The message is a whole sentence that names the task and the fd, file or mapping involved;
/// when it is thrown the task has been released as it was and no inventory.img was written.
/// </summary>
public sealed class DumpException : Exception
{
    public DumpException(string message)
        : base(message)
    {
    }

    public DumpException(string message, Exception inner)
        : base(message, inner)
    {
    }
}
