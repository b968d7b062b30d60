using Crest.Kernel.Files;
using Crest.Kernel.Memory;

namespace Crest.Kernel.Tests.Memory;

public class MemoryMappingTests
{
    private static readonly ulong Page = (ulong)MemoryMapping.PageSize;

    [Fact]
    public void MemfdMappedSharedShowsWritesThroughTheFile()
    {
        using FileDescriptor memfd = MemFd.Create("crest-test", MemFdFlags.AllowSealing);
        Assert.Matches(@"^/memfd:crest-test \(deleted\)$", new FileInfo($"/proc/self/fd/{memfd.Fd}").LinkTarget);
        memfd.SetLength((long)(2 * Page));
        using var mapping = MemoryMapping.MapFile(memfd, 0, 2 * Page, MemoryProtection.Read | MemoryProtection.Write, MapFlags.Shared);
        "written through the mapping"u8.CopyTo(mapping.Span);
        var back = new byte[27];
        Assert.Equal(27, memfd.PRead(back, 0));
        Assert.Equal("written through the mapping"u8.ToArray(), back);

        memfd.PWrite("and back"u8, (long)Page);
        Assert.Equal("and back"u8.ToArray(), mapping.Slice(Page, 8).ToArray());

        // Grow the file and the mapping with it: old contents stay, the new page is the file's.
        memfd.SetLength((long)(4 * Page));
        memfd.PWrite("page three"u8, (long)(3 * Page));
        mapping.Resize(4 * Page);
        Assert.Equal("written through the mapping"u8.ToArray(), mapping.Slice(0, 27).ToArray());
        Assert.Equal("page three"u8.ToArray(), mapping.Slice(3 * Page, 10).ToArray());
        Assert.Contains(File.ReadAllLines("/proc/self/maps"),
            l => l.StartsWith($"{mapping.Address:x}-{mapping.Address + 4 * Page:x} rw-s 00000000") && l.Contains("/memfd:crest-test"));
    }

    [Fact]
    public void ResizeKeepsTheContentsAndMoveToPlacesTheMappingExactly()
    {
        using var mapping = MemoryMapping.Anonymous(Page);
        mapping.Span.Fill(0x5a);
        mapping.Resize(4 * Page);
        Assert.Equal(4 * Page, mapping.Length);
        Assert.True(mapping.Slice(0, (int)Page).IndexOfAnyExcept((byte)0x5a) < 0);
        Assert.True(mapping.Slice(Page, (int)(3 * Page)).IndexOfAnyExcept((byte)0) < 0);

        // Reserve a destination, then move the mapping on top of it.
        ulong target;
        using (var reservation = MemoryMapping.Anonymous(4 * Page, MemoryProtection.None))
            target = reservation.Address;
        mapping.MoveTo(target, 4 * Page);
        Assert.Equal(target, mapping.Address);
        Assert.Equal(0x5a, mapping.Span[0]);
        Assert.Contains(File.ReadAllLines("/proc/self/maps"), l => Covers(l, target));
    }

    [Fact]
    public void ProtectChangesThePermissionsTheKernelShows()
    {
        // Backed by a uniquely named memfd so the kernel cannot merge it with a neighbouring anonymous VMA.
        string name = $"crest-protect-{Guid.NewGuid():N}";
        using FileDescriptor memfd = MemFd.Create(name);
        memfd.SetLength((long)(3 * Page));
        using var mapping = MemoryMapping.MapFile(memfd, 0, 3 * Page, MemoryProtection.Read | MemoryProtection.Write, MapFlags.Private);
        mapping.Protect(Page, Page, MemoryProtection.Read);
        string[] maps = File.ReadAllLines("/proc/self/maps").Where(l => l.Contains(name)).ToArray();
        Assert.Equal(3, maps.Length);
        Assert.StartsWith($"{mapping.Address:x}-{mapping.Address + Page:x} rw-p", maps[0]);
        Assert.StartsWith($"{mapping.Address + Page:x}-{mapping.Address + 2 * Page:x} r--p", maps[1]);
        Assert.StartsWith($"{mapping.Address + 2 * Page:x}-{mapping.Address + 3 * Page:x} rw-p", maps[2]);

        var e = Assert.Throws<KernelException>(() => mapping.Protect(1, Page, MemoryProtection.Read));
        Assert.Equal(Errno.EINVAL, e.Errno.Value);
        Assert.StartsWith("mprotect(): EINVAL (Invalid argument): 0x", e.Message);
    }

    [Fact]
    public void DontNeedDropsPrivateAnonymousPages()
    {
        using var mapping = MemoryMapping.Anonymous(2 * Page);
        mapping.Span.Fill(1);
        mapping.Advise(Page, Page, MemoryAdvice.DontNeed);
        Assert.Equal(1, mapping.Span[0]);
        Assert.True(mapping.Slice(Page, (int)Page).IndexOfAnyExcept((byte)0) < 0);
    }

    [Fact]
    public void DisposeUnmaps()
    {
        // A memfd with a unique name makes the mapping recognizable in /proc/self/maps.
        string name = $"crest-unmap-{Guid.NewGuid():N}";
        using FileDescriptor memfd = MemFd.Create(name);
        memfd.SetLength((long)Page);
        var mapping = MemoryMapping.MapFile(memfd, 0, Page, MemoryProtection.Read, MapFlags.Shared);
        ulong address = mapping.Address;
        Assert.Contains(File.ReadAllLines("/proc/self/maps"), l => l.StartsWith($"{address:x}-") && l.Contains(name));
        mapping.Dispose();
        Assert.DoesNotContain(File.ReadAllLines("/proc/self/maps"), l => l.Contains(name));
        Assert.Throws<ObjectDisposedException>(() => mapping.Address);
    }

    private static bool Covers(string mapsLine, ulong address)
    {
        string range = mapsLine[..mapsLine.IndexOf(' ')];
        int dash = range.IndexOf('-');
        ulong start = Convert.ToUInt64(range[..dash], 16), end = Convert.ToUInt64(range[(dash + 1)..], 16);
        return start <= address && address < end;
    }
}
