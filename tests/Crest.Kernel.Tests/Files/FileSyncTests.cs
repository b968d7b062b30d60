using Crest.Kernel.Files;

namespace Crest.Kernel.Tests.Files;

public class FileSyncTests
{
    [Fact]
    public void FilesAndDirectoriesCanBeSynced()
    {
        string dir = Directory.CreateTempSubdirectory("crest-sync-").FullName;
        try
        {
            string path = Path.Combine(dir, "f");
            using (var file = FileDescriptor.Open(path, OpenFlags.WriteOnly | OpenFlags.Create, 0x180))
            {
                file.WriteAll("data"u8);
                file.Sync();
            }
            using var directory = FileDescriptor.Open(dir, OpenFlags.ReadOnly | OpenFlags.Directory);
            directory.Sync();
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
