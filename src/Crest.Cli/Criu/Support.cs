// Which commands and options Crest implements today. Everything CRIU accepts is parsed, but a
// command or option whose feature does not exist yet must refuse to run, naming itself —
// never be ignored. When an engine part lands, its command moves into Implemented with the
// settings (long option names) it honours; every other option that is on for that command
// is then refused with "option --X is not supported yet".
namespace Crest.Cli.Criu;

internal static class Support
{
    /// <summary>
    /// Settings the command line itself carries out for every command: logging, directories,
    /// configuration files, --close, and --deprecated (Crest has no deprecated features to gate).
    /// </summary>
    public static readonly IReadOnlySet<string> Common = new HashSet<string>
    {
        "verbosity", "log-file", "images-dir", "work-dir", "config", "no-default-config",
        "help", "version", "close", "deprecated",
    };

    /// <summary>CRIU's TLS options (page-server and its clients).</summary>
    private static readonly string[] TlsSettings = ["tls", "tls-cert", "tls-key", "tls-cacert", "tls-cacrl", "tls-no-cn-verify"];

    /// <summary>dump and pre-dump sending their pages to a page server.</summary>
    private static readonly string[] PageServerClient = ["page-server", "address", "port", .. TlsSettings];

    /// <summary>Implemented commands and the settings each honours beyond <see cref="Common"/>.</summary>
    public static readonly IReadOnlyDictionary<string, IReadOnlySet<string>> Implemented = new Dictionary<string, IReadOnlySet<string>>
    {
        ["check"] = new HashSet<string> { "feature", "extra", "experimental", "all" },
        // --pidfile means nothing to CRIU's dump, --pre-dump-mode only to pre-dump: both accepted, as CRIU does. With
        // --lazy-pages, --pre-dump-mode read makes the dump copy the pages it keeps instead of having the tasks splice them.
        // --shell-job: the terminal of the shell that started the tree is recorded as such, and given back as crest's own.
        // --external: file[MNT_ID:INODE], pipe:[INODE] and tty[RDEV:DEV] are honoured; other ids (mnt[], dev[], ...) match nothing, as in
        // CRIU when no such resource is held.
        // --lazy-pages with --port [--address]: private anonymous pages are served to lazy-pages --page-server after the dump.
        // --ext-unix-sk: unix sockets connected to a peer outside the tree are dumped and connected again at restore;
        // restore accepts it too (harnesses pass the dump's options again) and needs nothing from it.
        ["dump"] = new HashSet<string>(["tree", "leave-running", "leave-stopped", "timeout", "pidfile", "pre-dump-mode", "external", "prev-images-dir", "track-mem", "remote", "shell-job", "ext-unix-sk", "lazy-pages", .. PageServerClient]),
        // pre-dump always tracks memory (as CRIU enforces --track-mem for it); the tree keeps running.
        ["pre-dump"] = new HashSet<string>(["tree", "timeout", "pidfile", "pre-dump-mode", "prev-images-dir", "track-mem", "remote", .. PageServerClient]),
        ["restore"] = new HashSet<string> { "restore-detached", "pidfile", "inherit-fd", "remote", "shell-job", "ext-unix-sk", "lazy-pages" },
        // The daemon restore --lazy-pages hands its tasks' userfaultfds to; -d, --status-fd, --pidfile as page-server.
        // --page-server --address A --port P: the pages of PE_LAZY entries come from the dump --lazy-pages that serves them.
        ["lazy-pages"] = new HashSet<string>(["restore-detached", "status-fd", "pidfile", .. PageServerClient]),
        // -d / --daemon (the setting of --restore-detached in CRIU); --prev-images-dir makes the parent link in -D.
        ["page-server"] = new HashSet<string>(["address", "port", "restore-detached", "status-fd", "pidfile", "prev-images-dir", .. TlsSettings]),
        // Daemons as page-server: -d (CRIU's restore-detached setting), --status-fd, --pidfile (RemoteCommands.cs).
        ["image-cache"] = new HashSet<string> { "address", "port", "restore-detached", "status-fd", "pidfile", "cache-limit", "allow-restore", "tls", "tls-cert", "tls-key", "tls-cacert", "tls-no-cn-verify" },
        // Crest's own: pre-dump rounds and the final dump streamed to a destination's image-cache (MigrateCommand.cs).
        ["migrate"] = new HashSet<string> { "tree", "address", "port", "compress", "max-rounds", "json", "timeout", "tls", "tls-cert", "tls-key", "tls-cacert", "tls-no-cn-verify" },
        ["image-proxy"] = new HashSet<string> { "address", "port", "restore-detached", "status-fd", "pidfile", "compress", "tls", "tls-cert", "tls-key", "tls-cacert", "tls-no-cn-verify" },
    };

    /// <summary>Null when Crest can run <paramref name="command"/> with these options; otherwise why not.</summary>
    public static string? Refusal(string command, IReadOnlyCollection<string> settingsInEffect)
    {
        if (!Implemented.TryGetValue(command, out var honoured))
            return $"{command}: not implemented yet";
        foreach (var setting in CriuOptionTable.All.Select(o => o.Setting).Distinct())
        {
            if (settingsInEffect.Contains(setting) && !Common.Contains(setting) && !honoured.Contains(setting))
                return $"{command}: option --{setting} is not supported yet";
        }
        return null;
    }
}
