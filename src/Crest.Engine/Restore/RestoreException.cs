namespace Crest.Engine.Restore;

/// <summary>A restore that could not be completed; every task it had created is gone when this is thrown.</summary>
public sealed class RestoreException : Exception
{
    public RestoreException(string message) : base(message)
    {
    }

    public RestoreException(string message, Exception inner) : base(message, inner)
    {
    }
}
