// The status word waitpid(2) fills in, decoded: exited, killed by a signal, stopped. For ptrace stops the
// bits above the signal carry the PTRACE_EVENT_* (Linux 2.6 / 3.4 for PTRACE_EVENT_STOP = 128) and a
// syscall stop under PTRACE_O_TRACESYSGOOD reports SIGTRAP | 0x80.
namespace Crest.Kernel.Processes;

/// <summary>A decoded wait status.</summary>
public readonly record struct WaitStatus(int Raw)
{
    public bool Exited => (Raw & 0x7f) == 0;
    public int ExitCode => (Raw >> 8) & 0xff;

    public bool Signaled => (Raw & 0x7f) is not 0 and not 0x7f;
    public int TermSignal => Raw & 0x7f;
    public bool CoreDumped => Signaled && (Raw & 0x80) != 0;

    public bool Stopped => (Raw & 0xff) == 0x7f;

    /// <summary>The stop signal, with the 0x80 syscall-stop bit removed.</summary>
    public int StopSignal => (Raw >> 8) & 0x7f;

    /// <summary>The PTRACE_EVENT_* of a ptrace event stop, 0 otherwise.</summary>
    public int Event => Stopped ? (Raw >> 16) & 0xff : 0;

    /// <summary>A syscall-entry or -exit stop under PTRACE_O_TRACESYSGOOD (SIGTRAP | 0x80).</summary>
    public bool IsSyscallStop => Stopped && ((Raw >> 8) & 0xff) == (5 | 0x80);

    /// <summary>A PTRACE_EVENT_STOP trap: after PTRACE_INTERRUPT (SIGTRAP), or a group stop (the stop signal).</summary>
    public bool IsEventStop => Event == 128;

    /// <summary>A signal-delivery stop: resuming it with signal 0 discards the signal.</summary>
    public bool IsSignalDeliveryStop => Stopped && Event == 0 && !IsSyscallStop;

    public bool Terminated => Exited || Signaled;

    public override string ToString()
    {
        if (Exited) return $"exited({ExitCode})";
        if (Stopped)
        {
            string what = IsSyscallStop ? "syscall" : SignalName(StopSignal);
            return Event != 0 ? $"stopped({what}, event {Event})" : $"stopped({what})";
        }
        return CoreDumped ? $"killed({SignalName(TermSignal)}, core dumped)" : $"killed({SignalName(TermSignal)})";
    }

    private static string SignalName(int sig) => sig switch
    {
        1 => "SIGHUP", 2 => "SIGINT", 3 => "SIGQUIT", 4 => "SIGILL", 5 => "SIGTRAP", 6 => "SIGABRT", 7 => "SIGBUS",
        8 => "SIGFPE", 9 => "SIGKILL", 10 => "SIGUSR1", 11 => "SIGSEGV", 12 => "SIGUSR2", 13 => "SIGPIPE",
        14 => "SIGALRM", 15 => "SIGTERM", 17 => "SIGCHLD", 18 => "SIGCONT", 19 => "SIGSTOP", 20 => "SIGTSTP",
        21 => "SIGTTIN", 22 => "SIGTTOU", 28 => "SIGWINCH", 31 => "SIGSYS",
        _ => $"signal {sig}",
    };
}
