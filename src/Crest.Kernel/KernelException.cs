namespace Crest.Kernel;

/// <summary>
/// A kernel call failed. The message names the call, the task it was aimed at and the errno:
/// <c>ptrace(PTRACE_SEIZE, 4242): EPERM (Operation not permitted)</c>.
/// </summary>
public class KernelException : Exception
{
    public KernelException(string operation, int task, Errno errno, string? detail = null)
        : base(Format(operation, task, errno, detail))
    {
        Operation = operation;
        Task = task;
        Errno = errno;
    }

    public KernelException(string operation, Errno errno, string? detail = null)
        : this(operation, 0, errno, detail) { }

    /// <summary>The call, with its symbolic arguments: <c>ptrace(PTRACE_SEIZE)</c>.</summary>
    public string Operation { get; }

    /// <summary>The task (pid or tid) the call was aimed at, 0 when none.</summary>
    public int Task { get; }

    public Errno Errno { get; }

    private static string Format(string operation, int task, Errno errno, string? detail)
    {
        string call = operation.EndsWith(')') ? operation : $"{operation}()";
        if (task != 0)
            call = call.EndsWith("()") ? $"{call[..^1]}{task})" : $"{call[..^1]}, {task})";
        return detail is null ? $"{call}: {errno}" : $"{call}: {errno}: {detail}";
    }
}
