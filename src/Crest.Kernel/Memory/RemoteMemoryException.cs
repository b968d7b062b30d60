namespace Crest.Kernel.Memory;

/// <summary>A process_vm_readv/process_vm_writev transfer stopped before the end. The message
/// names the call, the pid, the address where it stopped and how much had moved.</summary>
public sealed class RemoteMemoryException : KernelException
{
    public RemoteMemoryException(string operation, int pid, RemoteTransfer transfer, ulong requested)
        : base(operation, pid, transfer.Error,
            $"at address 0x{transfer.FaultAddress:x} ({transfer.Transferred} of {requested} bytes transferred)")
    {
        Address = transfer.FaultAddress;
        Transferred = transfer.Transferred;
        Requested = requested;
    }

    /// <summary>The first remote address that could not be read or written.</summary>
    public ulong Address { get; }

    public ulong Transferred { get; }

    public ulong Requested { get; }
}
