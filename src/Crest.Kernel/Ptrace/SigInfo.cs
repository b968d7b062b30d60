namespace Crest.Kernel.Ptrace;

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
