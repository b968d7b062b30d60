// The table of CRIU image kinds: magics (criu/include/magic.h, crit's pycriu/images/magic.py), file names
// (criu/image-desc.c) and entry messages (crit's pycriu/images/images.py handlers).
// Kinds that share a magic in CRIU (pagemap and pagemap-shmem, signal-s and signal-p, stats-dump and
// stats-restore) share it here too:
// ByMagic and ByName answer with the first of them, ForFileName tells them apart.
using Crest.Images.Protos;
using Google.Protobuf.Reflection;

namespace Crest.Images;

public static class ImageKinds
{
    /// <summary>First magic of every image except inventory and the service files.</summary>
    public const uint CommonMagic = 0x54564319;

    /// <summary>First magic of the service files (stats-dump, stats-restore, irmap-cache).</summary>
    public const uint ServiceMagic = 0x55105940;

    // Process tree and per-task state.
    public static readonly ImageKind Inventory = new("INVENTORY", 0x58313116, MagicPrefix.None, nameof(InventoryEntry), () => InventoryEntry.Descriptor, null, null, null, "inventory.img");
    public static readonly ImageKind Pstree = Common("PSTREE", 0x50273030, nameof(PstreeEntry), () => PstreeEntry.Descriptor, "pstree.img");
    public static readonly ImageKind Core = Common("CORE", 0x55053847, nameof(CoreEntry), () => CoreEntry.Descriptor, "core-{id}.img");
    public static readonly ImageKind Ids = Common("IDS", 0x54432030, nameof(TaskKobjIdsEntry), () => TaskKobjIdsEntry.Descriptor, "ids-{id}.img");
    public static readonly ImageKind Creds = Common("CREDS", 0x54023547, nameof(CredsEntry), () => CredsEntry.Descriptor, "creds-{id}.img");
    public static readonly ImageKind Fs = Common("FS", 0x51403912, nameof(FsEntry), () => FsEntry.Descriptor, "fs-{id}.img");
    public static readonly ImageKind Sigacts = Common("SIGACT", 0x55344201, nameof(SaEntry), () => SaEntry.Descriptor, "sigacts-{id}.img");
    public static readonly ImageKind Itimers = Common("ITIMERS", 0x57464056, nameof(ItimerEntry), () => ItimerEntry.Descriptor, "itimers-{id}.img");
    public static readonly ImageKind PosixTimers = Common("POSIX_TIMERS", 0x52603957, nameof(PosixTimerEntry), () => PosixTimerEntry.Descriptor, "posix-timers-{id}.img");
    public static readonly ImageKind Rlimit = Common("RLIMIT", 0x57113925, nameof(RlimitEntry), () => RlimitEntry.Descriptor, "rlimit-{id}.img");
    public static readonly ImageKind Signal = Common("SIGNAL", 0x59255647, nameof(SiginfoEntry), () => SiginfoEntry.Descriptor, "signal-s-{id}.img");
    public static readonly ImageKind Psignal = Common("SIGNAL", 0x59255647, nameof(SiginfoEntry), () => SiginfoEntry.Descriptor, "signal-p-{id}.img");
    public static readonly ImageKind Seccomp = Common("SECCOMP", 0x64413049, nameof(SeccompEntry), () => SeccompEntry.Descriptor, "seccomp.img");

    // Memory.
    public static readonly ImageKind Mm = Common("MM", 0x57492820, nameof(MmEntry), () => MmEntry.Descriptor, "mm-{id}.img");
    public static readonly ImageKind Vmas = Common("VMAS", 0x54123737, nameof(VmaEntry), () => VmaEntry.Descriptor, "vmas-{id}.img");
    public static readonly ImageKind Pagemap = new("PAGEMAP", 0x56084025, MagicPrefix.Common, nameof(PagemapEntry), () => PagemapEntry.Descriptor, nameof(PagemapHead), () => PagemapHead.Descriptor, null, "pagemap-{id}.img");
    public static readonly ImageKind ShmemPagemap = new("PAGEMAP", 0x56084025, MagicPrefix.Common, nameof(PagemapEntry), () => PagemapEntry.Descriptor, nameof(PagemapHead), () => PagemapHead.Descriptor, null, "pagemap-shmem-{id}.img");
    public static readonly ImageKind Pages = Raw("PAGES", "pages-{id}.img");
    public static readonly ImageKind MemfdInode = Common("MEMFD_INODE", 0x48453499, nameof(MemfdInodeEntry), () => MemfdInodeEntry.Descriptor, "memfd.img");

    // Files and descriptors.
    public static readonly ImageKind Fdinfo = Common("FDINFO", 0x56213732, nameof(FdinfoEntry), () => FdinfoEntry.Descriptor, "fdinfo-{id}.img");
    public static readonly ImageKind Files = Common("FILES", 0x56303138, nameof(FileEntry), () => FileEntry.Descriptor, "files.img");
    public static readonly ImageKind RegFiles = Common("REG_FILES", 0x50363636, nameof(RegFileEntry), () => RegFileEntry.Descriptor, "reg-files.img");
    public static readonly ImageKind ExtFiles = Common("EXT_FILES", 0x59255641, nameof(ExtFileEntry), () => ExtFileEntry.Descriptor, "ext-files.img");
    public static readonly ImageKind NsFiles = Common("NS_FILES", 0x61394011, nameof(NsFileEntry), () => NsFileEntry.Descriptor, "ns-files.img");
    public static readonly ImageKind RemapFpath = Common("REMAP_FPATH", 0x59133954, nameof(RemapFilePathEntry), () => RemapFilePathEntry.Descriptor, "remap-fpath.img");
    public static readonly ImageKind GhostFile = Common("GHOST_FILE", 0x52583605, nameof(GhostFileEntry), () => GhostFileEntry.Descriptor, "ghost-file-{hexid}.img") with { HasIrregularLayout = true };
    public static readonly ImageKind Pipes = Common("PIPES", 0x56513555, nameof(PipeEntry), () => PipeEntry.Descriptor, "pipes.img");
    public static readonly ImageKind PipesData = new("PIPES_DATA", 0x56453709, MagicPrefix.Common, nameof(PipeDataEntry), () => PipeDataEntry.Descriptor, null, null, "bytes", "pipes-data.img");
    public static readonly ImageKind Fifo = Common("FIFO", 0x58364939, nameof(FifoEntry), () => FifoEntry.Descriptor, "fifo.img");
    public static readonly ImageKind FifoData = new("FIFO_DATA", 0x59333054, MagicPrefix.Common, nameof(PipeDataEntry), () => PipeDataEntry.Descriptor, null, null, "bytes", "fifo-data.img");
    public static readonly ImageKind EventfdFile = Common("EVENTFD_FILE", 0x44523722, nameof(EventfdFileEntry), () => EventfdFileEntry.Descriptor, "eventfd.img");
    public static readonly ImageKind EventpollFile = Common("EVENTPOLL_FILE", 0x45023858, nameof(EventpollFileEntry), () => EventpollFileEntry.Descriptor, "eventpoll.img");
    public static readonly ImageKind EventpollTfd = Common("EVENTPOLL_TFD", 0x44433746, nameof(EventpollTfdEntry), () => EventpollTfdEntry.Descriptor, "eventpoll-tfd.img");
    public static readonly ImageKind Signalfd = Common("SIGNALFD", 0x57323820, nameof(SignalfdEntry), () => SignalfdEntry.Descriptor, "signalfd.img");
    public static readonly ImageKind Timerfd = Common("TIMERFD", 0x50493712, nameof(TimerfdEntry), () => TimerfdEntry.Descriptor, "timerfd.img");
    public static readonly ImageKind InotifyFile = Common("INOTIFY_FILE", 0x48424431, nameof(InotifyFileEntry), () => InotifyFileEntry.Descriptor, "inotify.img");
    public static readonly ImageKind InotifyWd = Common("INOTIFY_WD", 0x54562009, nameof(InotifyWdEntry), () => InotifyWdEntry.Descriptor, "inotify-wd.img");
    public static readonly ImageKind FanotifyFile = Common("FANOTIFY_FILE", 0x55096122, nameof(FanotifyFileEntry), () => FanotifyFileEntry.Descriptor, "fanotify.img");
    public static readonly ImageKind FanotifyMark = Common("FANOTIFY_MARK", 0x56506035, nameof(FanotifyMarkEntry), () => FanotifyMarkEntry.Descriptor, "fanotify-mark.img");
    public static readonly ImageKind TtyFiles = Common("TTY_FILES", 0x59433025, nameof(TtyFileEntry), () => TtyFileEntry.Descriptor, "tty.img");
    public static readonly ImageKind TtyInfo = Common("TTY_INFO", 0x59453036, nameof(TtyInfoEntry), () => TtyInfoEntry.Descriptor, "tty-info.img");
    public static readonly ImageKind TtyData = Common("TTY_DATA", 0x59413026, nameof(TtyDataEntry), () => TtyDataEntry.Descriptor, "tty-data.img");
    public static readonly ImageKind FileLocks = Common("FILE_LOCKS", 0x54323616, nameof(FileLockEntry), () => FileLockEntry.Descriptor, "filelocks.img");
    public static readonly ImageKind Tunfile = Common("TUNFILE", 0x57143751, nameof(TunfileEntry), () => TunfileEntry.Descriptor, "tunfile.img");
    public static readonly ImageKind BpfmapFile = Common("BPFMAP_FILE", 0x57506142, nameof(BpfmapFileEntry), () => BpfmapFileEntry.Descriptor, "bpfmap-file.img");
    public static readonly ImageKind BpfmapData = new("BPFMAP_DATA", 0x64324033, MagicPrefix.Common, nameof(BpfmapDataEntry), () => BpfmapDataEntry.Descriptor, null, null, "keys_bytes", "bpfmap-data.img")
    { ExtraPayloadFields = ["keys_bytes", "values_bytes"] };

    // Sockets.
    public static readonly ImageKind Unixsk = Common("UNIXSK", 0x54373943, nameof(UnixSkEntry), () => UnixSkEntry.Descriptor, "unixsk.img");
    public static readonly ImageKind Inetsk = Common("INETSK", 0x56443851, nameof(InetSkEntry), () => InetSkEntry.Descriptor, "inetsk.img");
    public static readonly ImageKind Packetsk = Common("PACKETSK", 0x60454618, nameof(PacketSockEntry), () => PacketSockEntry.Descriptor, "packetsk.img");
    public static readonly ImageKind NetlinkSk = Common("NETLINK_SK", 0x58005614, nameof(NetlinkSkEntry), () => NetlinkSkEntry.Descriptor, "netlinksk.img");
    public static readonly ImageKind SkQueues = new("SK_QUEUES", 0x56264026, MagicPrefix.Common, nameof(SkPacketEntry), () => SkPacketEntry.Descriptor, null, null, "length", "sk-queues.img");
    public static readonly ImageKind TcpStream = new("TCP_STREAM", 0x51465506, MagicPrefix.Common, nameof(TcpStreamEntry), () => TcpStreamEntry.Descriptor, null, null, "inq_len", "tcp-stream-{hexid}.img")
    { ExtraPayloadFields = ["inq_len", "outq_len"] };

    // Namespaces, mounts, network, cgroups, IPC.
    public static readonly ImageKind Utsns = Common("UTSNS", 0x54473203, nameof(UtsnsEntry), () => UtsnsEntry.Descriptor, "utsns-{id}.img");
    public static readonly ImageKind Timens = Common("TIMENS", 0x43114433, nameof(TimensEntry), () => TimensEntry.Descriptor, "timens-{id}.img");
    public static readonly ImageKind Pidns = Common("PIDNS", 0x61157326, nameof(PidnsEntry), () => PidnsEntry.Descriptor, "pidns-{id}.img");
    public static readonly ImageKind Userns = Common("USERNS", 0x55474906, nameof(UsernsEntry), () => UsernsEntry.Descriptor, "userns-{id}.img");
    public static readonly ImageKind Netns = Common("NETNS", 0x55933752, nameof(NetnsEntry), () => NetnsEntry.Descriptor, "netns-{id}.img");
    public static readonly ImageKind Netdev = Common("NETDEV", 0x57373951, nameof(NetDeviceEntry), () => NetDeviceEntry.Descriptor, "netdev-{id}.img");
    public static readonly ImageKind Mnts = Common("MNTS", 0x55563928, nameof(MntEntry), () => MntEntry.Descriptor, "mountpoints-{id}.img");
    public static readonly ImageKind Cgroup = Common("CGROUP", 0x59383330, nameof(CgroupEntry), () => CgroupEntry.Descriptor, "cgroup.img");
    public static readonly ImageKind IpcVar = Common("IPC_VAR", 0x53115007, nameof(IpcVarEntry), () => IpcVarEntry.Descriptor, "ipcns-var-{id}.img");
    public static readonly ImageKind IpcnsShm = Common("IPCNS_SHM", 0x46283044, nameof(IpcShmEntry), () => IpcShmEntry.Descriptor, "ipcns-shm-{id}.img") with { HasIrregularLayout = true };
    public static readonly ImageKind IpcnsMsg = Common("IPCNS_MSG", 0x55453737, nameof(IpcMsgEntry), () => IpcMsgEntry.Descriptor, "ipcns-msg-{id}.img") with { HasIrregularLayout = true };
    public static readonly ImageKind IpcnsSem = Common("IPCNS_SEM", 0x59573019, nameof(IpcSemEntry), () => IpcSemEntry.Descriptor, "ipcns-sem-{id}.img") with { HasIrregularLayout = true };
    public static readonly ImageKind Autofs = Common("AUTOFS", 0x49353943, nameof(AutofsEntry), () => AutofsEntry.Descriptor, "autofs-{id}.img");
    public static readonly ImageKind BinfmtMisc = Common("BINFMT_MISC", 0x67343323, nameof(BinfmtMiscEntry), () => BinfmtMiscEntry.Descriptor, "binfmt-misc.img");
    public static readonly ImageKind Apparmor = Common("APPARMOR", 0x59423047, nameof(ApparmorEntry), () => ApparmorEntry.Descriptor, "apparmor.img");
    public static readonly ImageKind Cpuinfo = Common("CPUINFO", 0x61404013, nameof(CpuinfoEntry), () => CpuinfoEntry.Descriptor, "cpuinfo.img");

    // Raw data written by other tools (ip, iptables, tar) or by CRIU without framing.
    public static readonly ImageKind Ifaddr = Raw("IFADDR", "ifaddr-{id}.img");
    public static readonly ImageKind Route = Raw("ROUTE", "route-{id}.img");
    public static readonly ImageKind Route6 = Raw("ROUTE6", "route6-{id}.img");
    public static readonly ImageKind Rule = Raw("RULE", "rule-{id}.img");
    public static readonly ImageKind Iptables = Raw("IPTABLES", "iptables-{id}.img");
    public static readonly ImageKind Ip6tables = Raw("IP6TABLES", "ip6tables-{id}.img");
    public static readonly ImageKind Nftables = Raw("NFTABLES", "nftables-{id}.img");
    public static readonly ImageKind NetnfCt = Raw("NETNF_CT", "netns-ct-{id}.img");
    public static readonly ImageKind NetnfExp = Raw("NETNF_EXP", "netns-exp-{id}.img");
    public static readonly ImageKind TmpfsImg = Raw("TMPFS_IMG", "tmpfs-{id}.tar.gz.img");
    public static readonly ImageKind TmpfsDev = Raw("TMPFS_DEV", "tmpfs-dev-{id}.tar.gz.img");

    // Service files: not part of the restore state, written with the service prefix.
    public static readonly ImageKind Stats = new("STATS", 0x57093306, MagicPrefix.Service, nameof(StatsEntry), () => StatsEntry.Descriptor, null, null, null, "stats-dump.img");
    public static readonly ImageKind StatsRestore = new("STATS", 0x57093306, MagicPrefix.Service, nameof(StatsEntry), () => StatsEntry.Descriptor, null, null, null, "stats-restore.img");
    public static readonly ImageKind IrmapCache = new("IRMAP_CACHE", 0x57004059, MagicPrefix.Service, nameof(IrmapCacheEntry), () => IrmapCacheEntry.Descriptor, null, null, null, "irmap-cache.img");

    /// <summary>Every kind, primary kinds before their same-magic aliases.</summary>
    public static IReadOnlyList<ImageKind> All { get; } =
    [
        Inventory, Pstree, Core, Ids, Creds, Fs, Sigacts, Itimers, PosixTimers, Rlimit, Signal, Psignal, Seccomp,
        Mm, Vmas, Pagemap, ShmemPagemap, Pages, MemfdInode,
        Fdinfo, Files, RegFiles, ExtFiles, NsFiles, RemapFpath, GhostFile, Pipes, PipesData, Fifo, FifoData,
        EventfdFile, EventpollFile, EventpollTfd, Signalfd, Timerfd, InotifyFile, InotifyWd, FanotifyFile,
        FanotifyMark, TtyFiles, TtyInfo, TtyData, FileLocks, Tunfile, BpfmapFile, BpfmapData,
        Unixsk, Inetsk, Packetsk, NetlinkSk, SkQueues, TcpStream,
        Utsns, Timens, Pidns, Userns, Netns, Netdev, Mnts, Cgroup, IpcVar, IpcnsShm, IpcnsMsg, IpcnsSem, Autofs,
        BinfmtMisc, Apparmor, Cpuinfo,
        Ifaddr, Route, Route6, Rule, Iptables, Ip6tables, Nftables, NetnfCt, NetnfExp, TmpfsImg, TmpfsDev,
        Stats, StatsRestore, IrmapCache,
    ];

    private static readonly Dictionary<uint, ImageKind> s_byMagic = IndexByMagic();
    private static readonly Dictionary<string, ImageKind> s_byName = IndexByName();

    /// <summary>The kind whose own magic is <paramref name="magic"/> (the second u32 of a prefixed image);
    /// null for unknown magics and for 0, which raw images would share.</summary>
    public static ImageKind? ByMagic(uint magic) => s_byMagic.GetValueOrDefault(magic);

    /// <summary>The kind crit calls <paramref name="name"/> ("CORE", "PIPES_DATA"); case-sensitive.</summary>
    public static ImageKind? ByName(string name) => s_byName.GetValueOrDefault(name);

    /// <summary>The kind of an image file by its name: "core-42.img" is Core, "pages-1.img" is Pages,
    /// "pagemap-shmem-7.img" is ShmemPagemap. Directory parts are ignored. Null when nothing matches.</summary>
    public static ImageKind? ForFileName(string fileName)
    {
        ArgumentNullException.ThrowIfNull(fileName);
        string name = Path.GetFileName(fileName);
        foreach (ImageKind kind in All)
        {
            if (MatchesPattern(kind.FileNamePattern, name))
                return kind;
        }
        return null;
    }

    /// <summary>The file name of an image of <paramref name="kind"/> for the object id
    /// <paramref name="id"/> (a pid, a namespace id, a pagemap id). Patterns without a number ignore it.</summary>
    public static string FileName(ImageKind kind, ulong id = 0)
    {
        ArgumentNullException.ThrowIfNull(kind);
        return kind.FileNamePattern
            .Replace("{id}", id.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal)
            .Replace("{hexid}", id.ToString("x", System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
    }

    private static ImageKind Common(string name, uint magic, string entryName, Func<MessageDescriptor> entry, string pattern) =>
        new(name, magic, MagicPrefix.Common, entryName, entry, null, null, null, pattern);

    /// <summary>A kind without a named entry message: checked against its descriptor (slower, see ImageKind).</summary>
    private static ImageKind Common(string name, uint magic, Func<MessageDescriptor> entry, string pattern) =>
        new(name, magic, MagicPrefix.Common, entry, null, null, pattern);

    private static ImageKind Raw(string name, string pattern) =>
        new(name, 0, MagicPrefix.Raw, null, null, null, pattern);

    private static Dictionary<uint, ImageKind> IndexByMagic()
    {
        var index = new Dictionary<uint, ImageKind>();
        foreach (ImageKind kind in All)
        {
            if (!kind.IsRaw)
                index.TryAdd(kind.Magic, kind);
        }
        return index;
    }

    private static Dictionary<string, ImageKind> IndexByName()
    {
        var index = new Dictionary<string, ImageKind>(StringComparer.Ordinal);
        foreach (ImageKind kind in All)
            index.TryAdd(kind.Name, kind);
        return index;
    }

    // A pattern is literal text with at most one placeholder: {id} (decimal digits) or {hexid} (hex
    // digits). Literal text must match exactly.
    private static bool MatchesPattern(string pattern, string fileName)
    {
        int open = pattern.IndexOf('{', StringComparison.Ordinal);
        if (open < 0)
            return string.Equals(pattern, fileName, StringComparison.Ordinal);

        int close = pattern.IndexOf('}', open);
        string prefix = pattern[..open];
        string placeholder = pattern[(open + 1)..close];
        string suffix = pattern[(close + 1)..];
        if (fileName.Length <= prefix.Length + suffix.Length
            || !fileName.StartsWith(prefix, StringComparison.Ordinal)
            || !fileName.EndsWith(suffix, StringComparison.Ordinal))
            return false;

        ReadOnlySpan<char> middle = fileName.AsSpan(prefix.Length, fileName.Length - prefix.Length - suffix.Length);
        foreach (char c in middle)
        {
            bool ok = placeholder == "hexid" ? char.IsAsciiHexDigit(c) : char.IsAsciiDigit(c);
            if (!ok)
                return false;
        }
        return true;
    }
}
