// prctl(2) and personality(2) for Crest's own process, and the answers the engine needs from
// them: PR_GET_DUMPABLE, PR_SET_NAME/PR_GET_NAME (TASK_COMM_LEN 16), PR_GET_SECUREBITS,
// PR_SET_MM with PR_SET_MM_MAP_SIZE (Linux 3.18, CONFIG_CHECKPOINT_RESTORE: the kernel says how big
// its struct prctl_mm_map is; it needs no capability). The engine asks the same questions of
// stopped tasks by injecting prctl; these are the in-process forms.
using System.Text;
using Crest.Kernel.Interop;

namespace Crest.Kernel;

public static class ProcessControl
{
    /// <summary>prctl(2) raw: the call's non-negative result; failure throws naming the option.</summary>
    public static int Prctl(int option, ulong arg2 = 0, ulong arg3 = 0, ulong arg4 = 0, ulong arg5 = 0)
    {
        int r = Libc.prctl(option, arg2, arg3, arg4, arg5);
        if (r < 0) throw new KernelException($"prctl({OptionName(option)})", Errno.Last);
        return r;
    }

    /// <summary>PR_GET_DUMPABLE: 0 (not dumpable), 1 (SUID_DUMP_USER) or 2 (SUID_DUMP_ROOT).</summary>
    public static int GetDumpable() => Prctl(Libc.PR_GET_DUMPABLE);

    /// <summary>PR_GET_SECUREBITS.</summary>
    public static uint GetSecureBits() => (uint)Prctl(Libc.PR_GET_SECUREBITS);

    /// <summary>PR_SET_NAME for the calling thread. The kernel keeps 15 bytes; a longer name is refused
    /// here rather than silently cut.</summary>
    public static unsafe void SetName(string name)
    {
        byte* comm = stackalloc byte[Libc.TASK_COMM_LEN];
        new Span<byte>(comm, Libc.TASK_COMM_LEN).Clear();
        if (name.Contains('\0') || Encoding.UTF8.GetByteCount(name) > Libc.TASK_COMM_LEN - 1)
            throw new ArgumentException($"a task name has at most {Libc.TASK_COMM_LEN - 1} bytes and no NUL: \"{name}\"", nameof(name));
        Encoding.UTF8.GetBytes(name, new Span<byte>(comm, Libc.TASK_COMM_LEN - 1));
        Prctl(Libc.PR_SET_NAME, (ulong)comm);
    }

    /// <summary>PR_GET_NAME of the calling thread.</summary>
    public static unsafe string GetName()
    {
        byte* comm = stackalloc byte[Libc.TASK_COMM_LEN];
        new Span<byte>(comm, Libc.TASK_COMM_LEN).Clear();
        Prctl(Libc.PR_GET_NAME, (ulong)comm);
        var bytes = new ReadOnlySpan<byte>(comm, Libc.TASK_COMM_LEN);
        int end = bytes.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? bytes : bytes[..end]);
    }

    /// <summary>PR_SET_MM_MAP_SIZE: sizeof(struct prctl_mm_map) as this kernel knows it. PR_SET_MM_MAP
    /// needs exactly that size.</summary>
    public static unsafe int GetMmMapSize()
    {
        uint size = 0;
        Prctl(Libc.PR_SET_MM, Libc.PR_SET_MM_MAP_SIZE, (ulong)&size);
        return (int)size;
    }

    /// <summary>personality(0xffffffff): the execution domain and flags, unchanged.</summary>
    public static uint GetPersonality()
    {
        int r = Libc.personality(0xffffffff);
        if (r < 0) throw new KernelException("personality", Errno.Last);
        return (uint)r;
    }

    /// <summary>personality(2): sets the persona, returns the previous one.</summary>
    public static uint SetPersonality(uint persona)
    {
        int r = Libc.personality(persona);
        if (r < 0) throw new KernelException("personality", Errno.Last, $"0x{persona:x}");
        return (uint)r;
    }

    private static string OptionName(int option) => option switch
    {
        Libc.PR_SET_PDEATHSIG => "PR_SET_PDEATHSIG", Libc.PR_GET_PDEATHSIG => "PR_GET_PDEATHSIG",
        Libc.PR_GET_DUMPABLE => "PR_GET_DUMPABLE", Libc.PR_SET_DUMPABLE => "PR_SET_DUMPABLE",
        Libc.PR_SET_NAME => "PR_SET_NAME", Libc.PR_GET_NAME => "PR_GET_NAME",
        Libc.PR_GET_SECCOMP => "PR_GET_SECCOMP", Libc.PR_GET_SECUREBITS => "PR_GET_SECUREBITS",
        Libc.PR_SET_SECUREBITS => "PR_SET_SECUREBITS", Libc.PR_SET_MM => "PR_SET_MM",
        Libc.PR_SET_CHILD_SUBREAPER => "PR_SET_CHILD_SUBREAPER", Libc.PR_GET_CHILD_SUBREAPER => "PR_GET_CHILD_SUBREAPER",
        Libc.PR_SET_NO_NEW_PRIVS => "PR_SET_NO_NEW_PRIVS", Libc.PR_GET_NO_NEW_PRIVS => "PR_GET_NO_NEW_PRIVS",
        Libc.PR_GET_TID_ADDRESS => "PR_GET_TID_ADDRESS", Libc.PR_GET_THP_DISABLE => "PR_GET_THP_DISABLE",
        Libc.PR_SET_THP_DISABLE => "PR_SET_THP_DISABLE", Libc.PR_CAP_AMBIENT => "PR_CAP_AMBIENT",
        Libc.PR_GET_TIMERSLACK => "PR_GET_TIMERSLACK",
        Libc.PR_SET_TIMER_CREATE_RESTORE_IDS => "PR_SET_TIMER_CREATE_RESTORE_IDS",
        _ => option.ToString(),
    };
}
