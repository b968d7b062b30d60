using Crest.Engine.Dump;
using Crest.Engine.Tests.Dump;
using Crest.Images;
using Crest.Images.Protos;
using Crest.Kernel.Tests.Fixtures;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Restore;

/// <summary>Pipes held by the dumped process: files.img PIPE entries, pipes-data.img, and the pipes after restore.</summary>
[Collection("Children of the test process")]
public class PipeTests
{
    private static void DecodeAll(string dir)
    {
        foreach (string image in Directory.GetFiles(dir, "*.img"))
        {
            if (Path.GetFileName(image).StartsWith("pages-", StringComparison.Ordinal)) continue; // raw pages, not an image crit decodes
            Crit.Decode(image).Dispose();
        }
    }

    private static List<T> Read<T>(string path, ImageKind kind, Google.Protobuf.MessageParser<T> parser) where T : class, Google.Protobuf.IMessage<T>
    {
        using var reader = ImageReader.Open(path, kind);
        return reader.ReadEntries(parser).ToList();
    }

    [Fact]
    public void QueuedDataSizeAndFlagsOfAPipeComeBack()
    {
        using var fixture = FixtureProcess.Start("pipe_buffer");
        int pid = fixture.Pid;
        string dir = NewImagesDir();
        try
        {
            DumpAndKill(fixture, dir);
            DecodeAll(dir);
            var files = Read(Path.Combine(dir, "files.img"), ImageKinds.Files, FileEntry.Parser);
            var pipes = files.Where(f => f.Type == FdTypes.Pipe).Select(f => f.Pipe).ToList();
            Assert.Equal(6, pipes.Count);                                  // a[0] (with fd 20), a[1], b[0], b[1], c[0], d[1]
            Assert.Equal(4, pipes.Select(p => p.PipeId).Distinct().Count());
            var fds = Read(Path.Combine(dir, "fdinfo-1.img"), ImageKinds.Fdinfo, FdinfoEntry.Parser);
            Assert.Equal(fds.Single(f => f.Fd == 3).Id, fds.Single(f => f.Fd == 20).Id);
            Assert.Equal(FdTypes.Pipe, fds.Single(f => f.Fd == 20).Type);

            using (var reader = ImageReader.Open(Path.Combine(dir, "pipes-data.img"), ImageKinds.PipesData))
            {
                var entries = new List<(PipeDataEntry Entry, byte[] Data)>();
                while (reader.ReadEntry(PipeDataEntry.Parser) is { } e) entries.Add((e, reader.ReadPayload()));
                Assert.Equal(4, entries.Count);
                var full = entries.Single(e => e.Entry.Bytes == 1000);
                Assert.Equal(1000u, full.Entry.Bytes);
                Assert.Equal(256u * 1024, full.Entry.Size);
                Assert.Equal(Enumerable.Range(0, 1000).Select(i => (byte)(i * 7 + 3)).ToArray(), full.Data);
                Assert.Equal(65536u, entries.Single(e => e.Entry.Bytes == 0).Entry.Size);
                Assert.Equal("tail"u8.ToArray(), entries.Single(e => e.Entry.Bytes == 4).Data);
                Assert.Equal("12345"u8.ToArray(), entries.Single(e => e.Entry.Bytes == 5).Data);
            }
            using (var decoded = Crit.Decode(Path.Combine(dir, "pipes-data.img")))
                Assert.Equal(4, decoded.RootElement.GetProperty("entries").GetArrayLength());

            using var restored = RestoreDetached(dir);
            Assert.Equal(pid, restored.Pid);
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void ABlockedReadOnAPipeGetsDataWrittenAfterRestore()
    {
        using var fixture = FixtureProcess.Start("pipe_read");
        string dir = NewImagesDir();
        try
        {
            fixture.WaitUntilInSyscall(0 /* read */, TimeSpan.FromSeconds(10));
            DumpAndKill(fixture, dir);
            DecodeAll(dir);
            using var restored = RestoreDetached(dir);
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void DumpingLeavesTheQueuedDataInThePipe()
    {
        using var fixture = FixtureProcess.Start("pipe_buffer");
        string dir = NewImagesDir();
        try
        {
            DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = dir, LeaveRunning = true });
            // The fixture reads exactly its 1000 bytes and the other queued data from the pipes it kept.
            Assert.Equal("PASS", fixture.Verify(SIGUSR1, TimeSpan.FromSeconds(10)));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
