namespace Crest.Kernel.Injection;

/// <summary>One syscall for <see cref="SyscallInjector.Batch"/>: number and up to six arguments.</summary>
public readonly record struct InjectedCall(long Nr, long A1 = 0, long A2 = 0, long A3 = 0, long A4 = 0, long A5 = 0, long A6 = 0);
