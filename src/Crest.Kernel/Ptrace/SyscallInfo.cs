namespace Crest.Kernel.Ptrace;

/// <summary>What kind of stop PTRACE_GET_SYSCALL_INFO describes.</summary>
public enum SyscallInfoOp : byte { None = 0, Entry = 1, Exit = 2, Seccomp = 3 }

/// <summary>
/// PTRACE_GET_SYSCALL_INFO (Linux 5.3). Outside syscall stops (an interrupt or group stop) only Op = None,
/// Arch and the two pointers are meaningful; an interrupted syscall is then seen in rax / orig_rax.
/// </summary>
public sealed record SyscallInfo(
    SyscallInfoOp Op,
    uint Arch,
    ulong InstructionPointer,
    ulong StackPointer,
    long Number,
    IReadOnlyList<ulong> Arguments,
    long ReturnValue,
    bool IsError,
    uint SeccompData)
{
    /// <summary>AUDIT_ARCH_X86_64.</summary>
    public const uint AuditArchX86_64 = 0xc000003e;
}

/// <summary>PTRACE_GET_RSEQ_CONFIGURATION (Linux 5.13): where the thread's struct rseq is registered.</summary>
public readonly record struct RseqConfiguration(ulong AbiPointer, uint AbiSize, uint Signature, uint Flags);

/// <summary>One siginfo_t (128 bytes) as PTRACE_PEEKSIGINFO copies it out.</summary>
public sealed class SigInfo(byte[] bytes)
{
    public const int Size = 128;

    public byte[] Bytes { get; } = bytes;

    public int Signo => BitConverter.ToInt32(Bytes, 0);
    public int Errno => BitConverter.ToInt32(Bytes, 4);
    public int Code => BitConverter.ToInt32(Bytes, 8);

    /// <summary>si_pid of a signal sent by kill/tgkill/sigqueue.</summary>
    public int SenderPid => BitConverter.ToInt32(Bytes, 16);

    /// <summary>si_uid of a signal sent by kill/tgkill/sigqueue.</summary>
    public int SenderUid => BitConverter.ToInt32(Bytes, 20);

    public override string ToString() => $"siginfo(signo {Signo}, code {Code}, pid {SenderPid})";
}
