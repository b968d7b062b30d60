// errno values as a small typed value: the number, the kernel's name (ESRCH) and libc's message.
// Read it right after the failing call (Marshal.GetLastPInvokeError with SetLastError = true).
using System.Runtime.InteropServices;

namespace Crest.Kernel;

/// <summary>An errno value with its symbolic name and strerror text.</summary>
public readonly record struct Errno(int Value)
{
    public const int EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, ENXIO = 6, E2BIG = 7, ENOEXEC = 8,
        EBADF = 9, ECHILD = 10, EAGAIN = 11, ENOMEM = 12, EACCES = 13, EFAULT = 14, EBUSY = 16, EEXIST = 17,
        ENODEV = 19, ENOTDIR = 20, EISDIR = 21, EINVAL = 22, ENFILE = 23, EMFILE = 24, ENOTTY = 25, EFBIG = 27,
        ENOSPC = 28, ESPIPE = 29, EROFS = 30, EPIPE = 32, ERANGE = 34, ENAMETOOLONG = 36, ENOSYS = 38,
        ENOTEMPTY = 39, ELOOP = 40, ENODATA = 61, EOVERFLOW = 75, ENOTSOCK = 88, EMSGSIZE = 90,
        EPROTONOSUPPORT = 93, EOPNOTSUPP = 95, EAFNOSUPPORT = 97, EADDRINUSE = 98, ECONNRESET = 104,
        ENOTCONN = 107, ETIMEDOUT = 110, ECONNREFUSED = 111;

    private static readonly Dictionary<int, string> Names = new()
    {
        [1] = "EPERM", [2] = "ENOENT", [3] = "ESRCH", [4] = "EINTR", [5] = "EIO", [6] = "ENXIO", [7] = "E2BIG",
        [8] = "ENOEXEC", [9] = "EBADF", [10] = "ECHILD", [11] = "EAGAIN", [12] = "ENOMEM", [13] = "EACCES",
        [14] = "EFAULT", [15] = "ENOTBLK", [16] = "EBUSY", [17] = "EEXIST", [18] = "EXDEV", [19] = "ENODEV",
        [20] = "ENOTDIR", [21] = "EISDIR", [22] = "EINVAL", [23] = "ENFILE", [24] = "EMFILE", [25] = "ENOTTY",
        [26] = "ETXTBSY", [27] = "EFBIG", [28] = "ENOSPC", [29] = "ESPIPE", [30] = "EROFS", [31] = "EMLINK",
        [32] = "EPIPE", [33] = "EDOM", [34] = "ERANGE", [35] = "EDEADLK", [36] = "ENAMETOOLONG", [37] = "ENOLCK",
        [38] = "ENOSYS", [39] = "ENOTEMPTY", [40] = "ELOOP", [42] = "ENOMSG", [43] = "EIDRM", [61] = "ENODATA",
        [62] = "ETIME", [71] = "EPROTO", [74] = "EBADMSG", [75] = "EOVERFLOW", [84] = "EILSEQ", [85] = "ERESTART",
        [87] = "EUSERS", [88] = "ENOTSOCK", [89] = "EDESTADDRREQ", [90] = "EMSGSIZE", [91] = "EPROTOTYPE",
        [92] = "ENOPROTOOPT", [93] = "EPROTONOSUPPORT", [94] = "ESOCKTNOSUPPORT", [95] = "EOPNOTSUPP",
        [96] = "EPFNOSUPPORT", [97] = "EAFNOSUPPORT", [98] = "EADDRINUSE", [99] = "EADDRNOTAVAIL",
        [100] = "ENETDOWN", [101] = "ENETUNREACH", [102] = "ENETRESET", [103] = "ECONNABORTED",
        [104] = "ECONNRESET", [105] = "ENOBUFS", [106] = "EISCONN", [107] = "ENOTCONN", [108] = "ESHUTDOWN",
        [110] = "ETIMEDOUT", [111] = "ECONNREFUSED", [112] = "EHOSTDOWN", [113] = "EHOSTUNREACH",
        [114] = "EALREADY", [115] = "EINPROGRESS", [116] = "ESTALE", [122] = "EDQUOT", [125] = "ECANCELED",
        [130] = "EOWNERDEAD", [131] = "ENOTRECOVERABLE", [132] = "ERFKILL", [133] = "EHWPOISON",
        // Kernel-internal restart codes, visible in rax of a task stopped inside a syscall.
        [512] = "ERESTARTSYS", [513] = "ERESTARTNOINTR", [514] = "ERESTARTNOHAND", [515] = "ENOIOCTLCMD",
        [516] = "ERESTART_RESTARTBLOCK", [524] = "ENOTSUPP",
    };

    /// <summary>The errno of the last P/Invoke declared with SetLastError = true.</summary>
    public static Errno Last => new(Marshal.GetLastPInvokeError());

    /// <summary>The errno encoded in a raw syscall return value (-4095..-1), or 0.</summary>
    public static Errno FromRawReturn(long ret) => ret is < 0 and >= -4095 ? new((int)-ret) : new(0);

    public string Name => Names.TryGetValue(Value, out var n) ? n : $"errno {Value}";

    public string Message => Value switch
    {
        512 or 513 or 514 or 516 => "syscall interrupted, to be restarted",
        _ => Marshal.GetPInvokeErrorMessage(Value),
    };

    public override string ToString() => $"{Name} ({Message})";
}
