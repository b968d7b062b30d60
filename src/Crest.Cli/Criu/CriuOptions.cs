// What a CRIU command line asks for, built by applying the getopt occurrences in order with
// the value rules of CRIU's parse_options(): atoi for numbers, last one wins for scalars, lists
// accumulate, `--no-X` undoes `--X`. Values CRIU rejects are rejected here with CRIU's words.
using Crest.Cli.Getopt;
using Crest.Diagnostics;

namespace Crest.Cli.Criu;

internal enum FinalState { Dead, Stopped, Alive }

internal enum CgroupMode { Default, None, Props, Soft, Full, Strict, Ignore }

internal sealed class CriuOptions
{
    /// <summary>CRIU's DEFAULT_LOGLEVEL: warnings.</summary>
    public const int DefaultLogLevel = 2;
    /// <summary>CRIU's DEFAULT_TIMEOUT in seconds.</summary>
    public const int DefaultTimeout = 10;
    /// <summary>CRIU's DEFAULT_GHOST_LIMIT: 1 MiB.</summary>
    public const long DefaultGhostLimit = 1 << 20;

    private readonly Dictionary<string, List<string>> _values = new();
    private readonly HashSet<string> _inEffect = new();

    public int Tree { get; private set; }
    public int LogLevel { get; private set; } = DefaultLogLevel;
    public FinalState FinalState { get; private set; } = FinalState.Dead;
    public CgroupMode ManageCgroups { get; private set; } = CgroupMode.Default;
    public int Port { get; private set; }
    public int StatusFd { get; private set; } = -1;
    public int PsSocket { get; private set; } = -1;
    public Crest.Transport.Streams.Codec? Compression { get; private set; }
    public long? CacheLimit { get; private set; }
    public int? MaxRounds { get; private set; }
    public int Timeout { get; private set; } = DefaultTimeout;
    public long GhostLimit { get; private set; } = DefaultGhostLimit;
    public bool PreDumpRead { get; private set; }
    public bool HasExecCmd { get; private set; }
    public bool CheckExtra => IsOn("extra");
    public bool CheckExperimental => IsOn("experimental");
    public bool Help => IsOn("help");
    public bool Version => IsOn("version");

    public string? ImagesDir => Last("images-dir");
    public string? WorkDir => Last("work-dir");
    public string? LogFile => Last("log-file");
    public string? PidFile => Last("pidfile");
    public string? PrevImagesDir => Last("prev-images-dir");
    public IReadOnlyList<string> Features => Values("feature");
    public IReadOnlyList<int> CloseFds { get; private set; } = [];
    /// <summary>--external ids, in order (CRIU compares them as text with the ids it makes: file[MNT_ID:INODE], pipe:[INODE]).</summary>
    public IReadOnlyList<string> External => Values("external");
    /// <summary>
    /// --ext-unix-sk: unix sockets connected outside the tree that a dump may take. Bare, it allows all of them; with
    /// inodes (<c>--ext-unix-sk=INO[,INO]</c>, repeatable) only those sockets (or peers). Off after --no-ext-unix-sk.
    /// </summary>
    public Crest.Engine.Files.UnixSocketPolicy ExternalUnixSockets =>
        IsOn("ext-unix-sk") ? new(_extUnixSkAll, _extUnixSkIds) : Crest.Engine.Files.UnixSocketPolicy.None;
    private bool _extUnixSkAll;
    private readonly HashSet<uint> _extUnixSkIds = [];
    /// <summary>--inherit-fd fd[N]:RESOURCE, parsed, in order (for one resource the last one wins).</summary>
    public IReadOnlyList<Crest.Engine.Restore.InheritedFd> InheritFds { get; private set; } = [];

    /// <summary>The log level for <see cref="Log.Level"/>: CRIU's level clamped to Crest's 0..4.</summary>
    public LogLevel EffectiveLogLevel => (LogLevel)Math.Clamp(LogLevel, 0, 4);

    /// <summary>Settings (long option names, negations folded in) that are on after the whole command line.</summary>
    public IReadOnlyCollection<string> InEffect => _inEffect;

    public bool IsOn(string setting) => _inEffect.Contains(setting);

    /// <summary>Every value given for a setting, in order.</summary>
    public IReadOnlyList<string> Values(string setting) => _values.TryGetValue(setting, out var v) ? v : [];

    /// <summary>The last value given for a setting (CRIU's SET_CHAR_OPTS keeps the last).</summary>
    public string? Last(string setting) => _values.TryGetValue(setting, out var v) && v.Count > 0 ? v[^1] : null;

    public static CriuOptions From(IEnumerable<OptionOccurrence> occurrences)
    {
        var options = new CriuOptions();
        foreach (var occurrence in occurrences) options.Apply(occurrence);
        return options;
    }

    /// <summary>
    /// Only the values, none of CRIU's checks: where the log goes when the command line itself
    /// is wrong (the log must exist after every call).
    /// </summary>
    public static CriuOptions Unchecked(IEnumerable<OptionOccurrence> occurrences)
    {
        var options = new CriuOptions();
        foreach (var occurrence in occurrences) options.Record(occurrence);
        return options;
    }

    /// <summary>Takes one more occurrence into account; throws <see cref="UsageException"/> on a value CRIU rejects.</summary>
    public void Apply(OptionOccurrence o)
    {
        Record(o);
        if (!o.Spec.Negated) Interpret(o);
    }

    private void Record(OptionOccurrence o)
    {
        var spec = o.Spec;
        if (spec.Negated)
        {
            _inEffect.Remove(spec.Setting);
            return;
        }
        _inEffect.Add(spec.Setting);
        if (o.Value is { } value)
        {
            if (!_values.TryGetValue(spec.Setting, out var list)) _values[spec.Setting] = list = [];
            list.Add(value);
        }
    }

    private void Interpret(OptionOccurrence o)
    {
        var spec = o.Spec;
        string v = o.Value ?? "";
        switch (spec.Setting)
        {
            case "tree":
                Tree = CLibParse.Atoi(v);
                if (Tree <= 0) throw BadArgument(o);
                break;
            case "leave-stopped": FinalState = FinalState.Stopped; break;
            case "leave-running": FinalState = FinalState.Alive; break;
            case "verbosity":
                if (o.Value is null) LogLevel++;
                else if (v.StartsWith('v')) LogLevel += v.Length + 1; // -vvvv: getopt hands "vvv" to -v
                else LogLevel = CLibParse.Atoi(v);
                break;
            case "ext-unix-sk":
                if (o.Value is null) _extUnixSkAll = true;
                else _extUnixSkIds.UnionWith(ParseUnixSocketIds(v));
                break;
            case "join-ns":
                if (!v.Contains(':')) throw BadArgument(o);
                break;
            case "veth-pair":
                if (!v.Contains('=')) throw BadArgument(o);
                break;
            case "ext-mount-map":
                if (v != "auto" && !v.Contains(':')) throw BadArgument(o);
                break;
            case "close":
                CloseFds = [.. CloseFds, CLibParse.Atoi(v)];
                break;
            case "port":
                Port = CLibParse.Atoi(v);
                if (Port == 0) throw BadArgument(o);
                break;
            case "ms":
                throw new UsageException("--ms is deprecated; see \"Check options\" of crest --help");
            case "cpu-cap":
                if (o.Value is not null) ValidateCpuCap(v);
                break;
            case "exec-cmd": HasExecCmd = true; break;
            case "manage-cgroups":
                ManageCgroups = o.Value is null ? CgroupMode.Soft : v switch
                {
                    "none" => CgroupMode.None,
                    "props" => CgroupMode.Props,
                    "soft" => CgroupMode.Soft,
                    "full" => CgroupMode.Full,
                    "strict" => CgroupMode.Strict,
                    "ignore" => CgroupMode.Ignore,
                    _ => throw new UsageException($"Unknown cgroups mode `{v}' selected"),
                };
                break;
            case "ghost-limit": GhostLimit = ParseSize(v); break;
            case "timeout": Timeout = CLibParse.Atoi(v); break;
            case "empty-ns":
                if (v != "net") throw new UsageException($"Unsupported empty namespace: {v}");
                break;
            case "all":
                _inEffect.Add("extra");
                _inEffect.Add("experimental");
                break;
            case "status-fd":
                if (!CLibParse.TryScanInt(v, out int fd)) throw new UsageException("Unable to parse a value of --status-fd");
                StatusFd = fd;
                break;
            case "ps-socket": PsSocket = CLibParse.Atoi(v); break;
            case "compress":
                Compression = Crest.Transport.Streams.Codecs.Parse(v) ?? throw new UsageException($"Unknown compression {v} (none, lz4 or zstd)");
                break;
            case "cache-limit":
                CacheLimit = ParseSize(v);
                if (CacheLimit <= 0) throw BadArgument(o);
                break;
            case "max-rounds":
                if (!CLibParse.TryScanInt(v, out int rounds) || rounds < 1) throw BadArgument(o);
                MaxRounds = rounds;
                break;
            case "pre-dump-mode":
                PreDumpRead = v switch
                {
                    "read" => true,
                    "splice" => false,
                    _ => throw new UsageException("Unable to parse value of --pre-dump-mode"),
                };
                break;
            case "file-validation":
                if (v is not ("filesize" or "buildid")) throw new UsageException($"Unknown file validation method `{v}' selected");
                break;
            case "inherit-fd":
                // CRIU's inherit_fd_parse(): fd[N]:RESOURCE, N >= 0, RESOURCE everything after the first ':'.
                InheritFds = [.. InheritFds, Crest.Engine.Restore.InheritedFd.Parse(v) ?? throw new UsageException($"Invalid inherit fd argument: {v}")];
                break;
            case "network-lock":
                if (v is not ("iptables" or "nftables")) throw new UsageException($"Invalid value for --network-lock: {v}");
                break;
        }
    }

    private static UsageException BadArgument(OptionOccurrence o) =>
        new(o.Short ? $"invalid argument for -{o.Spec.Short}: {o.Value}" : $"invalid argument for --{o.Spec.Long}: {o.Value}");

    /// <summary>CRIU's parse_size: a K, M or G anywhere scales the leading number.</summary>
    private static long ParseSize(string v)
    {
        long n = CLibParse.Atol(v);
        if (v.Contains('K')) return n << 10;
        if (v.Contains('M')) return n << 20;
        if (v.Contains('G')) return n << 30;
        return n;
    }

    /// <summary>`--ext-unix-sk=ino[,ino...]`: decimal socket inode numbers.</summary>
    private static IEnumerable<uint> ParseUnixSocketIds(string v)
    {
        var ids = new List<uint>();
        foreach (string id in v.Split(','))
        {
            if (id.Length == 0 || !id.All(char.IsAsciiDigit)
                || !uint.TryParse(id, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out uint inode))
                throw new UsageException($"Failed to parse unix socket inode from optarg: {v}");
            ids.Add(inode);
        }
        return ids;
    }

    /// <summary>`--cpu-cap=[^]cap[,cap...]` with cap one of fpu, all, none, cpu, ins.</summary>
    private static void ValidateCpuCap(string v)
    {
        ReadOnlySpan<char> rest = v;
        while (!rest.IsEmpty)
        {
            if (rest[0] is '^' or ',') { rest = rest[1..]; continue; }
            int length = rest.StartsWith("none") ? 4
                : rest.StartsWith("fpu") || rest.StartsWith("all") || rest.StartsWith("cpu") || rest.StartsWith("ins") ? 3
                : 0;
            if (length == 0) throw new UsageException($"Unknown FPU mode `{rest}' selected");
            rest = rest[length..];
        }
    }
}
