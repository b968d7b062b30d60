// The tmpfs directories of --remote on this machine (RemoteCommands.cs says why images are staged at all):
//
//   /dev/shm/crest-remote/            mode 0700, removed with the last entry in it
//     .dump-PID-ID/                   a dump or pre-dump of snapshot ID in progress, crest PID's own: two dumps of
//                                     one id at once (two jobs, each with its image-proxy) never share a directory
//     ID/                             the record of pre-dump ID once the image-cache acknowledged it, what the next
//       parent -> ../PARENT           round reads of it (same depth as the staging: the link holds in both places)
//   /dev/shm/crest-restore-PID/       restore --remote: the snapshot and its parents fetched from the cache
//
// A crest killed with SIGKILL cannot remove its directory; the next dump or restore removes the ones whose PID is
// gone (OwnedDirectories). Snapshot ids are file names that do not begin with '.', so a record is never taken for a
// dump in progress.
using Crest.Diagnostics;
using Crest.Transport.Remote;

namespace Crest.Cli.Criu;

internal static class RemoteStaging
{
    /// <summary>Where dumps stage their images and keep the records of pre-dumps.</summary>
    public const string Root = "/dev/shm/crest-remote";

    private const string DumpPrefix = ".dump-";
    private const string RestoreParent = "/dev/shm";
    private const string RestorePrefix = "crest-restore-";
    private const UnixFileMode PrivateDirectory = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>A snapshot id as --remote takes it: one file name, not hidden.</summary>
    public static bool IsSnapshotId(string id) => id.Length > 0 && id[0] != '.' && !id.Contains('/') && !id.Contains('\0');

    /// <summary>The record of pre-dump <paramref name="snapshot"/>.</summary>
    public static string RecordOf(string snapshot) => Path.Combine(Root, snapshot);

    /// <summary>A new staging directory of this process for <paramref name="snapshot"/>, after removing those of dumps that are gone.</summary>
    public static string BeginDump(string snapshot)
    {
        Directory.CreateDirectory(Root, PrivateDirectory);
        RemoveStale(Root, DumpPrefix);
        string stage = Path.Combine(Root, $"{DumpPrefix}{Environment.ProcessId}-{snapshot}");
        Delete(stage); // an earlier round of this process that could not remove it
        Directory.CreateDirectory(stage, PrivateDirectory);
        return stage;
    }

    /// <summary>A new directory of this process for the images a restore fetches, after removing those of restores that are gone.</summary>
    public static string BeginRestore()
    {
        RemoveStale(RestoreParent, RestorePrefix);
        string root = Path.Combine(RestoreParent, $"{RestorePrefix}{Environment.ProcessId}");
        Directory.CreateDirectory(root, PrivateDirectory);
        return root;
    }

    /// <summary>
    /// The staging directory of an acknowledged pre-dump becomes the record of its snapshot. A record of the same id
    /// already there (an older pre-dump, or one of the same id that ended meanwhile) is replaced: the newest wins.
    /// </summary>
    public static void KeepAsRecord(string stage, string snapshot)
    {
        string record = RecordOf(snapshot);
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                Directory.Move(stage, record);
                return;
            }
            catch (IOException) when (attempt < 5 && Directory.Exists(record))
            {
                string replaced = $"{stage}.replaced";
                try
                {
                    Directory.Move(record, replaced);
                }
                catch (IOException)
                {
                    continue; // another dump moved it first
                }
                Delete(replaced);
            }
        }
    }

    /// <summary>The staging root goes with the last entry in it (a dump starting now recreates it with its own directory).</summary>
    public static void RemoveRootIfEmpty()
    {
        try
        {
            if (Directory.Exists(Root) && !Directory.EnumerateFileSystemEntries(Root).Any()) Directory.Delete(Root);
        }
        catch (IOException)
        {
            // another dump put its directory there meanwhile
        }
    }

    public static void Delete(string dir)
    {
        try
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log.Warning($"cannot remove {dir}: {e.Message}");
        }
    }

    /// <summary>Directories PREFIX-PID[-...] in <paramref name="parent"/> whose PID is no process any more.</summary>
    private static void RemoveStale(string parent, string prefix)
    {
        foreach (var (dir, owner) in OwnedDirectories.Orphaned(parent, prefix))
        {
            Log.Info($"removing {dir}, left by crest {owner} that is gone");
            Delete(dir);
        }
    }
}
