namespace Crest.Kernel.Memory;

/// <summary>A range of another task's address space: [Address, Address + Length).</summary>
public readonly record struct RemoteRange(ulong Address, ulong Length)
{
    public ulong End => Address + Length;

    public override string ToString() => $"0x{Address:x}-0x{End:x}";
}
