// Directories on tmpfs named after the process that owns them, PREFIX + PID, possibly followed by '-' and more: the
// image-cache's store (crest-cache-PID), a dump's staging (.dump-PID-ID), a restore's fetched images
// (crest-restore-PID). A process killed with SIGKILL cannot remove its own; the next one of its kind removes those
// whose PID is no process any more. Pids are those of this pid namespace: /dev/shm is shared by the processes that
// share it.
using System.Globalization;

namespace Crest.Transport.Remote;

public static class OwnedDirectories
{
    /// <summary>The directories PREFIX-PID[-...] in <paramref name="parent"/> whose PID is gone, with that PID (none if it cannot be read).</summary>
    public static List<(string Directory, int Owner)> Orphaned(string parent, string prefix)
    {
        var orphaned = new List<(string, int)>();
        string[] dirs;
        try
        {
            dirs = System.IO.Directory.GetDirectories(parent, prefix + "*");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return orphaned;
        }
        foreach (string dir in dirs)
        {
            string rest = Path.GetFileName(dir)[prefix.Length..];
            int dash = rest.IndexOf('-');
            if (!int.TryParse(dash < 0 ? rest : rest[..dash], NumberStyles.None, CultureInfo.InvariantCulture, out int owner) || owner <= 0) continue;
            if (owner == Environment.ProcessId || System.IO.Directory.Exists($"/proc/{owner}")) continue;
            orphaned.Add((dir, owner));
        }
        return orphaned;
    }
}
