using Crest.Engine.Dump;
using Crest.Engine.Restore;
using Crest.Engine.Tests.Dump;
using Crest.Images;
using Crest.Images.Protos;
using Crest.Kernel.Tests.Fixtures;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Restore;

/// <summary>
/// A pty opened by the dumped process itself (fixtures/pty_pair.c): both ends recreated with their termios, window
/// size, packet mode, lock, exclusive mode, queued bytes and the controlling terminal of the session leader.
/// </summary>
[Collection("Children of the test process")]
public class TtyTests
{
    private static List<T> Entries<T>(string dir, ImageKind kind, Google.Protobuf.MessageParser<T> parser) where T : class, Google.Protobuf.IMessage<T>
    {
        using var reader = ImageReader.Open(Path.Combine(dir, ImageKinds.FileName(kind)), kind);
        return reader.ReadEntries(parser).ToList();
    }

    [Fact]
    public void APtyPairComesBackWithItsSettingsQueuedBytesAndControllingTerminal()
    {
        using var imagesDir = new ScratchDirectory();
        string dir = imagesDir.Path;
        using var fixture = FixtureProcess.Start("pty_pair");
        DumpAndKill(fixture, dir);
        Crit.DecodeAll(dir);
        var infos = Entries(dir, ImageKinds.TtyInfo, TtyInfoEntry.Parser);
        var master = infos.Single(i => i.Rdev == (5u << 8 | 2));
        Assert.Equal(TtyType.Pty, master.Type);
        Assert.True(master.PacketMode);
        Assert.True(master.Locked);
        Assert.Equal((uint)fixture.Pid, master.Sid);
        Assert.Equal(33u, master.Winsize.WsRow);
        Assert.Equal(77u, master.Winsize.WsCol);
        Assert.Equal(uint.Parse(fixture.Ready["index"], System.Globalization.CultureInfo.InvariantCulture), master.Pty.Index);
        var data = Entries(dir, ImageKinds.TtyData, TtyDataEntry.Parser);
        Assert.Contains(data, d => d.Data.ToStringUtf8() == "first line\npartial");
        Assert.Contains(data, d => d.Data.ToStringUtf8() == "to master\r\n" && d.TtyId == master.Id);
        var files = Entries(dir, ImageKinds.Files, FileEntry.Parser);
        Assert.Equal(2, files.Count(f => f.Type == FdTypes.Tty));

        Assert.Equal(fixture.Pid, RestoreAndVerify(dir, fixture));
    }

    [Fact]
    public void AChildSessionOnAPtyOfItsParentGetsItsControllingTerminalBack()
    {
        using var imagesDir = new ScratchDirectory();
        string dir = imagesDir.Path;
        using var fixture = FixtureProcess.Start("pty_tree");
        int child = int.Parse(fixture.Ready["child"], System.Globalization.CultureInfo.InvariantCulture);
        DumpAndKill(fixture, dir);
        Crit.DecodeAll(dir);
        var master = Entries(dir, ImageKinds.TtyInfo, TtyInfoEntry.Parser).Single(i => i.Rdev == (5u << 8 | 2));
        Assert.Equal((uint)child, master.Sid);
        Assert.Equal((uint)child, master.Pgrp);
        Assert.Contains(Entries(dir, ImageKinds.TtyData, TtyDataEntry.Parser), d => d.Data.ToStringUtf8() == "child ready\r\n");

        RestoreAndVerify(dir, fixture);
    }

    [Fact]
    public void APtyWhoseIndexIsTakenComesBackUnderAnotherIndex()
    {
        using var imagesDir = new ScratchDirectory();
        string dir = imagesDir.Path;
        var held = new List<Crest.Kernel.Files.FileDescriptor>();
        try
        {
            using var fixture = FixtureProcess.Start("pty_pair");
            int index = int.Parse(fixture.Ready["index"], System.Globalization.CultureInfo.InvariantCulture);
            DumpAndKill(fixture, dir);
            // Take the dumped index (and the free ones below it) for this test.
            while (held.Count < 4096)
            {
                var master = Crest.Kernel.Files.FileDescriptor.Open("/dev/ptmx",
                    Crest.Kernel.Files.OpenFlags.ReadWrite | Crest.Kernel.Files.OpenFlags.NoCtty | Crest.Kernel.Files.OpenFlags.CloseOnExec);
                held.Add(master);
                int got = Crest.Kernel.Files.Terminal.GetPtyNumber(master);
                if (got == index) break;
                Assert.True(got < index, $"pty {index} was taken again before the restore (got {got})");
            }
            RestoreAndVerify(dir, fixture);
            Assert.DoesNotContain($"index {index} now {index}", fixture.Output);
        }
        finally
        {
            foreach (var fd in held) fd.Dispose();
        }
    }

    [Fact]
    public void ALeftRunningPtyGetsItsQueuedBytesBack()
    {
        using var imagesDir = new ScratchDirectory();
        string dir = imagesDir.Path;
        using var fixture = FixtureProcess.Start("pty_pair");
        DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = dir, LeaveRunning = true });
        Assert.Equal("PASS", fixture.Verify(SIGUSR1, TimeSpan.FromSeconds(20)));
    }

    [Fact]
    public void AFailedDumpLeavesThePtyAsItWas()
    {
        using var imagesDir = new ScratchDirectory();
        string dir = imagesDir.Path;
        using var fixture = FixtureProcess.Start("pty_pair");
        DumpEngine.StageHook = stage => { if (stage == "ttys") throw new DumpException("failing on purpose after the ttys"); };
        try
        {
            Assert.Throws<DumpException>(() => DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = dir }));
        }
        finally
        {
            DumpEngine.StageHook = null;
        }
        Assert.Equal("PASS", fixture.Verify(SIGUSR1, TimeSpan.FromSeconds(20)));
    }
}
