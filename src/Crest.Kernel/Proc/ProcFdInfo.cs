// /proc/PID/fdinfo/FD (proc(5), fs/proc/fd.c seq_show and each file type's show_fdinfo):
//
//   pos:    0            decimal           flags:  02000002   octal (O_* of the open file)
//   mnt_id: 17 (3.15)    ino: 26 (5.14)
//
// then per file type (since 3.8 unless noted):
//   eventfd   eventfd-count: HEX (%16llx) eventfd-id: N (5.16)
//             eventfd-semaphore: 0|1 (6.6)
//   epoll     tfd: FD events: HEX data: HEX pos: N ino: HEX sdev: HEX     one line per target
//   signalfd  sigmask: HEX
//   timerfd   clockid: N / ticks: N / settime flags: OCT / it_value: (S, NS) / it_interval: (S, NS) (3.17)
//   inotify   inotify wd:N ino:HEX sdev:HEX mask:HEX ignored_mask:HEX fhandle-bytes:HEX fhandle-type:HEX f_handle:HEX
//   fanotify  fanotify flags:HEX event-flags:HEX, then one line per mark: mnt_id:HEX (mount mark),
//             ino:HEX sdev:HEX ... (inode mark), sdev:HEX (superblock mark) or mnt_ns:N (6.14), each with
//             mflags mask ignored_mask
//   locks     lock:  ID: TYPE MODE ACCESS PID MAJ:MIN:INO START END|EOF     (fs/locks.c lock_get_status, 4.1)
//   pidfd     Pid: N  NSpid: N... (5.10)
//   pty       tty-index: N (4.20)
// Lines of other types (io_uring, bpf, ...) are kept in Other as key/value text.
namespace Crest.Kernel.Proc;

public sealed record EventFdInfo(ulong Count, int? Id, bool? Semaphore);

public readonly record struct EpollTarget(int Tfd, uint Events, ulong Data, long Pos, ulong Ino, uint Sdev);

public sealed record TimerFdInfo(int ClockId, ulong Ticks, uint SettimeFlags,
    long ValueSeconds, long ValueNanoseconds, long IntervalSeconds, long IntervalNanoseconds);

/// <summary>A file handle as exportfs encodes it (name_to_handle_at).</summary>
public sealed record FileHandleInfo(int Bytes, int Type, byte[] Handle);

public sealed record InotifyWatch(int Wd, ulong Ino, uint Sdev, uint Mask, uint IgnoredMask, FileHandleInfo? Handle);

/// <summary>What a fanotify mark is attached to; MountNamespace marks (FAN_MARK_MNTNS) since 6.14.</summary>
public enum FanotifyMarkKind { Inode, Mount, Superblock, MountNamespace }

/// <param name="MntId">For a mount mark: the mount id.</param>
/// <param name="MntNs">For a mount namespace mark: the namespace's inode number.</param>
public sealed record FanotifyMark(FanotifyMarkKind Kind, int? MntId, ulong? MntNs, ulong? Ino, uint? Sdev, uint MFlags,
    ulong Mask, ulong IgnoredMask, FileHandleInfo? Handle);

public sealed record FanotifyInfo(uint Flags, uint EventFlags, IReadOnlyList<FanotifyMark> Marks);

/// <summary>A "lock:" line: a file lock held through this fd.</summary>
/// <param name="Type">POSIX, FLOCK, OFDLCK, LEASE, DELEG ...</param>
/// <param name="Mode">ADVISORY or MANDATORY; for leases ACTIVE, BREAKING or BREAKER.</param>
/// <param name="Access">READ, WRITE or UNLCK.</param>
/// <param name="End">Last byte of the range, null for EOF.</param>
public sealed record FileLockInfo(long Id, string Type, string Mode, string Access, int Pid,
    uint DevMajor, uint DevMinor, ulong Inode, long Start, long? End);

public sealed record FdInfo
{
    public long Pos { get; private set; }
    /// <summary>The open file's O_* flags.</summary>
    public uint Flags { get; private set; }
    public int? MntId { get; private set; }
    public ulong? Ino { get; private set; }
    public EventFdInfo? EventFd { get; private set; }
    public IReadOnlyList<EpollTarget> EpollTargets { get; private set; } = [];
    public ulong? SignalMask { get; private set; }
    public TimerFdInfo? TimerFd { get; private set; }
    public IReadOnlyList<InotifyWatch> InotifyWatches { get; private set; } = [];
    public FanotifyInfo? Fanotify { get; private set; }
    public IReadOnlyList<FileLockInfo> Locks { get; private set; } = [];
    /// <summary>pidfd: the pid in the reader's namespace (-1 once the process is gone).</summary>
    public int? PidfdPid { get; private set; }
    public IReadOnlyList<int> PidfdNsPid { get; private set; } = [];
    public int? TtyIndex { get; private set; }
    public IReadOnlyList<KeyValuePair<string, string>> Other { get; private set; } = [];

    private FdInfo() { }

    private const ProcFileKind K = ProcFileKind.FdInfo;

    public static FdInfo Parse(ReadOnlySpan<byte> text)
    {
        var info = new FdInfo();
        bool hasPos = false, hasFlags = false;
        List<EpollTarget>? epoll = null;
        List<InotifyWatch>? inotify = null;
        List<FanotifyMark>? marks = null;
        (uint Flags, uint EventFlags)? fanotifyGroup = null;
        List<FileLockInfo>? locks = null;
        List<KeyValuePair<string, string>>? other = null;
        ulong? eventCount = null;
        int? eventId = null;
        bool? eventSemaphore = null;
        int? clockId = null;
        ulong ticks = 0;
        uint settimeFlags = 0;
        (long, long)? itValue = null, itInterval = null;

        var lines = new ProcLines(text);
        while (lines.Next(out var line))
        {
            if (ProcText.IsBlank(line))
                continue;
            int ln = lines.Number;
            if (line.StartsWith("inotify "u8))
            {
                (inotify ??= []).Add(ParseInotify(line, ln));
                continue;
            }
            if (line.StartsWith("fanotify "u8))
            {
                var pairs = new TaggedPairs(line["fanotify "u8.Length..], ln, line);
                if (pairs.Has("event-flags"u8))
                    fanotifyGroup = (pairs.U32("flags"u8), pairs.U32("event-flags"u8));
                else
                    (marks ??= []).Add(ParseFanotifyMark(pairs));
                continue;
            }
            if (line.StartsWith("tfd:"u8))
            {
                var p = new TaggedPairs(line, ln, line);
                (epoll ??= []).Add(new EpollTarget(
                    ProcText.ToInt32((long)p.Number("tfd"u8, 10), K, ln, "tfd"), p.U32("events"u8), p.Number("data"u8, 16),
                    (long)p.Number("pos"u8, 10), p.Number("ino"u8, 16), p.U32("sdev"u8)));
                continue;
            }

            int colon = line.IndexOf((byte)':');
            if (colon <= 0)
            {
                // Some types print free-form lines (io_uring's ring dumps); keep them whole.
                (other ??= []).Add(new(ProcText.Utf8(ProcText.Trim(line)), ""));
                continue;
            }
            ReadOnlySpan<byte> key = line[..colon];
            ReadOnlySpan<byte> value = ProcText.Trim(line[(colon + 1)..]);
            switch (key)
            {
                case var _ when key.SequenceEqual("pos"u8):
                    info.Pos = ProcText.ParseInt64(value, K, ln, "pos");
                    hasPos = true;
                    break;
                case var _ when key.SequenceEqual("flags"u8):
                    info.Flags = ProcText.ParseUInt32(value, 8, K, ln, "flags");
                    hasFlags = true;
                    break;
                case var _ when key.SequenceEqual("mnt_id"u8):
                    info.MntId = ProcText.ParseInt32(value, K, ln, "mnt_id");
                    break;
                case var _ when key.SequenceEqual("ino"u8):
                    info.Ino = ProcText.ParseUInt64(value, 10, K, ln, "ino");
                    break;
                case var _ when key.SequenceEqual("eventfd-count"u8):
                    eventCount = ProcText.ParseUInt64(value, 16, K, ln, "eventfd-count");
                    break;
                case var _ when key.SequenceEqual("eventfd-id"u8):
                    eventId = ProcText.ParseInt32(value, K, ln, "eventfd-id");
                    break;
                case var _ when key.SequenceEqual("eventfd-semaphore"u8):
                    eventSemaphore = ProcText.ParseUInt64(value, 10, K, ln, "eventfd-semaphore") != 0;
                    break;
                case var _ when key.SequenceEqual("sigmask"u8):
                    info.SignalMask = ProcText.ParseUInt64(value, 16, K, ln, "sigmask");
                    break;
                case var _ when key.SequenceEqual("clockid"u8):
                    clockId = ProcText.ParseInt32(value, K, ln, "clockid");
                    break;
                case var _ when key.SequenceEqual("ticks"u8):
                    ticks = ProcText.ParseUInt64(value, 10, K, ln, "ticks");
                    break;
                case var _ when key.SequenceEqual("settime flags"u8):
                    settimeFlags = ProcText.ParseUInt32(value, 8, K, ln, "settime flags");
                    break;
                case var _ when key.SequenceEqual("it_value"u8):
                    itValue = ParseTimespec(value, ln, "it_value");
                    break;
                case var _ when key.SequenceEqual("it_interval"u8):
                    itInterval = ParseTimespec(value, ln, "it_interval");
                    break;
                case var _ when key.SequenceEqual("lock"u8):
                    (locks ??= []).Add(ParseLock(value, ln));
                    break;
                case var _ when key.SequenceEqual("Pid"u8):
                    info.PidfdPid = ProcText.ParseInt32(value, K, ln, "Pid");
                    break;
                case var _ when key.SequenceEqual("NSpid"u8):
                {
                    var f = new ProcFields(value, K, ln);
                    var ids = new List<int>();
                    while (f.TryNext(out var t))
                        ids.Add(ProcText.ParseInt32(t, K, ln, "NSpid"));
                    info.PidfdNsPid = ids;
                    break;
                }
                case var _ when key.SequenceEqual("tty-index"u8):
                    info.TtyIndex = ProcText.ParseInt32(value, K, ln, "tty-index");
                    break;
                default:
                    (other ??= []).Add(new(ProcText.Utf8(key), ProcText.Utf8(value)));
                    break;
            }
        }

        if (!hasPos)
            throw new ProcParseException(K, 0, "no pos line");
        if (!hasFlags)
            throw new ProcParseException(K, 0, "no flags line");
        if (eventCount is ulong count)
            info.EventFd = new EventFdInfo(count, eventId, eventSemaphore);
        else if (eventId is not null || eventSemaphore is not null)
            throw new ProcParseException(K, 0, "eventfd-id or eventfd-semaphore without eventfd-count");
        if (clockId is int clock)
        {
            if (itValue is not (long vs, long vns) || itInterval is not (long isec, long ins))
                throw new ProcParseException(K, 0, "timerfd clockid without it_value and it_interval");
            info.TimerFd = new TimerFdInfo(clock, ticks, settimeFlags, vs, vns, isec, ins);
        }
        if (fanotifyGroup is (uint flags, uint eventFlags))
            info.Fanotify = new FanotifyInfo(flags, eventFlags, (IReadOnlyList<FanotifyMark>?)marks ?? []);
        else if (marks is not null)
            throw new ProcParseException(K, 0, "fanotify marks without the fanotify flags line");
        if (epoll is not null) info.EpollTargets = epoll;
        if (inotify is not null) info.InotifyWatches = inotify;
        if (locks is not null) info.Locks = locks;
        if (other is not null) info.Other = other;
        return info;
    }

    private static (long Seconds, long Nanoseconds) ParseTimespec(ReadOnlySpan<byte> value, int line, string what)
    {
        // "(S, NS)"
        if (value.Length < 2 || value[0] != (byte)'(' || value[^1] != (byte)')')
            throw new ProcParseException(K, line, $"{what} is not (seconds, nanoseconds)", value);
        ReadOnlySpan<byte> inner = value[1..^1];
        int comma = inner.IndexOf((byte)',');
        if (comma < 0)
            throw new ProcParseException(K, line, $"{what} is not (seconds, nanoseconds)", value);
        return (ProcText.ParseInt64(ProcText.Trim(inner[..comma]), K, line, what),
            ProcText.ParseInt64(ProcText.Trim(inner[(comma + 1)..]), K, line, what));
    }

    private static InotifyWatch ParseInotify(ReadOnlySpan<byte> line, int ln)
    {
        var p = new TaggedPairs(line["inotify "u8.Length..], ln, line);
        return new InotifyWatch(
            ProcText.ToInt32((long)p.Number("wd"u8, 10), K, ln, "wd"), p.Number("ino"u8, 16), p.U32("sdev"u8),
            p.U32("mask"u8), p.U32("ignored_mask"u8), ParseHandle(p));
    }

    private static FanotifyMark ParseFanotifyMark(TaggedPairs p)
    {
        FanotifyMarkKind kind = p.Has("mnt_id"u8) ? FanotifyMarkKind.Mount
            : p.Has("mnt_ns"u8) ? FanotifyMarkKind.MountNamespace
            : p.Has("ino"u8) ? FanotifyMarkKind.Inode : FanotifyMarkKind.Superblock;
        return new FanotifyMark(kind,
            kind == FanotifyMarkKind.Mount ? ProcText.ToInt32((long)p.Number("mnt_id"u8, 16), K, p.Line, "mnt_id") : null,
            kind == FanotifyMarkKind.MountNamespace ? p.Number("mnt_ns"u8, 10) : null,
            kind == FanotifyMarkKind.Inode ? p.Number("ino"u8, 16) : null,
            kind is FanotifyMarkKind.Inode or FanotifyMarkKind.Superblock ? p.U32("sdev"u8) : null,
            p.U32("mflags"u8), p.Number("mask"u8, 16), p.Number("ignored_mask"u8, 16), ParseHandle(p));
    }

    private static FileHandleInfo? ParseHandle(TaggedPairs p)
    {
        if (!p.Has("fhandle-bytes"u8))
            return null;
        int bytes = ProcText.ToInt32((long)p.Number("fhandle-bytes"u8, 16), K, p.Line, "fhandle-bytes");
        int type = ProcText.ToInt32((long)p.Number("fhandle-type"u8, 16), K, p.Line, "fhandle-type");
        ReadOnlySpan<byte> hex = p.Value("f_handle"u8);
        // MAX_HANDLE_SZ is 128; the kernel prints each byte as two hex digits.
        if (bytes is < 0 or > 128 || hex.Length != bytes * 2)
            throw new ProcParseException(K, p.Line, "f_handle length does not match fhandle-bytes", hex);
        var handle = new byte[bytes];
        for (int i = 0; i < bytes; i++)
            handle[i] = (byte)ProcText.ParseUInt64(hex.Slice(i * 2, 2), 16, K, p.Line, "f_handle");
        return new FileHandleInfo(bytes, type, handle);
    }

    private static FileLockInfo ParseLock(ReadOnlySpan<byte> value, int ln)
    {
        // "1: POSIX  ADVISORY  WRITE 11382 fe:00:11659328 0 EOF"; blocked waiters carry " ->" first.
        var f = new ProcFields(value, K, ln);
        ReadOnlySpan<byte> id = f.Next("lock id");
        if (id.SequenceEqual("->"u8))
            id = f.Next("lock id");
        if (id.Length < 2 || id[^1] != (byte)':')
            throw f.Fail("lock id is not \"N:\"");
        long lockId = ProcText.ParseInt64(id[..^1], K, ln, "lock id");
        string type = ProcText.Utf8(f.Next("lock type"));
        string mode = ProcText.Utf8(f.Next("lock mode"));
        string access = ProcText.Utf8(f.Next("lock access"));
        int pid = f.NextInt32("lock pid");
        ReadOnlySpan<byte> dev = f.Next("lock device");
        int c1 = dev.IndexOf((byte)':');
        int c2 = c1 < 0 ? -1 : dev[(c1 + 1)..].IndexOf((byte)':');
        if (c2 < 0)
            throw f.Fail("lock device is not MAJ:MIN:INODE");
        c2 += c1 + 1;
        uint major = ProcText.ParseUInt32(dev[..c1], 16, K, ln, "lock device major");
        uint minor = ProcText.ParseUInt32(dev[(c1 + 1)..c2], 16, K, ln, "lock device minor");
        ulong inode = ProcText.ParseUInt64(dev[(c2 + 1)..], 10, K, ln, "lock inode");
        long start = f.NextInt64("lock start");
        ReadOnlySpan<byte> endText = f.Next("lock end");
        long? end = endText.SequenceEqual("EOF"u8) ? null : ProcText.ParseInt64(endText, K, ln, "lock end");
        return new FileLockInfo(lockId, type, mode, access, pid, major, minor, inode, start, end);
    }

    /// <summary>
    /// The "key:value key: value" pairs of one epoll, inotify or fanotify line. At most a handful of
    /// pairs, so lookups scan the line.
    /// </summary>
    private readonly ref struct TaggedPairs
    {
        private readonly ReadOnlySpan<byte> _text;
        private readonly ReadOnlySpan<byte> _line;
        public int Line { get; }

        public TaggedPairs(ReadOnlySpan<byte> text, int line, ReadOnlySpan<byte> whole)
        {
            _text = text;
            _line = whole;
            Line = line;
        }

        public bool TryValue(ReadOnlySpan<byte> key, out ReadOnlySpan<byte> value)
        {
            var f = new ProcFields(_text, K, Line);
            while (f.TryNext(out var token))
            {
                int colon = token.IndexOf((byte)':');
                if (colon < 0)
                    continue;
                ReadOnlySpan<byte> v = token[(colon + 1)..];
                if (v.IsEmpty && !f.TryNext(out v))
                    v = default;
                if (token[..colon].SequenceEqual(key))
                {
                    value = v;
                    return true;
                }
            }
            value = default;
            return false;
        }

        public bool Has(ReadOnlySpan<byte> key) => TryValue(key, out _);

        public ReadOnlySpan<byte> Value(ReadOnlySpan<byte> key)
        {
            if (!TryValue(key, out var v) || v.IsEmpty)
                throw new ProcParseException(K, Line, $"missing {System.Text.Encoding.ASCII.GetString(key)}", _line);
            return v;
        }

        public ulong Number(ReadOnlySpan<byte> key, int radix)
            => ProcText.ParseUInt64(Value(key), radix, K, Line, System.Text.Encoding.ASCII.GetString(key));

        public uint U32(ReadOnlySpan<byte> key)
        {
            ulong v = Number(key, 16);
            return v <= uint.MaxValue ? (uint)v
                : throw new ProcParseException(K, Line, $"{System.Text.Encoding.ASCII.GetString(key)} out of range", _line);
        }
    }
}
