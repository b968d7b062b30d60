// The two-letter codes of the smaps "VmFlags:" line (fs/proc/task_mmu.c show_smap_vma_flags,
// since Linux 3.8). The bit values here are Crest's own, not the kernel's VM_* bits, which move
// between versions and architectures; codes this table does not know are kept as text.
namespace Crest.Kernel.Proc;

/// <summary>The smaps VmFlags codes; each member's doc names its code.</summary>
[Flags]
public enum VmFlags : ulong
{
    None = 0,
    /// <summary>rd: readable.</summary>
    Read = 1UL << 0,
    /// <summary>wr: writable.</summary>
    Write = 1UL << 1,
    /// <summary>ex: executable.</summary>
    Exec = 1UL << 2,
    /// <summary>sh: shared.</summary>
    Shared = 1UL << 3,
    /// <summary>mr: may read.</summary>
    MayRead = 1UL << 4,
    /// <summary>mw: may write.</summary>
    MayWrite = 1UL << 5,
    /// <summary>me: may execute.</summary>
    MayExec = 1UL << 6,
    /// <summary>ms: may share.</summary>
    MayShare = 1UL << 7,
    /// <summary>gd: stack segment grows down.</summary>
    GrowsDown = 1UL << 8,
    /// <summary>pf: pure PFN range.</summary>
    PfnMap = 1UL << 9,
    /// <summary>dw: disabled write to the mapped file (before 5.15).</summary>
    DenyWrite = 1UL << 10,
    /// <summary>lo: pages are locked in memory.</summary>
    Locked = 1UL << 11,
    /// <summary>io: memory mapped I/O area.</summary>
    Io = 1UL << 12,
    /// <summary>sr: sequential read advise.</summary>
    SeqRead = 1UL << 13,
    /// <summary>rr: random read advise.</summary>
    RandRead = 1UL << 14,
    /// <summary>dc: do not copy on fork.</summary>
    DontCopy = 1UL << 15,
    /// <summary>de: do not expand on remap.</summary>
    DontExpand = 1UL << 16,
    /// <summary>ac: area is accountable.</summary>
    Account = 1UL << 17,
    /// <summary>nr: swap space is not reserved.</summary>
    NoReserve = 1UL << 18,
    /// <summary>ht: area uses huge TLB pages.</summary>
    HugeTlb = 1UL << 19,
    /// <summary>sf: synchronous page fault (MAP_SYNC).</summary>
    Sync = 1UL << 20,
    /// <summary>nl: non-linear mapping (before 4.0).</summary>
    NonLinear = 1UL << 21,
    /// <summary>ar: architecture specific flag.</summary>
    Arch1 = 1UL << 22,
    /// <summary>wf: wipe on fork.</summary>
    WipeOnFork = 1UL << 23,
    /// <summary>dd: do not include area into core dump.</summary>
    DontDump = 1UL << 24,
    /// <summary>sd: soft-dirty.</summary>
    SoftDirty = 1UL << 25,
    /// <summary>mm: mixed map area.</summary>
    MixedMap = 1UL << 26,
    /// <summary>hg: huge page advise.</summary>
    HugePage = 1UL << 27,
    /// <summary>nh: no huge page advise.</summary>
    NoHugePage = 1UL << 28,
    /// <summary>mg: mergeable advise (KSM).</summary>
    Mergeable = 1UL << 29,
    /// <summary>um: userfaultfd missing tracking.</summary>
    UffdMissing = 1UL << 30,
    /// <summary>uw: userfaultfd write-protect tracking.</summary>
    UffdWp = 1UL << 31,
    /// <summary>ss: shadow stack.</summary>
    ShadowStack = 1UL << 32,
    /// <summary>sl: sealed (mseal, 6.10).</summary>
    Sealed = 1UL << 33,
    /// <summary>bt: arm64 BTI guarded page.</summary>
    ArmBti = 1UL << 34,
    /// <summary>mt: arm64 MTE allocation tags enabled.</summary>
    ArmMte = 1UL << 35,
    /// <summary>lf: lock on fault.</summary>
    LockOnFault = 1UL << 36,
    /// <summary>ui: userfaultfd minor fault tracking.</summary>
    UffdMinor = 1UL << 37,
    /// <summary>dp: droppable (MAP_DROPPABLE, 6.11).</summary>
    Droppable = 1UL << 38,
    /// <summary>gu: grows up (architectures with upward stacks).</summary>
    GrowsUp = 1UL << 39,
    /// <summary>mp: MPX bounds table (before 5.6).</summary>
    Mpx = 1UL << 40,
}

internal static class VmFlagCodes
{
    /// <summary>Maps a two-letter code to its flag, or None when unknown.</summary>
    public static VmFlags Lookup(byte a, byte b) => (char)a switch
    {
        'r' => b == 'd' ? VmFlags.Read : b == 'r' ? VmFlags.RandRead : VmFlags.None,
        'w' => b == 'r' ? VmFlags.Write : b == 'f' ? VmFlags.WipeOnFork : VmFlags.None,
        'e' => b == 'x' ? VmFlags.Exec : VmFlags.None,
        's' => b switch
        {
            (byte)'h' => VmFlags.Shared,
            (byte)'r' => VmFlags.SeqRead,
            (byte)'f' => VmFlags.Sync,
            (byte)'d' => VmFlags.SoftDirty,
            (byte)'s' => VmFlags.ShadowStack,
            (byte)'l' => VmFlags.Sealed,
            _ => VmFlags.None,
        },
        'm' => b switch
        {
            (byte)'r' => VmFlags.MayRead,
            (byte)'w' => VmFlags.MayWrite,
            (byte)'e' => VmFlags.MayExec,
            (byte)'s' => VmFlags.MayShare,
            (byte)'m' => VmFlags.MixedMap,
            (byte)'g' => VmFlags.Mergeable,
            (byte)'t' => VmFlags.ArmMte,
            (byte)'p' => VmFlags.Mpx,
            _ => VmFlags.None,
        },
        'g' => b == 'd' ? VmFlags.GrowsDown : b == 'u' ? VmFlags.GrowsUp : VmFlags.None,
        'p' => b == 'f' ? VmFlags.PfnMap : VmFlags.None,
        'd' => b switch
        {
            (byte)'w' => VmFlags.DenyWrite,
            (byte)'c' => VmFlags.DontCopy,
            (byte)'e' => VmFlags.DontExpand,
            (byte)'d' => VmFlags.DontDump,
            (byte)'p' => VmFlags.Droppable,
            _ => VmFlags.None,
        },
        'l' => b == 'o' ? VmFlags.Locked : b == 'f' ? VmFlags.LockOnFault : VmFlags.None,
        'i' => b == 'o' ? VmFlags.Io : VmFlags.None,
        'a' => b == 'c' ? VmFlags.Account : b == 'r' ? VmFlags.Arch1 : VmFlags.None,
        'n' => b switch
        {
            (byte)'r' => VmFlags.NoReserve,
            (byte)'l' => VmFlags.NonLinear,
            (byte)'h' => VmFlags.NoHugePage,
            _ => VmFlags.None,
        },
        'h' => b == 't' ? VmFlags.HugeTlb : b == 'g' ? VmFlags.HugePage : VmFlags.None,
        'u' => b == 'm' ? VmFlags.UffdMissing : b == 'w' ? VmFlags.UffdWp : b == 'i' ? VmFlags.UffdMinor : VmFlags.None,
        'b' => b == 't' ? VmFlags.ArmBti : VmFlags.None,
        _ => VmFlags.None,
    };
}
