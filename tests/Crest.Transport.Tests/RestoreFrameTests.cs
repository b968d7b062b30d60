// The frames of `crest migrate`'s last step: Restore{snapshot} and its answer Restored{pid, time, snapshot}.
using Crest.Transport.Streams;

namespace Crest.Transport.Tests;

public class RestoreFrameTests
{
    [Fact]
    public async Task RestoreAndRestoredRoundTrip()
    {
        var wire = new MemoryStream();
        var w = new FrameWriter(wire);
        await w.WriteRestoreAsync("migrate-42-1");
        await w.WriteRestoreAsync("");
        await w.WriteRestoredAsync("migrate-42-1", 4242, TimeSpan.FromMilliseconds(123.456));
        var r = new FrameReader(new MemoryStream(wire.ToArray()));
        Assert.Equal(new RestoreEvent("migrate-42-1"), await r.ReadAsync());
        Assert.Equal(new RestoreEvent(""), await r.ReadAsync());
        var restored = Assert.IsType<RestoredEvent>(await r.ReadAsync());
        Assert.Equal(("migrate-42-1", 4242), (restored.Snapshot, restored.Pid));
        Assert.Equal(123456, (long)restored.Took.TotalMicroseconds);
        Assert.Null(await r.ReadAsync());
    }

    [Fact]
    public async Task ARestoredFrameWithoutAPidIsRefused()
    {
        var wire = new MemoryStream();
        await new FrameWriter(wire).WriteRestoredAsync("s", 1, TimeSpan.Zero);
        var bytes = wire.ToArray();
        bytes[FrameFormat.HeaderSize] = 0; // pid 0
        var e = await Assert.ThrowsAsync<StreamProtocolException>(() => new FrameReader(new MemoryStream(bytes)).ReadAsync());
        Assert.Contains("restored frame with pid 0", e.Message);
    }
}
