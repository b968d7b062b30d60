namespace Crest.Kernel.Ptrace;

/// <summary>What kind of stop PTRACE_GET_SYSCALL_INFO describes.</summary>
public enum SyscallInfoOp : byte { None = 0, Entry = 1, Exit = 2, Seccomp = 3 }
