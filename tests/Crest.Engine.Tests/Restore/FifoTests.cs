using Crest.Engine.Tests.Dump;
using Crest.Images;
using Crest.Images.Protos;
using Crest.Kernel.Tests.Fixtures;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Restore;

// A FIFO opened by path: files.img holds a FIFO entry and the REG entry of its path, fifo-data.img the bytes
// queued at dump time. The restored task opens it by path again; the fixture checks bytes, flags and size.
[Collection("Children of the test process")]
public class FifoTests
{
    [Fact]
    public void AFifoOpenedByPathComesBackWithItsBytesAndFlags()
    {
        string dir = NewImagesDir();
        string fifo = Path.Combine(dir, "the-fifo");
        using var fixture = FixtureProcess.Start("fifo_path", fifo);
        try
        {
            DumpAndKill(fixture, dir);

            List<FileEntry> files;
            using (var reader = ImageReader.Open(Path.Combine(dir, "files.img"), ImageKinds.Files))
                files = reader.ReadEntries(FileEntry.Parser).ToList();
            var fifos = files.Where(f => f.Type == FdTypes.Fifo).ToList();
            Assert.Equal(2, fifos.Count); // the read description (fds 5 and 6) and the write one (fd 7)
            Assert.All(fifos, f => Assert.Equal(fifo, files.Single(r => r.Id == f.Fifo.RegfId).Reg.Name));
            Assert.Single(fifos.Select(f => f.Fifo.PipeId).Distinct());
            foreach (string image in new[] { "files.img", "fifo-data.img", "fdinfo-1.img" })
                using (Crit.Decode(Path.Combine(dir, image))) { }

            using var restored = RestoreDetached(dir);
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
