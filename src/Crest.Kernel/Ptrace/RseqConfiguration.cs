namespace Crest.Kernel.Ptrace;

/// <summary>PTRACE_GET_RSEQ_CONFIGURATION (Linux 5.13): where the thread's struct rseq is registered.</summary>
public readonly record struct RseqConfiguration(ulong AbiPointer, uint AbiSize, uint Signature, uint Flags);
