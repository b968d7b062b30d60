// Guard regions (madvise MADV_GUARD_INSTALL, Linux 6.13) of a restored task. The dump records them per VMA
// in VmaEntry.crest_guard_ranges (a Crest extension of the image, pairs of start, end); here each range is
// installed again by an injected madvise once the VMA is mapped, its pages are written and its protection
// is final (installing zaps the range, so it must not be written afterwards; guard markers are page-table
// entries that mprotect keeps, so the order relative to mprotect does not matter).
// Classic guards need nothing here: a PROT_NONE mapping is an ordinary VMA of the image, and the main
// stack's guard gap is the kernel's (stack_guard_gap) below the restored MAP_GROWSDOWN stack VMA.
using Crest.Diagnostics;
using Crest.Images.Protos;
using Crest.Kernel.Arch.X64;

namespace Crest.Engine.Restore;

internal static class GuardRegions
{
    private const int MADV_GUARD_INSTALL = 102;
    private const ulong PageSize = 4096;

    /// <summary>Installs every recorded guard range; returns how many ranges were installed.</summary>
    public static int Install(StubInjector task, IEnumerable<VmaEntry> vmas)
    {
        int installed = 0;
        foreach (var v in vmas)
        {
            var ranges = v.CrestGuardRanges;
            if (ranges.Count == 0) continue;
            if (ranges.Count % 2 != 0)
                throw new RestoreException($"VMA 0x{v.Start:x}-0x{v.End:x}: odd number ({ranges.Count}) of guard range bounds in the image");
            for (int i = 0; i < ranges.Count; i += 2)
            {
                ulong start = ranges[i], end = ranges[i + 1];
                if (start % PageSize != 0 || end % PageSize != 0 || end <= start || start < v.Start || end > v.End)
                    throw new RestoreException($"VMA 0x{v.Start:x}-0x{v.End:x}: bad guard range 0x{start:x}-0x{end:x} in the image");
                task.Check("madvise(MADV_GUARD_INSTALL)", $"guard range 0x{start:x}-0x{end:x}", SyscallNumbers.madvise,
                    (long)start, (long)(end - start), MADV_GUARD_INSTALL);
                installed++;
            }
        }
        if (installed > 0) Log.Info($"{task.Pid}: restore: {installed} guard ranges installed");
        return installed;
    }
}
