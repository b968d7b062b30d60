// Namespace and mount images, decoded by crit 3.17.
using System.Text.Json;
using Crest.Images.Protos;

namespace Crest.Images.Tests.Schemas;

public sealed class NamespaceImagesDecodeWithCritTests : IClassFixture<ScratchDirectory>
{
    private readonly ScratchDirectory _scratch;

    public NamespaceImagesDecodeWithCritTests(ScratchDirectory scratch) => _scratch = scratch;

    [Fact]
    public void UtsAndTimeNamespacesDecode()
    {
        var uts = new UtsnsEntry { Nodename = "crest-test", Domainname = "(none)" };
        Assert.Equal("crest-test", CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Utsns, uts)[0].GetProperty("nodename").GetString());

        var time = new TimensEntry
        {
            Monotonic = new Timespec { TvSec = 86400, TvNsec = 5 },
            Boottime = new Timespec { TvSec = 172800, TvNsec = 0 },
        };
        JsonElement entry = CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Timens, time)[0];
        Assert.Equal(86400, entry.GetProperty("monotonic").GetProperty("tv_sec").GetInt32());
    }

    [Fact]
    public void MountpointsDecode()
    {
        var root = new MntEntry
        {
            Fstype = (uint)Fstype.Auto, MntId = 25, RootDev = 8u << 20 | 1, ParentMntId = 1, Flags = 0x1000, Root = "/",
            Mountpoint = "/", Source = "/dev/sda1", Options = "errors=remount-ro", SharedId = 1, Fsname = "ext4",
        };
        var proc = new MntEntry
        {
            Fstype = (uint)Fstype.Proc, MntId = 26, RootDev = 22, ParentMntId = 25, Flags = 0xe, Root = "/",
            Mountpoint = "/proc", Source = "proc", Options = "",
        };
        JsonElement entries = CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Mnts, root, proc);
        Assert.Equal("8:1", entries[0].GetProperty("root_dev").GetString());
        Assert.Equal("0x1000", entries[0].GetProperty("flags").GetString());
        Assert.Equal("/proc", entries[1].GetProperty("mountpoint").GetString());
    }
}
