using System.Globalization;
using Crest.Kernel.Memory;
using Crest.Kernel.Tests.Interop;

namespace Crest.Kernel.Tests.Memory;

public class RemoteMemoryTests
{
    private static readonly ulong Page = (ulong)MemoryMapping.PageSize;
    private static readonly int Self = Environment.ProcessId;

    [Fact]
    public void ReadsTheElfHeaderOfAChildsExecutable()
    {
        using var child = SleepChild.Start();
        child.WaitForSleep();
        string first = File.ReadLines($"/proc/{child.Pid}/maps").First(l => l.EndsWith("/sleep"));
        ulong start = ulong.Parse(first[..first.IndexOf('-')], NumberStyles.HexNumber);
        var header = new byte[4];
        RemoteMemory.Read(child.Pid, start, header);
        Assert.Equal(new byte[] { 0x7f, (byte)'E', (byte)'L', (byte)'F' }, header);
    }

    [Fact]
    public void WritesIntoAChildAndReadsItBack()
    {
        using var child = SleepChild.Start();
        child.WaitForSleep();
        string stack = File.ReadLines($"/proc/{child.Pid}/maps").First(l => l.EndsWith("[stack]"));
        ulong low = ulong.Parse(stack[..stack.IndexOf('-')], NumberStyles.HexNumber);
        // The lowest stack page is mapped and far below anything sleep uses.
        RemoteMemory.Write(child.Pid, low, "crest was here"u8);
        var back = new byte[14];
        RemoteMemory.Read(child.Pid, low, back);
        Assert.Equal("crest was here"u8.ToArray(), back);
    }

    [Fact]
    public void VectoredReadGathersManyRangesAcrossSeveralCalls()
    {
        // 3000 ranges: more than IOV_MAX, so the transfer takes three calls.
        using var source = MemoryMapping.Anonymous(64 * Page);
        Span<byte> s = source.Span;
        for (int i = 0; i < s.Length; i++) s[i] = (byte)(i * 7 + i / 251);
        var ranges = new RemoteRange[3000];
        var expected = new List<byte>();
        ulong at = 0;
        for (int i = 0; i < ranges.Length; i++)
        {
            ulong length = (ulong)(1 + i % 61);
            ranges[i] = new RemoteRange(source.Address + at, length);
            expected.AddRange(s.Slice((int)at, (int)length).ToArray());
            at += length + (ulong)(i % 13);
        }
        var buffer = new byte[expected.Count];
        RemoteMemory.ReadVectored(Self, ranges, buffer);
        Assert.Equal(expected.ToArray(), buffer);

        // And scatter them back, reversed, into a second mapping.
        using var target = MemoryMapping.Anonymous(64 * Page);
        var back = ranges.Select(r => new RemoteRange(r.Address - source.Address + target.Address, r.Length)).ToArray();
        RemoteMemory.WriteVectored(Self, back, buffer);
        foreach (RemoteRange r in ranges)
            Assert.True(target.Slice(r.Address - source.Address, (int)r.Length).SequenceEqual(source.Slice(r.Address - source.Address, (int)r.Length)));
    }

    [Fact]
    public void AnUnmappedHoleInAChildEndsTheTransferThere()
    {
        using var child = SleepChild.Start();
        child.WaitForSleep();
        // A readable VMA followed by unmapped space; sleep maps nothing while it sleeps, so this stays put.
        var vmas = File.ReadAllLines($"/proc/{child.Pid}/maps").Select(l =>
        {
            string[] f = l.Split(' ', 3);
            string[] r = f[0].Split('-');
            return (Start: Convert.ToUInt64(r[0], 16), End: Convert.ToUInt64(r[1], 16), Perms: f[1], Line: l);
        }).ToArray();
        var before = vmas.Zip(vmas.Skip(1)).First(p => p.First.Perms[0] == 'r' && p.First.End < p.Second.Start
            && !p.First.Line.EndsWith("[vvar]") && !p.First.Line.EndsWith("[vvar_vclock]")).First;
        ulong hole = before.End;

        RemoteRange[] ranges = [new(before.Start, 64), new(hole - 100, 200)];
        var buffer = new byte[264];
        RemoteTransfer t = RemoteMemory.TryReadVectored(child.Pid, ranges, buffer);
        Assert.False(t.Complete);
        Assert.Equal(164ul, t.Transferred);
        Assert.Equal(hole, t.FaultAddress);
        Assert.Equal(Errno.EFAULT, t.Error.Value);
        var e = Assert.Throws<RemoteMemoryException>(() => RemoteMemory.ReadVectored(child.Pid, ranges, buffer));
        Assert.Equal($"process_vm_readv({child.Pid}): EFAULT (Bad address): at address 0x{hole:x} (164 of 264 bytes transferred)", e.Message);
    }

    [Fact]
    public void AnInaccessiblePageEndsTheTransferAtItsFirstByteAndTheErrorNamesIt()
    {
        // In our own process an unmapped hole could be refilled by any thread's mmap; a PROT_NONE
        // page stays ours and faults the same way (no FOLL_FORCE in process_vm_*).
        using var mapping = MemoryMapping.Anonymous(3 * Page);
        mapping.Span.Fill(0x42);
        ulong hole = mapping.Address + Page;
        mapping.Protect(Page, Page, MemoryProtection.None);

        RemoteRange[] ranges =
        [
            new(mapping.Address, Page),             // readable
            new(mapping.Address + 2 * Page, Page),  // readable, after the hole
            new(hole - 100, 200),                   // 100 readable bytes, then the hole
            new(mapping.Address, 10),               // never reached
        ];
        var buffer = new byte[2 * Page + 210];
        RemoteTransfer t = RemoteMemory.TryReadVectored(Self, ranges, buffer);
        Assert.False(t.Complete);
        Assert.Equal(2 * Page + 100, t.Transferred);
        Assert.Equal(hole, t.FaultAddress);
        Assert.Equal(Errno.EFAULT, t.Error.Value);
        Assert.True(buffer.AsSpan(0, (int)t.Transferred).IndexOfAnyExcept((byte)0x42) < 0);

        var e = Assert.Throws<RemoteMemoryException>(() => RemoteMemory.ReadVectored(Self, ranges, buffer));
        Assert.Equal(hole, e.Address);
        Assert.Equal(2 * Page + 100, e.Transferred);
        Assert.Equal(Self, e.Task);
        Assert.Equal($"process_vm_readv({Self}): EFAULT (Bad address): at address 0x{hole:x} ({2 * Page + 100} of {2 * Page + 210} bytes transferred)", e.Message);

        var w = Assert.Throws<RemoteMemoryException>(() => RemoteMemory.Write(Self, hole - 8, new byte[16]));
        Assert.Equal(hole, w.Address);
        Assert.StartsWith($"process_vm_writev({Self}): EFAULT", w.Message);
    }

    [Fact]
    public void RangesLongerThanOneCallMayMoveAreSplitAcrossCalls()
    {
        // The real cap is MAX_RW_COUNT (almost 2 GiB); a cap of 1000 bytes exercises the same path.
        using var source = MemoryMapping.Anonymous(4 * Page);
        Span<byte> s = source.Span;
        for (int i = 0; i < s.Length; i++) s[i] = (byte)(i % 253);
        RemoteRange[] ranges = [new(source.Address + 10, 2500), new(source.Address, 7), new(source.Address + Page, 3 * Page)];
        var buffer = new byte[2507 + 3 * Page];
        RemoteTransfer t = RemoteMemory.TryReadVectored(Self, ranges, buffer, maxBytesPerCall: 1000);
        Assert.True(t.Complete);
        Assert.Equal((ulong)buffer.Length, t.Transferred);
        Assert.True(buffer.AsSpan(0, 2500).SequenceEqual(s.Slice(10, 2500)));
        Assert.True(buffer.AsSpan(2500, 7).SequenceEqual(s[..7]));
        Assert.True(buffer.AsSpan(2507).SequenceEqual(s.Slice((int)Page, (int)(3 * Page))));
    }

    [Fact]
    public void AMissingProcessIsEsrch()
    {
        var e = Assert.Throws<RemoteMemoryException>(() => RemoteMemory.Read(999999999, 0x400000, new byte[8]));
        Assert.Equal(Errno.ESRCH, e.Errno.Value);
        Assert.StartsWith("process_vm_readv(999999999): ESRCH (No such process): at address 0x400000", e.Message);
    }

    [Fact]
    public void RangesMustCoverTheBufferExactly()
    {
        Assert.Throws<ArgumentException>(() => RemoteMemory.ReadVectored(Self, [new RemoteRange(0x1000, 8)], new byte[9]));
    }
}
