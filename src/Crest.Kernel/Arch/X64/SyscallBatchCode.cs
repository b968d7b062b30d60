// Machine code for a batch of injected syscalls (Injection/SyscallInjector.Batch): the calls one after the
// other, each result stored, then a done marker, then pause() so that the task sleeps until the tracer
// interrupts it. Straight-line code without stack, loops or branches:
//
//   per call:  movabs rax, nr ; movabs rdi, a1 ; movabs rsi, a2 ; movabs rdx, a3 ;
//              movabs r10, a4 ; movabs r8, a5 ; movabs r9, a6 ; syscall ; movabs [result_i], rax
//   end:       movabs rax, 1 ; movabs [done], rax ; movabs rax, __NR_pause ; syscall ; jmp back to the movabs
//
// syscall clobbers rcx and r11 only; no other register is relied on between calls.
using System.Buffers.Binary;

namespace Crest.Kernel.Arch.X64;

public static class SyscallBatchCode
{
    /// <summary>Bytes of code per call.</summary>
    public const int BytesPerCall = 7 * 10 + 2 + 10;

    /// <summary>Bytes of the ending (marker, pause loop).</summary>
    public const int EndBytes = 10 + 10 + 10 + 2 + 2;

    /// <summary>The code for <paramref name="calls"/>: results go to <paramref name="results"/> + 8 i, the marker 1 to <paramref name="done"/>.</summary>
    public static byte[] Build(ReadOnlySpan<(long Nr, long A1, long A2, long A3, long A4, long A5, long A6)> calls, ulong results, ulong done)
    {
        var code = new byte[calls.Length * BytesPerCall + EndBytes];
        int at = 0;
        for (int i = 0; i < calls.Length; i++)
        {
            var c = calls[i];
            MovImm(code, ref at, [0x48, 0xb8], c.Nr);   // rax
            MovImm(code, ref at, [0x48, 0xbf], c.A1);   // rdi
            MovImm(code, ref at, [0x48, 0xbe], c.A2);   // rsi
            MovImm(code, ref at, [0x48, 0xba], c.A3);   // rdx
            MovImm(code, ref at, [0x49, 0xba], c.A4);   // r10
            MovImm(code, ref at, [0x49, 0xb8], c.A5);   // r8
            MovImm(code, ref at, [0x49, 0xb9], c.A6);   // r9
            InjectionGadget.Syscall.CopyTo(code.AsSpan(at));
            at += 2;
            MovImm(code, ref at, [0x48, 0xa3], (long)(results + 8 * (ulong)i)); // mov [imm64], rax
        }
        MovImm(code, ref at, [0x48, 0xb8], 1);
        MovImm(code, ref at, [0x48, 0xa3], (long)done);
        MovImm(code, ref at, [0x48, 0xb8], SyscallNumbers.pause);
        InjectionGadget.Syscall.CopyTo(code.AsSpan(at));
        at += 2;
        code[at++] = 0xeb; // jmp rel8 back to the movabs rax, __NR_pause: pause again if something woke it
        code[at++] = unchecked((byte)-14);
        return code;
    }

    private static void MovImm(byte[] code, ref int at, ReadOnlySpan<byte> opcode, long value)
    {
        opcode.CopyTo(code.AsSpan(at));
        BinaryPrimitives.WriteInt64LittleEndian(code.AsSpan(at + 2), value);
        at += 10;
    }
}
