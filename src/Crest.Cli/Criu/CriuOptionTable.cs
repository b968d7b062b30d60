// CRIU's option table, entry for entry: the long_opts[] array and short_opts string of
// parse_options() in criu/config.c (CRIU 4.x, checked against checkpoint-restore/criu and
// forks tracking 4.1), plus `--remote` from CRIU 3.14, the release that still had the
// image-proxy / image-cache commands Crest keeps. Each boolean option comes with its `no-`
// negation, as CRIU's BOOL_OPT macro makes them. Short forms: "dSsRt:hD:o:v::x::Vr:jJ:lW:L:M:".
using Crest.Cli.Getopt;

namespace Crest.Cli.Criu;

internal static class CriuOptionTable
{
    public static readonly IReadOnlyList<OptionSpec> All = Build();

    private static readonly Dictionary<string, OptionSpec> ByLong = All.ToDictionary(o => o.Long);

    public static OptionSpec Get(string longName) => ByLong[longName];

    private static List<OptionSpec> Build()
    {
        var t = new List<OptionSpec>();
        void Flag(string name, char shortName = OptionSpec.NoShort) => t.Add(new(name, shortName, ArgumentKind.None, name));
        void Bool(string name, char shortName = OptionSpec.NoShort)
        {
            t.Add(new(name, shortName, ArgumentKind.None, name));
            t.Add(new("no-" + name, OptionSpec.NoShort, ArgumentKind.None, name, Negated: true));
        }
        void Required(string name, char shortName = OptionSpec.NoShort) => t.Add(new(name, shortName, ArgumentKind.Required, name));
        void Optional(string name, char shortName = OptionSpec.NoShort) => t.Add(new(name, shortName, ArgumentKind.Optional, name));

        Required("tree", 't');
        Flag("leave-stopped", 's');
        Flag("leave-running", 'R');
        Bool("restore-detached", 'd');
        Bool("restore-sibling", 'S');
        // --daemon sets the same variable as --restore-detached in CRIU.
        t.Add(new("daemon", OptionSpec.NoShort, ArgumentKind.None, "restore-detached"));
        t.Add(new("no-daemon", OptionSpec.NoShort, ArgumentKind.None, "restore-detached", Negated: true));
        Required("images-dir", 'D');
        Required("work-dir", 'W');
        Required("log-file", 'o');
        Required("join-ns", 'J');
        Required("root", 'r');
        Optional("ext-unix-sk", 'x');
        Flag("help", 'h');
        Bool("tcp-established");
        Required("close");
        Bool("log-pid");
        Flag("version", 'V');
        Bool("evasive-devices");
        Required("pidfile");
        Required("veth-pair");
        Required("action-script");
        Bool("link-remap");
        Bool("shell-job", 'j');
        Bool("file-locks", 'l');
        Bool("page-server");
        Required("address");
        Required("port");
        Required("prev-images-dir");
        Flag("ms");
        Bool("track-mem");
        Bool("auto-dedup");
        Required("libdir", 'L');
        Optional("cpu-cap");
        Bool("force-irmap");
        Required("ext-mount-map", 'M');
        Flag("exec-cmd");
        Optional("manage-cgroups");
        Required("cgroup-root");
        Required("inherit-fd");
        Required("feature");
        Required("skip-mnt");
        Required("enable-fs");
        Flag("enable-external-sharing");
        Flag("enable-external-masters");
        Required("freeze-cgroup");
        Required("ghost-limit");
        Required("irmap-scan-path");
        Required("lsm-profile");
        Required("timeout");
        Required("external");
        Required("empty-ns");
        Flag("lazy-pages");
        Bool("extra");
        Bool("experimental");
        Flag("all");
        Required("cgroup-props");
        Required("cgroup-props-file");
        Required("cgroup-dump-controller");
        Bool("skip-in-flight");
        Bool("deprecated");
        Bool("display-stats");
        Bool("weak-sysctls");
        Required("status-fd");
        Bool("tcp-close");
        t.Add(new("verbosity", 'v', ArgumentKind.Optional, "verbosity", SeparateNumber: true));
        Required("ps-socket");
        Bool("stream");
        Required("config");
        Flag("no-default-config");
        Required("tls-cacert");
        Required("tls-cacrl");
        Required("tls-cert");
        Required("tls-key");
        Bool("tls");
        Flag("tls-no-cn-verify");
        Required("cgroup-yard");
        Required("pre-dump-mode");
        Required("file-validation");
        Bool("skip-file-rwx-check");
        Required("lsm-mount-context");
        Required("network-lock");
        Bool("mntns-compat-mode");
        Bool("unprivileged");
        Bool("ghost-fiemap");
        Bool("allow-uprobes");
        Bool("remote");
        // Crest's own, for the image-proxy / image-cache daemons: page data compression on the network, and how
        // much the cache may hold in memory.
        Required("compress");
        Required("cache-limit");
        // crest migrate: how many pre-dump rounds at most, a JSON summary on stdout; image-cache --allow-restore lets
        // a migrate ask the destination to restore what it sent.
        Required("max-rounds");
        Flag("json");
        Flag("allow-restore");
        return t;
    }
}
