// fs-PID.img: the task's working and root directories (as directory entries in files.img) and its umask.
using Crest.Images.Protos;

namespace Crest.Engine.Files;

internal static class FsDumper
{
    private const uint O_DIRECTORY = 0x10000;

    public static FsEntry Collect(int pid, FileTable table, uint umask, UnionMounts unions)
    {
        string cwd = new FileInfo($"/proc/{pid}/cwd").LinkTarget ?? "/";
        string root = new FileInfo($"/proc/{pid}/root").LinkTarget ?? "/";
        uint cwdId = RegularFiles.AddByPath(table, $"task {pid} cwd", $"/proc/{pid}/cwd", cwd, O_DIRECTORY, unions);
        uint rootId = RegularFiles.AddByPath(table, $"task {pid} root", $"/proc/{pid}/root", root, O_DIRECTORY, unions);
        return new FsEntry { CwdId = cwdId, RootId = rootId, Umask = umask };
    }
}
