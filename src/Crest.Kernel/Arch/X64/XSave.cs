// The XSAVE area (Intel SDM vol. 1 ch. 13) as PTRACE_GETREGSET NT_X86_XSTATE returns it (Linux 2.6.35):
// always the standard, non-compacted layout. A 512-byte legacy FXSAVE region, a 64-byte header whose
// first word is XSTATE_BV, then each extended component at the offset CPUID leaf 0xD, sub-leaf N, EBX
// gives. NT_PRFPREG returns only the 512-byte FXSAVE region (struct user_fpregs_struct).
//
//   0      24      160             416         464          512         576          (CPUID 0xD.2 EBX)
//   | fcw.. | mxcsr | xmm0..xmm15    | reserved  | sw_reserved | XSTATE_BV.. | ...  | ymm0..15 high halves |
using System.Runtime.Intrinsics.X86;

namespace Crest.Kernel.Arch.X64;

/// <summary>Offsets into an XSAVE / FXSAVE buffer, and readers for the registers Crest checks.</summary>
public static class XSave
{
    /// <summary>Size of the legacy FXSAVE region (NT_PRFPREG).</summary>
    public const int FxSaveSize = 512;

    /// <summary>xmm0 starts here; each xmm register is 16 bytes.</summary>
    public const int XmmOffset = 160;

    /// <summary>MXCSR (4 bytes).</summary>
    public const int MxcsrOffset = 24;

    /// <summary>XSTATE_BV: the bitmap of components present in the buffer.</summary>
    public const int XStateBvOffset = 512;

    /// <summary>XSTATE_BV / XCR0 bit of the AVX upper halves (YMM_Hi128).</summary>
    public const int AvxComponent = 2;

    /// <summary>The largest buffer Crest offers the kernel; the kernel writes back how much it used.</summary>
    public const int MaxXStateSize = 64 * 1024;

    /// <summary>The 16 bytes of xmmN in an FXSAVE or XSAVE buffer.</summary>
    public static ReadOnlySpan<byte> Xmm(ReadOnlySpan<byte> area, int n) => area.Slice(XmmOffset + 16 * n, 16);

    /// <summary>XSTATE_BV of an XSAVE buffer (0 for a bare FXSAVE buffer).</summary>
    public static ulong XStateBv(ReadOnlySpan<byte> area) =>
        area.Length >= XStateBvOffset + 8 ? BitConverter.ToUInt64(area.Slice(XStateBvOffset, 8)) : 0;

    /// <summary>Offset of component <paramref name="component"/> in the standard layout (CPUID.(EAX=0DH, ECX=n).EBX), -1 if unknown.</summary>
    public static int ComponentOffset(int component) =>
        X86Base.IsSupported && X86Base.CpuId(0, 0).Eax >= 0xd ? X86Base.CpuId(0xd, component).Ebx : -1;

    /// <summary>
    /// The 32 bytes of ymmN: xmmN plus its upper half. An upper half whose component is absent from
    /// XSTATE_BV is in its initial state, zero.
    /// </summary>
    public static byte[] Ymm(ReadOnlySpan<byte> area, int n)
    {
        var ymm = new byte[32];
        Xmm(area, n).CopyTo(ymm);
        int offset = ComponentOffset(AvxComponent);
        if (offset > 0 && (XStateBv(area) & (1UL << AvxComponent)) != 0 && area.Length >= offset + 16 * (n + 1))
            area.Slice(offset + 16 * n, 16).CopyTo(ymm.AsSpan(16));
        return ymm;
    }
}
