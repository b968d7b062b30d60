using System.Text;
using Crest.Kernel.Proc;

namespace Crest.Kernel.Tests.Proc;

public class ProcMapsTests
{
    [Fact]
    public void CapturedMapsHaveSpacesEscapedNewlinesDeletedFilesAndALowAddress()
    {
        var maps = ProcMaps.Parse(ProcSamples.Read("maps.awkward.txt"));
        Assert.Equal(29, maps.Count);

        var low = maps[0];
        Assert.Equal(0x10000000ul, low.Start);
        Assert.Equal(0x10001000ul, low.End);
        Assert.Equal(4096ul, low.Size);
        Assert.Equal(VmaPermissions.Read | VmaPermissions.Write, low.Permissions);
        Assert.Equal(VmaKind.Anonymous, low.Kind);
        Assert.Null(low.Path);

        var exe = maps[2];
        Assert.Equal(VmaKind.File, exe.Kind);
        Assert.Equal("/tmp/pp/proc_awkward", exe.Path);
        Assert.Equal(VmaPermissions.Read | VmaPermissions.Execute, exe.Permissions);
        Assert.Equal(0x1000ul, exe.Offset);
        Assert.Equal(0xfeu, exe.DevMajor);
        Assert.Equal(0u, exe.DevMinor);
        Assert.Equal(11660108ul, exe.Inode);

        Assert.Equal(VmaKind.Heap, maps[6].Kind);
        Assert.Equal("[heap]", maps[6].Name);

        var gone = maps.Single(v => v.Path == "/tmp/pp/d/gone.bin");
        Assert.True(gone.IsDeleted);
        Assert.Equal(11658918ul, gone.Inode);
        var newline = maps.Single(v => v.Inode == 11658882);
        Assert.Equal("/tmp/pp/d/new\nline.bin", newline.Path);
        Assert.Equal("/tmp/pp/d/new\nline.bin"u8.ToArray(), newline.PathBytes);
        Assert.False(newline.IsDeleted);
        Assert.Equal("/tmp/pp/d/with space.bin", maps.Single(v => v.Inode == 11658868).Path);
        Assert.Equal("/tmp/pp/d/ leading.bin", maps.Single(v => v.Inode == 11658899).Path);

        Assert.Equal(VmaKind.Vvar, maps.Single(v => v.Name == "[vvar]").Kind);
        Assert.Equal(VmaKind.VvarVclock, maps.Single(v => v.Name == "[vvar_vclock]").Kind);
        Assert.Equal(VmaKind.Vdso, maps.Single(v => v.Name == "[vdso]").Kind);
        Assert.Equal(VmaKind.Stack, maps.Single(v => v.Name == "[stack]").Kind);
        Assert.Equal(VmaKind.Vsyscall, maps[^1].Kind);
        Assert.Equal(0xffffffffff600000ul, maps[^1].Start);
    }

    [Fact]
    public void PseudoNamesNamedAnonymousAndOddPathsAreClassified()
    {
        var maps = ProcMaps.Parse(ProcSamples.Read("maps.pseudo.txt"));
        Assert.Equal(19, maps.Count);

        Assert.Equal(0x08048000ul, maps[0].Start);
        Assert.Equal("/usr/lib/i386/a.out", maps[0].Path);
        Assert.Equal(123456789012345678ul, maps[1].Inode);
        Assert.Equal("/opt/very long/inode.bin", maps[1].Path);

        Assert.Equal(VmaKind.AnonNamed, maps[2].Kind);
        Assert.Equal("jit code", maps[2].Name);
        Assert.Null(maps[2].Path);
        Assert.Equal(VmaKind.AnonShmemNamed, maps[3].Kind);
        Assert.Equal("ring buffer", maps[3].Name);
        Assert.Equal(VmaPermissions.Read | VmaPermissions.Write | VmaPermissions.Shared, maps[3].Permissions);

        Assert.Equal(("/memfd:wayland", true), (maps[4].Path, maps[4].IsDeleted));
        Assert.Equal(("/SYSV0000162e", true), (maps[5].Path, maps[5].IsDeleted));
        Assert.Equal(("/dev/zero", true), (maps[6].Path, maps[6].IsDeleted));
        // Only the kernel's one " (deleted)" is removed; the file's own name keeps its copy.
        Assert.Equal(("/srv/a\nb c (deleted)", true), (maps[7].Path, maps[7].IsDeleted));
        Assert.Equal((VmaKind.File, "anon_inode:[io_uring]"), (maps[8].Kind, maps[8].Path));
        Assert.Equal((VmaKind.Anonymous, VmaPermissions.None), (maps[9].Kind, maps[9].Permissions));
        // The name starts after the kernel's padding, so its own leading spaces survive.
        Assert.Equal("  two leading spaces", maps[10].Path);
        // A prefix longer than the padding column: one space, then the name.
        Assert.Equal(0x7ffffffffffff000ul, maps[11].Offset);
        Assert.Equal(ulong.MaxValue, maps[11].Inode);
        Assert.Equal("/big offset", maps[11].Path);

        Assert.Equal(VmaKind.Stack, maps[12].Kind);
        Assert.Equal((VmaKind.OtherPseudo, "[stack:4242]"), (maps[13].Kind, maps[13].Name));
        Assert.Equal(VmaKind.Vvar, maps[14].Kind);
        Assert.Equal(VmaKind.VvarVclock, maps[15].Kind);
        Assert.Equal(VmaKind.Vdso, maps[16].Kind);
        Assert.Equal(VmaKind.Uprobes, maps[17].Kind);
        // The last line has no newline.
        Assert.Equal((VmaKind.Vsyscall, VmaPermissions.Execute), (maps[18].Kind, maps[18].Permissions));
    }

    [Fact]
    public void EmptyMapsIsEmpty()
    {
        Assert.Empty(ProcMaps.Parse([]));
        Assert.Empty(ProcSmaps.Parse([]));
    }

    [Theory]
    [InlineData("00400000 r-xp 00000000 08:01 1 /x", "address range is not start-end")]
    [InlineData("00500000-00400000 r-xp 00000000 08:01 1 /x", "end address below start address")]
    [InlineData("00400000-00500000 rwxq 00000000 08:01 1 /x", "bad permissions")]
    [InlineData("00400000-00500000 r-xp 00000000 0801 1 /x", "device is not major:minor")]
    [InlineData("00400000-00500000 r-xp 00000000 08:01", "missing inode")]
    [InlineData("00400000-1ffffffffffffffff r-xp 00000000 08:01 1", "bad end address")]
    public void BrokenMapsLineNamesTheProblem(string text, string problem)
    {
        var e = Assert.Throws<ProcParseException>(() => ProcMaps.Parse(Encoding.UTF8.GetBytes("00001000-00002000 r--p 00000000 00:00 0 \n" + text)));
        Assert.Equal(ProcFileKind.Maps, e.Kind);
        Assert.Equal(2, e.Line);
        Assert.Equal(problem, e.Problem);
        Assert.Contains("/proc/PID/maps line 2: ", e.Message);
    }
}

public class ProcSmapsTests
{
    [Fact]
    public void CapturedSmapsMatchesMapsAndHasCountersAndFlags()
    {
        var smaps = ProcSmaps.Parse(ProcSamples.Read("smaps.awkward.txt"));
        var maps = ProcMaps.Parse(ProcSamples.Read("maps.awkward.txt"));
        Assert.Equal(maps.Select(v => (v.Start, v.End, v.Kind, v.Path, v.IsDeleted)),
            smaps.Select(s => (s.Vma.Start, s.Vma.End, s.Vma.Kind, s.Vma.Path, s.Vma.IsDeleted)));

        var low = smaps[0];
        Assert.Equal(4, low.SizeKb);
        Assert.Equal(4, low.KernelPageSizeKb);
        Assert.Equal(0, low.RssKb);
        Assert.True(low.HasVmFlags);
        Assert.Equal(VmFlags.Read | VmFlags.Write | VmFlags.MayRead | VmFlags.MayWrite | VmFlags.MayExec | VmFlags.Account, low.VmFlags);
        Assert.Empty(low.UnknownVmFlags);
        Assert.False(low.ThpEligible);
        Assert.True(low.Has(SmapsField.Pss_Dirty));
        Assert.Null(low.ProtectionKey);

        Assert.All(smaps, s => Assert.Equal((long)(s.Vma.Size / 1024), s.SizeKb));
        Assert.All(smaps, s => Assert.True(s.HasVmFlags));
        Assert.All(smaps, s => Assert.Empty(s.Other));
        var vvar = smaps.Single(s => s.Vma.Kind == VmaKind.Vvar);
        Assert.Equal(VmFlags.Read | VmFlags.MayRead | VmFlags.PfnMap | VmFlags.Io | VmFlags.DontExpand | VmFlags.DontDump, vvar.VmFlags);
    }

    [Fact]
    public void UnknownKeysAndCodesAreKeptAndProtectionKeyRead()
    {
        var smaps = ProcSmaps.Parse(ProcSamples.Read("smaps.pseudo.txt"));
        Assert.Equal(2, smaps.Count);
        var jit = smaps[0];
        Assert.Equal(VmaKind.AnonNamed, jit.Vma.Kind);
        Assert.Equal(2048, jit.SizeKb);
        Assert.Equal(1024, jit.PssKb);
        Assert.Equal(2048, jit.SharedDirtyKb);
        Assert.Equal(2048, jit.AnonHugePagesKb);
        Assert.Equal(2048, jit[SmapsField.Anonymous]);
        Assert.True(jit.ThpEligible);
        Assert.Equal(3, jit.ProtectionKey);
        Assert.Equal(new KeyValuePair<string, string>("Future_Counter", "12 kB"), Assert.Single(jit.Other));
        Assert.Equal(VmFlags.Read | VmFlags.Write | VmFlags.MayRead | VmFlags.MayWrite | VmFlags.MayExec
            | VmFlags.Account | VmFlags.SoftDirty | VmFlags.HugePage | VmFlags.Sealed, jit.VmFlags);
        Assert.Equal(["zz"], jit.UnknownVmFlags);

        var old = smaps[1];
        Assert.Equal(4, old.SizeKb);
        Assert.False(old.Has(SmapsField.Pss));
        Assert.True(old.VmFlags.HasFlag(VmFlags.DenyWrite));
    }

    [Fact]
    public void EveryDocumentedVmFlagCodeIsKnown()
    {
        string codes = "rd wr ex sh mr mw me ms gd pf dw lo io sr rr dc de ac nr ht sf nl ar wf dd sd mm hg nh mg um uw ss sl bt mt lf ui dp gu mp";
        var text = Encoding.ASCII.GetBytes("00001000-00002000 r--p 00000000 00:00 0 \nVmFlags: " + codes + "\n");
        var vma = Assert.Single(ProcSmaps.Parse(text));
        Assert.Empty(vma.UnknownVmFlags);
        Assert.Equal(codes.Split(' ').Length, System.Numerics.BitOperations.PopCount((ulong)vma.VmFlags));
    }

    [Fact]
    public void ThousandsOfVmasParseInOnePass()
    {
        byte[] block = ProcSamples.Read("smaps.awkward.txt");
        const int Copies = 1000;
        var big = new byte[block.Length * Copies];
        for (int i = 0; i < Copies; i++)
            block.CopyTo(big, i * block.Length);
        var smaps = ProcSmaps.Parse(big);
        Assert.Equal(29 * Copies, smaps.Count);
        Assert.Equal(smaps[0].Vma.Start, smaps[29].Vma.Start);
    }

    [Theory]
    [InlineData("Size: 4 kB\n", 1, "counter before the first VMA header")]
    [InlineData("00001000-00002000 r--p 00000000 00:00 0 \nRss: 4 MB\n", 2, "unit is not kB")]
    [InlineData("00001000-00002000 r--p 00000000 00:00 0 \nRss: four kB\n", 2, "bad value")]
    [InlineData("00001000-00002000 r--p 00000000 00:00 0 \nRss:\n", 2, "missing value")]
    public void BrokenSmapsNamesTheProblem(string text, int line, string problem)
    {
        var e = Assert.Throws<ProcParseException>(() => ProcSmaps.Parse(Encoding.ASCII.GetBytes(text)));
        Assert.Equal((ProcFileKind.Smaps, line, problem), (e.Kind, e.Line, e.Problem));
    }
}
