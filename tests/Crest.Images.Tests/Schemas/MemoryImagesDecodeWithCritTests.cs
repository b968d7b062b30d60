// Memory images of a small x86_64 process (mm, vmas, pagemap), decoded by crit 3.17.
using System.Text.Json;
using Crest.Images.Protos;

namespace Crest.Images.Tests.Schemas;

public sealed class MemoryImagesDecodeWithCritTests : IClassFixture<ScratchDirectory>
{
    // mmap(2) and CRIU's VMA status bits, as crit names them.
    private const uint ProtRead = 0x1, ProtWrite = 0x2, ProtExec = 0x4;
    private const uint MapPrivate = 0x2, MapAnonymous = 0x20, MapGrowsdown = 0x100;
    private const uint VmaAreaRegular = 1 << 0, VmaAreaStack = 1 << 1, VmaAreaVdso = 1 << 3, VmaAreaHeap = 1 << 5;
    private const uint VmaFilePrivate = 1 << 6, VmaAnonPrivate = 1 << 9;
    private const uint PePresent = 1 << 2;

    private readonly ScratchDirectory _scratch;

    public MemoryImagesDecodeWithCritTests(ScratchDirectory scratch) => _scratch = scratch;

    private static VmaEntry[] Vmas() =>
    [
        new() { Start = 0x400000, End = 0x401000, Pgoff = 0, Shmid = 12, Prot = ProtRead | ProtExec, Flags = MapPrivate, Status = VmaAreaRegular | VmaFilePrivate, Fd = -1, Madv = 0, Fdflags = 0 },
        new() { Start = 0x1e6f000, End = 0x1e90000, Pgoff = 0, Shmid = 0, Prot = ProtRead | ProtWrite, Flags = MapPrivate | MapAnonymous, Status = VmaAreaRegular | VmaAnonPrivate | VmaAreaHeap, Fd = -1 },
        new() { Start = 0x7ffd5c1c4000, End = 0x7ffd5c1e5000, Pgoff = 0, Shmid = 0, Prot = ProtRead | ProtWrite, Flags = MapPrivate | MapAnonymous | MapGrowsdown, Status = VmaAreaRegular | VmaAnonPrivate | VmaAreaStack, Fd = -1 },
        new() { Start = 0x7ffd5c1f9000, End = 0x7ffd5c1fb000, Pgoff = 0, Shmid = 0, Prot = ProtRead | ProtExec, Flags = MapPrivate | MapAnonymous, Status = VmaAreaRegular | VmaAreaVdso | VmaAnonPrivate, Fd = -1 },
    ];

    [Fact]
    public void MmWithVmasAndAuxvDecodes()
    {
        var mm = new MmEntry
        {
            MmStartCode = 0x400000, MmEndCode = 0x400f2d, MmStartData = 0x403e10, MmEndData = 0x404030,
            MmStartStack = 0x7ffd5c1e3b70, MmStartBrk = 0x1e6f000, MmBrk = 0x1e90000,
            MmArgStart = 0x7ffd5c1e4f1a, MmArgEnd = 0x7ffd5c1e4f26, MmEnvStart = 0x7ffd5c1e4f26, MmEnvEnd = 0x7ffd5c1e4fe8,
            ExeFileId = 9, Dumpable = 1, ThpDisabled = false,
        };
        // AT_PAGESZ 4096, AT_ENTRY 0x401040, AT_NULL: auxv is stored as (type, value) words.
        mm.MmSavedAuxv.Add([6UL, 4096UL, 9UL, 0x401040UL, 0UL, 0UL]);
        mm.Vmas.Add(Vmas());

        JsonElement entry = CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Mm, mm)[0];
        Assert.Equal("0x400000", entry.GetProperty("mm_start_code").GetString());
        Assert.Equal("0x1e90000", entry.GetProperty("mm_brk").GetString());
        Assert.Equal(6, entry.GetProperty("mm_saved_auxv").GetArrayLength());
        Assert.Equal(0x401040, entry.GetProperty("mm_saved_auxv")[3].GetInt32());

        JsonElement vmas = entry.GetProperty("vmas");
        Assert.Equal(4, vmas.GetArrayLength());
        Assert.Equal("0x400000", vmas[0].GetProperty("start").GetString());
        Assert.Equal("PROT_READ | PROT_EXEC", vmas[0].GetProperty("prot").GetString());
        Assert.Equal("MAP_PRIVATE", vmas[0].GetProperty("flags").GetString());
        Assert.Equal("VMA_AREA_REGULAR | VMA_FILE_PRIVATE", vmas[0].GetProperty("status").GetString());
        Assert.Equal(-1, vmas[0].GetProperty("fd").GetInt32());
        Assert.Equal("MAP_PRIVATE | MAP_ANON | MAP_GROWSDOWN", vmas[2].GetProperty("flags").GetString());
        Assert.Equal("VMA_AREA_REGULAR | VMA_AREA_STACK | VMA_ANON_PRIVATE", vmas[2].GetProperty("status").GetString());
        Assert.Equal("VMA_AREA_REGULAR | VMA_AREA_VDSO | VMA_ANON_PRIVATE", vmas[3].GetProperty("status").GetString());
    }

    [Fact]
    public void VmasImageDecodes()
    {
        JsonElement vmas = CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Vmas, Vmas());
        Assert.Equal(4, vmas.GetArrayLength());
        Assert.Equal("0x7ffd5c1e5000", vmas[2].GetProperty("end").GetString());
    }

    [Fact]
    public void PagemapHeadThenEntriesDecode()
    {
        var head = new PagemapHead { PagesId = 1 };
        var code = new PagemapEntry { Vaddr = 0x400000, NrPages = 1, Flags = PePresent };
        var heap = new PagemapEntry { Vaddr = 0x1e6f000, NrPages = 33, Flags = PePresent };
        var stack = new PagemapEntry { Vaddr = 0x7ffd5c1e2000, NrPages = 3, InParent = false, Flags = PePresent };

        JsonElement entries = CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Pagemap, head, code, heap, stack);
        Assert.Equal(4, entries.GetArrayLength());
        Assert.Equal(1, entries[0].GetProperty("pages_id").GetInt32());
        Assert.False(entries[0].TryGetProperty("vaddr", out _));
        Assert.Equal("0x1e6f000", entries[2].GetProperty("vaddr").GetString());
        Assert.Equal(33, entries[2].GetProperty("nr_pages").GetInt32());
        Assert.Equal("PE_PRESENT", entries[3].GetProperty("flags").GetString());
    }
}
