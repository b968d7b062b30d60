namespace Crest.Kernel.Ptrace;

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
