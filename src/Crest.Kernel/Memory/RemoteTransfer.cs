namespace Crest.Kernel.Memory;

/// <summary>
/// How far a vectored transfer got. Complete when every byte moved; otherwise the transfer stopped
/// at FaultAddress (the first remote byte that could not be reached) with Error from the kernel,
/// after Transferred bytes.
/// </summary>
public readonly record struct RemoteTransfer(ulong Transferred, bool Complete, ulong FaultAddress, Errno Error);
