using System.Globalization;

namespace Crest.Engine.Restore;

/// <summary>
/// --inherit-fd fd[N]:RESOURCE: fd N of the restoring process stands for RESOURCE, one of CRIU's ids:
/// <c>file[MNT_ID:INODE]</c>, <c>pipe:[INODE]</c>, <c>socket:[INODE]</c>, <c>tty[RDEV:DEV]</c>, or the path of a
/// file without its leading slash (<c>path/to/file</c>).
/// </summary>
public sealed record InheritedFd(int Fd, string Resource)
{
    /// <summary>
    /// CRIU's reading of the option: "fd", then "[N]" with N a decimal number of at least 0, then everything after
    /// the first ':' of the argument (so <c>fd[1]:pipe:[42]</c> names <c>pipe:[42]</c>). Null when it does not parse.
    /// </summary>
    public static InheritedFd? Parse(string argument)
    {
        ArgumentNullException.ThrowIfNull(argument);
        if (!argument.StartsWith("fd[", StringComparison.Ordinal)) return null;
        int close = argument.IndexOf("]:", StringComparison.Ordinal);
        if (close < 0) return null;
        if (!int.TryParse(argument.AsSpan(3, close - 3), NumberStyles.AllowLeadingWhite | NumberStyles.AllowLeadingSign,
                CultureInfo.InvariantCulture, out int fd) || fd < 0)
            return null;
        int colon = argument.IndexOf(':', StringComparison.Ordinal);
        if (colon != close + 1) return null;
        string resource = argument[(colon + 1)..];
        return resource.Length == 0 ? null : new InheritedFd(fd, resource);
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"fd[{Fd}]:{Resource}");
}
