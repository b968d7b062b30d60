// struct user_regs_struct (arch/x86/include/asm/user_64.h): what PTRACE_GETREGSET NT_PRSTATUS returns
// on x86_64. Field names and order are the kernel's; fs_base/gs_base are part of it since 2.6.
using System.Runtime.InteropServices;

namespace Crest.Kernel.Arch.X64;

/// <summary>The general-purpose registers of an x86_64 task, exactly as the kernel lays them out (216 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct UserRegs : IEquatable<UserRegs>
{
    public ulong r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs, eflags,
        rsp, ss, fs_base, gs_base, ds, es, fs, gs;

    public const int Size = 27 * 8;

    /// <summary>Byte offsets into the struct, as PTRACE_PEEKUSER takes them (struct user starts with regs).</summary>
    public const int RaxOffset = 10 * 8, OrigRaxOffset = 15 * 8, RipOffset = 16 * 8;

    /// <summary>rax read as a signed syscall return value: -4095..-1 are -errno (and -512..-516 restart codes).</summary>
    public readonly long SyscallResult => (long)rax;

    /// <summary>orig_rax as the kernel keeps it: the syscall number at syscall entry, -1 outside a syscall.</summary>
    public readonly long SyscallNumber => (long)orig_rax;

    /// <summary>
    /// These registers set up to run syscall <paramref name="nr"/> from the `syscall` instruction at
    /// <paramref name="rip"/>: the x86_64 syscall ABI (rax, rdi, rsi, rdx, r10, r8, r9), and orig_rax = -1 so
    /// the kernel sees no interrupted syscall to restart.
    /// </summary>
    public readonly UserRegs ForInjectedSyscall(ulong rip, long nr, long a1 = 0, long a2 = 0, long a3 = 0, long a4 = 0, long a5 = 0, long a6 = 0)
    {
        var regs = this;
        regs.rax = (ulong)nr;
        regs.rdi = (ulong)a1;
        regs.rsi = (ulong)a2;
        regs.rdx = (ulong)a3;
        regs.r10 = (ulong)a4;
        regs.r8 = (ulong)a5;
        regs.r9 = (ulong)a6;
        regs.orig_rax = ulong.MaxValue;
        regs.rip = rip;
        return regs;
    }

    public readonly bool Equals(UserRegs other) =>
        MemoryMarshal.AsBytes(new ReadOnlySpan<UserRegs>(in this)).SequenceEqual(MemoryMarshal.AsBytes(new ReadOnlySpan<UserRegs>(in other)));

    public override readonly bool Equals(object? obj) => obj is UserRegs other && Equals(other);

    public override readonly int GetHashCode() => HashCode.Combine(rip, rsp, rax, orig_rax);

    public static bool operator ==(UserRegs left, UserRegs right) => left.Equals(right);

    public static bool operator !=(UserRegs left, UserRegs right) => !left.Equals(right);

    public override readonly string ToString() =>
        $"rip={rip:x} rsp={rsp:x} rax={rax:x} orig_rax={(long)orig_rax} rdi={rdi:x} rsi={rsi:x} rdx={rdx:x} " +
        $"r10={r10:x} r8={r8:x} r9={r9:x} eflags={eflags:x} fs_base={fs_base:x}";
}
