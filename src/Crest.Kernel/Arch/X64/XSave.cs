// The XSAVE area (Intel SDM vol. 1 ch. 13) as PTRACE_GETREGSET NT_X86_XSTATE returns it (Linux 3.x):
// a 512-byte legacy FXSAVE region, a 64-byte header (XSTATE_BV at 512), then the extended components at
// offsets CPUID leaf 0xD gives. NT_PRFPREG returns only the 512-byte FXSAVE region (struct user_fpregs_struct).
//
//   0        160            416      464   512         520       576           (CPUID 0xD.2 EBX)
//   | fcw..mxcsr | xmm0..xmm15 | ...  | sw  | XSTATE_BV | header  | YMM_Hi128 ... |
namespace Crest.Kernel.Arch.X64;

/// <summary>Offsets into an XSAVE / FXSAVE buffer that Crest reads.</summary>
public static class XSave
{
    /// <summary>Size of the legacy FXSAVE region (NT_PRFPREG).</summary>
    public const int FxSaveSize = 512;

    /// <summary>xmm0 starts here; each xmm register is 16 bytes.</summary>
    public const int XmmOffset = 160;

    /// <summary>MXCSR (4 bytes).</summary>
    public const int MxcsrOffset = 24;

    /// <summary>XSTATE_BV: the bitmap of components present in the buffer (bit 2 = AVX upper halves).</summary>
    public const int XStateBvOffset = 512;

    /// <summary>The largest buffer Crest offers the kernel; the kernel writes back how much it used.</summary>
    public const int MaxXStateSize = 64 * 1024;

    /// <summary>The 16 bytes of xmmN in an FXSAVE or XSAVE buffer.</summary>
    public static ReadOnlySpan<byte> Xmm(ReadOnlySpan<byte> area, int n) => area.Slice(XmmOffset + 16 * n, 16);
}
