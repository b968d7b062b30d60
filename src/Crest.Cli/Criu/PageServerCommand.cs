// `crest page-server -D DIR --port P [--address A] [-d] [--status-fd N] [--pidfile F] [--tls ...]`: CRIU's
// page server. It listens, says it is ready (--pidfile with its pid, then one '\0' byte on --status-fd, as
// CRIU's run_tcp_server does), serves the one dump that connects and exits: 0 when the dump's pages were
// all stored (PageServerReceiver), 1 otherwise.
//
// -d (--daemon): CRIU forks after binding. A .NET process cannot fork, so the listening socket is handed to
// a new crest in a new session (stdio on /dev/null) that goes on from there, and this one exits at once.
using System.Net;
using System.Net.Sockets;
using Crest.Cli.Interop;
using Crest.Diagnostics;
using Crest.Kernel.Files;
using Crest.Kernel.Processes;
using Crest.Transport.PageServer;
using Crest.Transport.Tls;

namespace Crest.Cli.Criu;

internal static class PageServerCommand
{
    /// <summary>Set in the daemon's environment: the fd of the listening socket it takes over.</summary>
    internal const string ListenFdVariable = "CREST_PAGE_SERVER_LISTEN_FD";

    private static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(60);

    public static int Run(CriuOptions options, CriuPaths paths)
    {
        if (paths.PrevImagesDir is not null) LinkParent(options.PrevImagesDir!, paths.ImagesDir);
        var inherited = TakeOverListener();
        using var listener = inherited ?? Listen(options);
        var local = (IPEndPoint)listener.LocalEndPoint!;
        if (options.IsOn("restore-detached") && inherited is null)
        {
            int daemon = StartDaemon(listener, Environment.GetCommandLineArgs()[1..]);
            Log.Info($"page-server: listening on {local}, went on in the background as {daemon}");
            return 0;
        }
        Log.Info($"page-server: listening on {local}, images into {paths.ImagesDir}");
        if (paths.PidFile is { } pidFile) WritePidFile(pidFile, Environment.ProcessId);
        if (options.StatusFd >= 0) SignalReady(options.StatusFd);

        using var accepted = listener.Accept();
        listener.Close();
        accepted.NoDelay = true;
        Log.Info($"page-server: connection from {accepted.RemoteEndPoint}");
        Stream connection = new NetworkStream(accepted, ownsSocket: false);
        try
        {
            if (options.IsOn("tls"))
                connection = TlsChannel.Accept(connection, options.Last("address"), Tls(options, paths), HandshakeTimeout);
            var summary = new PageServerReceiver(paths.ImagesDir, m => Log.Info($"{m}")).Serve(connection);
            Log.Info($"page-server: stored {summary.Pagemaps} pagemaps, {summary.PagesReceived} pages, {summary.PagesInParent} in the parent images");
            return 0;
        }
        finally
        {
            connection.Dispose();
        }
    }

    /// <summary>CRIU's TLS options; relative paths are in the work directory (CRIU opens them after moving there).</summary>
    public static TlsOptions Tls(CriuOptions options, CriuPaths paths)
    {
        string? Full(string setting) => options.Last(setting) is { } p ? Path.GetFullPath(p, paths.WorkDir) : null;
        return new TlsOptions
        {
            CaCert = Full("tls-cacert"),
            CaCrl = Full("tls-cacrl"),
            Cert = Full("tls-cert"),
            Key = Full("tls-key"),
            NoCnVerify = options.IsOn("tls-no-cn-verify"),
        };
    }

    private static Socket Listen(CriuOptions options)
    {
        string? address = options.Last("address");
        IPAddress ip = IPAddress.IPv6Any;
        if (address is not null && !IPAddress.TryParse(address, out ip!))
        {
            try
            {
                ip = Dns.GetHostAddresses(address)[0];
            }
            catch (Exception e) when (e is SocketException or IndexOutOfRangeException)
            {
                throw new PageServerException($"Can't resolve the page-server address {address}: {e.Message}", e);
            }
        }
        var socket = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (address is null) socket.DualMode = true;
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            socket.Bind(new IPEndPoint(ip, options.Port));
            socket.Listen(1);
            return socket;
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new PageServerException($"Can't listen on {address ?? "*"}:{options.Port}: {e.Message}", e);
        }
    }

    /// <summary>The daemon: the listening socket its parent made.</summary>
    private static Socket? TakeOverListener()
    {
        if (Environment.GetEnvironmentVariable(ListenFdVariable) is not { } text) return null;
        if (!int.TryParse(text, out int fd) || fd < 0)
            throw new PageServerException($"{ListenFdVariable}={text} is not a file descriptor");
        Environment.SetEnvironmentVariable(ListenFdVariable, null);
        return new Socket(new SafeSocketHandle(fd, ownsHandle: true));
    }

    /// <summary>Starts this crest again with the same arguments in a new session, the listening socket kept open in it.</summary>
    private static int StartDaemon(Socket listener, IReadOnlyList<string> arguments)
    {
        int fd = (int)listener.Handle;
        // The command line this process was started with, up to the crest arguments ("dotnet exec crest.dll" when not AOT).
        var cmdline = File.ReadAllText("/proc/self/cmdline").TrimEnd('\0').Split('\0');
        var argv = cmdline.Take(cmdline.Length - arguments.Count).Concat(arguments).ToList();
        var environment = Environment.GetEnvironmentVariables().Keys.Cast<string>()
            .Where(k => k != ListenFdVariable)
            .Select(k => $"{k}={Environment.GetEnvironmentVariable(k)}")
            .Append($"{ListenFdVariable}={fd}")
            .ToList();
        var spawn = new SpawnOptions { NewSession = true, Environment = environment };
        spawn.FileActions.Add(new SpawnFileAction.Dup2(fd, fd)); // clears O_CLOEXEC (glibc 2.29+)
        spawn.FileActions.Add(new SpawnFileAction.Open(0, "/dev/null", (int)OpenFlags.ReadOnly));
        spawn.FileActions.Add(new SpawnFileAction.Open(1, "/dev/null", (int)OpenFlags.WriteOnly));
        spawn.FileActions.Add(new SpawnFileAction.Open(2, "/dev/null", (int)OpenFlags.WriteOnly));
        // Not disposed: that would kill it. It outlives this process and is re-parented when we exit.
        return ChildProcess.Spawn("/proc/self/exe", argv, spawn).Pid;
    }

    private static void SignalReady(int statusFd)
    {
        using (var fd = FileDescriptor.Borrow(statusFd)) fd.WriteAll([0]);
        Libc.close(statusFd);
    }

    private static void WritePidFile(string path, int pid)
    {
        using var file = FileDescriptor.Open(path, OpenFlags.WriteOnly | OpenFlags.Create | OpenFlags.Exclusive | OpenFlags.CloseOnExec, 0x1a4);
        file.WriteAll(System.Text.Encoding.ASCII.GetBytes(pid.ToString(System.Globalization.CultureInfo.InvariantCulture)));
    }

    /// <summary>--prev-images-dir on the page server: the "parent" link in its images directory (the dump makes
    /// the same link in its own directory), so that PE_PARENT pages are checked against the previous images.</summary>
    private static void LinkParent(string link, string imagesDir)
    {
        string path = Path.Combine(imagesDir, Crest.Images.Pages.PageChain.ParentLink);
        var existing = new FileInfo(path);
        if (existing.LinkTarget is not null) existing.Delete();
        else if (existing.Exists || Directory.Exists(path))
            throw new PageServerException($"{path} exists and is not a link; it cannot become the link to the previous images.");
        File.CreateSymbolicLink(path, link);
    }
}
