// Files the user declared external with `--external ID` (CRIU's external list): the dump writes what the task
// held but not how to reopen it, and the restore is handed a replacement with `--inherit-fd fd[N]:ID`.
// The ids are the text CRIU compares, byte for byte:
//   file[MNT_ID:INODE]  a file opened by path (mount id and inode in lowercase hex, no padding); files.img gets a
//                       REG entry whose name is the id and whose `ext` is set, as CRIU writes it;
//   pipe:[INODE]        a pipe end (the fd's link text, inode in decimal); files.img keeps the PIPE entry with
//                       Crest's crest_ext field set, so the restore insists on an --inherit-fd for it.
// A pipe must be external when the tree holds it in one direction only and a process outside the tree holds
// it too (the logger reading a task's stdout): a new pipe at restore would cut the task off from it. Such
// holders are found by reading the fd links of every other process in /proc.
using System.Globalization;
using Crest.Diagnostics;

namespace Crest.Engine.Files;

internal sealed class ExternalFiles(IEnumerable<string> ids)
{
    private readonly HashSet<string> _ids = [.. ids];
    private readonly HashSet<string> _used = [];

    /// <summary>CRIU's id of a file opened by path: <c>file[MNT_ID:INODE]</c>, both in hex.</summary>
    public static string FileId(int mntId, ulong inode) =>
        string.Create(CultureInfo.InvariantCulture, $"file[{mntId:x}:{inode:x}]");

    /// <summary>The link text of a pipe end, which is its id for --external and --inherit-fd.</summary>
    public static string PipeId(uint inode) => string.Create(CultureInfo.InvariantCulture, $"pipe:[{inode}]");

    /// <summary>Whether <paramref name="id"/> was given with --external (and note that it was used).</summary>
    public bool Contains(string id)
    {
        if (!_ids.Contains(id)) return false;
        _used.Add(id);
        return true;
    }

    /// <summary>
    /// For an error about a file that must be external: the exact option to pass, and the --external ids of the same
    /// kind that matched nothing (most likely mistyped).
    /// </summary>
    public string Advice(string id)
    {
        string kind = id[..id.IndexOf('[')].TrimEnd(':');
        var unmatched = _ids.Where(i => !_used.Contains(i) && i.StartsWith(kind, StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList();
        string wrong = unmatched.Count == 0 ? "" : $" (--external {string.Join(", --external ", unmatched)} matches no open file)";
        return $"dump it as an external file with --external {id}{wrong}, then restore with --inherit-fd fd[N]:{id} where N is an fd of the restoring process open on its replacement";
    }

    /// <summary>Pids (not in <paramref name="tree"/>, not this process) that hold each pipe inode of <paramref name="inodes"/>.</summary>
    public static Dictionary<uint, List<int>> PipeHoldersOutside(IReadOnlySet<int> tree, IReadOnlySet<uint> inodes)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        var holders = new Dictionary<uint, List<int>>();
        int self = Environment.ProcessId;
        int processes = 0, links = 0;
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out int pid)) continue;
            if (pid == self || tree.Contains(pid)) continue;
            IEnumerable<string> fds;
            try
            {
                fds = Directory.EnumerateFileSystemEntries($"{dir}/fd").ToList();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue; // the process ended, or is not ours to look at
            }
            processes++;
            foreach (string link in fds)
            {
                links++;
                string? target;
                try
                {
                    target = new FileInfo(link).LinkTarget;
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    continue;
                }
                if (target is null || !Pipes.IsPipe(target, out uint inode) || !inodes.Contains(inode)) continue;
                if (!holders.TryGetValue(inode, out var pids)) holders[inode] = pids = [];
                if (!pids.Contains(pid)) pids.Add(pid);
            }
        }
        Log.Debug($"dump: looked for {inodes.Count} pipes outside the tree in {links} fds of {processes} processes in {System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalMilliseconds:F2} ms");
        return holders;
    }
}
