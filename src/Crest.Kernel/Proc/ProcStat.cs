// /proc/PID/stat (proc(5), fs/proc/array.c do_task_stat): one line, 52 fields since Linux 3.5.
//
//   pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
//   utime stime cutime cstime priority nice num_threads itrealvalue starttime vsize rss rsslim
//   startcode endcode startstack kstkesp kstkeip signal blocked sigignore sigcatch wchan nswap
//   cnswap exit_signal processor rt_priority policy delayacct_blkio_ticks guest_time cguest_time
//   start_data end_data start_brk arg_start arg_end env_start env_end exit_code
//
// comm is printed raw (up to 15 bytes) and may hold spaces, parentheses and newlines, so it ends
// at the LAST ')' of the file. Fields after exit_code (from a future kernel) are ignored.
namespace Crest.Kernel.Proc;

/// <summary>The fields of /proc/PID/stat. Times are in clock ticks, sizes as the kernel prints them.</summary>
public sealed record ProcStat
{
    /// <summary>Fields after "(comm) ": state, then 49 numbers (fields 4..52).</summary>
    private const int NumbersAfterState = 49;

    private static readonly string[] FieldNames =
    [
        "ppid", "pgrp", "session", "tty_nr", "tpgid", "flags", "minflt", "cminflt", "majflt", "cmajflt",
        "utime", "stime", "cutime", "cstime", "priority", "nice", "num_threads", "itrealvalue", "starttime",
        "vsize", "rss", "rsslim", "startcode", "endcode", "startstack", "kstkesp", "kstkeip", "signal",
        "blocked", "sigignore", "sigcatch", "wchan", "nswap", "cnswap", "exit_signal", "processor",
        "rt_priority", "policy", "delayacct_blkio_ticks", "guest_time", "cguest_time", "start_data",
        "end_data", "start_brk", "arg_start", "arg_end", "env_start", "env_end", "exit_code",
    ];

    public required int Pid { get; init; }
    /// <summary>The raw comm bytes between the parentheses, decoded as UTF-8.</summary>
    public required string Comm { get; init; }
    public required char State { get; init; }
    public required int Ppid { get; init; }
    public required int Pgrp { get; init; }
    public required int Session { get; init; }
    public required int TtyNr { get; init; }
    public required int Tpgid { get; init; }
    public required uint Flags { get; init; }
    public required ulong MinFlt { get; init; }
    public required ulong CMinFlt { get; init; }
    public required ulong MajFlt { get; init; }
    public required ulong CMajFlt { get; init; }
    public required ulong UTime { get; init; }
    public required ulong STime { get; init; }
    public required long CUTime { get; init; }
    public required long CSTime { get; init; }
    public required long Priority { get; init; }
    public required long Nice { get; init; }
    public required long NumThreads { get; init; }
    public required long ItRealValue { get; init; }
    public required ulong StartTime { get; init; }
    /// <summary>Virtual memory size in bytes.</summary>
    public required ulong VSize { get; init; }
    /// <summary>Resident set size in pages.</summary>
    public required ulong Rss { get; init; }
    public required ulong RssLim { get; init; }
    public required ulong StartCode { get; init; }
    public required ulong EndCode { get; init; }
    public required ulong StartStack { get; init; }
    public required ulong KStkEsp { get; init; }
    public required ulong KStkEip { get; init; }
    public required ulong Signal { get; init; }
    public required ulong Blocked { get; init; }
    public required ulong SigIgnore { get; init; }
    public required ulong SigCatch { get; init; }
    public required ulong WChan { get; init; }
    public required ulong NSwap { get; init; }
    public required ulong CNSwap { get; init; }
    public required int ExitSignal { get; init; }
    public required int Processor { get; init; }
    public required uint RtPriority { get; init; }
    public required uint Policy { get; init; }
    public required ulong DelayAcctBlkioTicks { get; init; }
    public required ulong GuestTime { get; init; }
    public required long CGuestTime { get; init; }
    public required ulong StartData { get; init; }
    public required ulong EndData { get; init; }
    public required ulong StartBrk { get; init; }
    public required ulong ArgStart { get; init; }
    public required ulong ArgEnd { get; init; }
    public required ulong EnvStart { get; init; }
    public required ulong EnvEnd { get; init; }
    public required int ExitCode { get; init; }

    public static ProcStat Parse(ReadOnlySpan<byte> text)
    {
        const ProcFileKind K = ProcFileKind.Stat;
        int open = text.IndexOf((byte)'(');
        int close = text.LastIndexOf((byte)')');
        if (open < 0 || close < open)
            throw new ProcParseException(K, 1, "no \"(comm)\"", text);
        ReadOnlySpan<byte> pidText = ProcText.Trim(text[..open]);
        int pid = ProcText.ParseInt32(pidText, K, 1, "pid");
        string comm = ProcText.Utf8(text[(open + 1)..close]);

        var rest = text[(close + 1)..];
        // The file ends with one newline; anything after it is not stat.
        int nl = rest.IndexOf((byte)'\n');
        if (nl >= 0)
        {
            if (!ProcText.IsBlank(rest[(nl + 1)..]))
                throw new ProcParseException(K, 2, "text after the first line", rest[(nl + 1)..]);
            rest = rest[..nl];
        }
        var fields = new ProcFields(rest, K, 1);
        ReadOnlySpan<byte> state = fields.Next("state");
        if (state.Length != 1)
            throw fields.Fail("state is not one character");

        var n = new ulong[NumbersAfterState];
        for (int i = 0; i < NumbersAfterState; i++)
        {
            string name = FieldNames[i];
            ReadOnlySpan<byte> token = fields.Next(name);
            if (token[0] == (byte)'-')
                n[i] = (ulong)ProcText.ParseInt64(token, K, 1, name);
            else
                n[i] = ProcText.ParseUInt64(token, 10, K, 1, name);
        }

        // Field numbers as in proc(5); n[f - 4] holds field f.
        ulong F(int field) => n[field - 4];
        int I(int field) => ProcText.ToInt32((long)n[field - 4], K, 1, FieldNames[field - 4]);
        uint U(int field) => n[field - 4] <= uint.MaxValue
            ? (uint)n[field - 4]
            : throw new ProcParseException(K, 1, $"{FieldNames[field - 4]} out of range");

        return new ProcStat
        {
            Pid = pid,
            Comm = comm,
            State = (char)state[0],
            Ppid = I(4),
            Pgrp = I(5),
            Session = I(6),
            TtyNr = I(7),
            Tpgid = I(8),
            Flags = U(9),
            MinFlt = F(10),
            CMinFlt = F(11),
            MajFlt = F(12),
            CMajFlt = F(13),
            UTime = F(14),
            STime = F(15),
            CUTime = (long)F(16),
            CSTime = (long)F(17),
            Priority = (long)F(18),
            Nice = (long)F(19),
            NumThreads = (long)F(20),
            ItRealValue = (long)F(21),
            StartTime = F(22),
            VSize = F(23),
            Rss = F(24),
            RssLim = F(25),
            StartCode = F(26),
            EndCode = F(27),
            StartStack = F(28),
            KStkEsp = F(29),
            KStkEip = F(30),
            Signal = F(31),
            Blocked = F(32),
            SigIgnore = F(33),
            SigCatch = F(34),
            WChan = F(35),
            NSwap = F(36),
            CNSwap = F(37),
            ExitSignal = I(38),
            Processor = I(39),
            RtPriority = U(40),
            Policy = U(41),
            DelayAcctBlkioTicks = F(42),
            GuestTime = F(43),
            CGuestTime = (long)F(44),
            StartData = F(45),
            EndData = F(46),
            StartBrk = F(47),
            ArgStart = F(48),
            ArgEnd = F(49),
            EnvStart = F(50),
            EnvEnd = F(51),
            ExitCode = I(52),
        };
    }
}
