// Resources handed to the restore with --inherit-fd fd[N]:ID (CRIU's inherit-fd): the task does not reopen the
// dumped object, it opens Crest's /proc/CREST/fd/N instead, which gives it an open file description of its own
// on the same file or pipe (as an fd passed over SCM_RIGHTS and then given its flags and offset), with the
// dumped status flags; RestoreFiles then moves it to its number and seeks it to the dumped offset.
// Which dumped object an id names: a REG entry with `ext` set by its name (file[MNT_ID:INODE]), any other REG
// entry by its path without the leading slash, a PIPE entry by its link text pipe:[INODE], a UNIXSK entry by its
// link text socket:[INODE] (the socket is then taken as it is: not created, bound nor connected). Files dumped as
// external (REG ext, PIPE crest_ext) cannot be restored without their --inherit-fd: the check runs before any
// task is created, and names the fd and the option to pass.
using Crest.Diagnostics;
using Crest.Images.Protos;

namespace Crest.Engine.Restore;

internal sealed class RestoreInheritedFds
{
    private readonly Dictionary<string, int> _byResource = new(StringComparer.Ordinal);

    public RestoreInheritedFds(IReadOnlyList<InheritedFd> inherited)
    {
        foreach (var i in inherited)
        {
            // CRIU fstat()s each inherited fd when it parses the option: a closed one is an error, not a surprise later.
            if (Files.RegularFiles.TryStat($"/proc/self/fd/{i.Fd}") is null)
                throw new RestoreException($"--inherit-fd {i}: fd {i.Fd} is not open in the restoring process");
            _byResource[i.Resource] = i.Fd; // the last one given for an id wins
            Log.Info($"restore: inherited fd {i.Fd} stands for {i.Resource}");
        }
    }

    /// <summary>The id --inherit-fd names a dumped regular file by: its external id, or its path without the leading '/'.</summary>
    public static string Key(RegFileEntry file) =>
        file.Ext ? file.Name : file.Name == "/" ? "." : file.Name.StartsWith('/') ? file.Name[1..] : file.Name;

    public static string Key(PipeEntry pipe) => $"pipe:[{pipe.PipeId}]";

    public static string Key(UnixSkEntry socket) => $"socket:[{socket.Ino}]";

    /// <summary>The restoring process's fd given for the object named <paramref name="key"/>, or null when none was.</summary>
    public int? FdFor(string key) => _byResource.TryGetValue(key, out int fd) ? fd : null;

    /// <summary>The /proc link the task opens instead of the object named <paramref name="key"/>, or null when none was given.</summary>
    public string? LinkFor(string key) =>
        _byResource.TryGetValue(key, out int fd) ? $"/proc/{Environment.ProcessId}/fd/{fd}" : null;

    /// <summary>Refuse, before anything is created, a tree with an external file that no --inherit-fd replaces.</summary>
    public void CheckTree(RestoreTree tree)
    {
        foreach (var (pid, images) in tree.Processes.OrderBy(p => p.Key))
        {
            foreach (var fd in images.Fds.OrderBy(f => f.Fd))
            {
                if (!images.Files.TryGetValue(fd.Id, out var file)) continue;
                string? key = file.Reg is { Ext: true } reg ? Key(reg) : file.Pipe is { CrestExt: true } pipe ? Key(pipe) : null;
                if (key is null || _byResource.ContainsKey(key)) continue;
                throw new RestoreException($"task {pid} fd {fd.Fd} was dumped as the external file {key}, which this restore " +
                    $"was not given: pass --inherit-fd fd[N]:{key} where N is an fd of the restoring process open on its replacement");
            }
        }
    }
}
