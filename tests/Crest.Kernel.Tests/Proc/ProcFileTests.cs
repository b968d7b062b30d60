using Crest.Kernel.Proc;

namespace Crest.Kernel.Tests.Proc;

public class ProcFileTests
{
    [Fact]
    public void ReadsAFileLargerThanOneBufferToTheEnd()
    {
        // smaps of this process is far longer than the first 4 KiB buffer and reports size 0.
        byte[] smaps = ProcFile.ReadAll(Environment.ProcessId, "smaps");
        Assert.True(smaps.Length > 64 * 1024, $"smaps is only {smaps.Length} bytes");
        Assert.Equal((byte)'\n', smaps[^1]);
        Assert.NotEmpty(ProcSmaps.Parse(smaps));
    }

    [Fact]
    public void MissingFileIsAnOpenErrorNamingPidAndPath()
    {
        var e = Assert.Throws<KernelException>(() => ProcFile.ReadAll(Environment.ProcessId, "no-such-file"));
        Assert.Equal("open", e.Operation);
        Assert.Equal(Errno.ENOENT, e.Errno.Value);
        Assert.Equal(Environment.ProcessId, e.Task);
        Assert.Equal($"open({Environment.ProcessId}): ENOENT (No such file or directory): /proc/{Environment.ProcessId}/no-such-file", e.Message);
    }

    [Fact]
    public void ReadingADirectoryIsAReadError()
    {
        var e = Assert.Throws<KernelException>(() => ProcFile.ReadAll("/proc/self"));
        Assert.Equal(("read", Errno.EISDIR), (e.Operation, e.Errno.Value));
    }

    [Fact]
    public void FileLongerThanTheBoundIsRefused()
    {
        var e = Assert.Throws<KernelException>(() => ProcFile.ReadAll("/proc/self/maps", maxBytes: 100));
        Assert.Equal(("read", Errno.EFBIG), (e.Operation, e.Errno.Value));
        Assert.Contains("/proc/self/maps: larger than 100 bytes", e.Message);
    }

    [Fact]
    public void FileOfExactlyTheBoundIsAccepted()
    {
        string path = Path.Combine(Path.GetTempPath(), $"crest-procfile-{Guid.NewGuid():N}");
        try
        {
            File.WriteAllBytes(path, new byte[8192]);
            Assert.Equal(8192, ProcFile.ReadAll(path, maxBytes: 8192).Length);
            Assert.Equal(Errno.EFBIG, Assert.Throws<KernelException>(() => ProcFile.ReadAll(path, maxBytes: 8191)).Errno.Value);
            File.WriteAllBytes(path, []);
            Assert.Empty(ProcFile.ReadAll(path));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
