// `crest page-server -D DIR --port P [--address A] [-d] [--status-fd N] [--pidfile F] [--tls ...]`: CRIU's
// page server. It listens, says it is ready (--pidfile with its pid, then one '\0' byte on --status-fd, as
// CRIU's run_tcp_server does), serves the one dump that connects and exits: 0 when the dump's pages were
// all stored (PageServerReceiver), 1 otherwise.
//
// -d (--daemon): CRIU forks after binding. A .NET process cannot fork: this crest starts itself again in a new
// session (DaemonMode, as the other daemons do) and exits once that copy listens. SIGTERM keeps its default
// action (the server ends after its one dump; there is no clean stop to make before that).
using System.Net;
using System.Net.Sockets;
using Crest.Diagnostics;
using Crest.Transport.PageServer;
using Crest.Transport.Tls;

namespace Crest.Cli.Criu;

internal static class PageServerCommand
{
    private static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(60);

    public static int Run(CriuOptions options, CriuPaths paths, TextWriter stderr) =>
        DaemonMode.Run("page-server", options, paths, stderr,
            start: () =>
            {
                if (paths.PrevImagesDir is not null) LinkParent(options.PrevImagesDir!, paths.ImagesDir);
                var listener = Listen(options);
                Log.Info($"page-server: listening on {listener.LocalEndPoint}, images into {paths.ImagesDir}");
                return listener;
            },
            serve: (listener, _) => Serve(listener, options, paths),
            untilSignalled: false);

    /// <summary>The one dump that connects: its pages stored, the server's exit code 0.</summary>
    private static int Serve(Socket listener, CriuOptions options, CriuPaths paths)
    {
        using var accepted = listener.Accept();
        listener.Close();
        accepted.NoDelay = true;
        Crest.Transport.TcpPeerTimeout.Apply(accepted);
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

    internal static Socket Listen(CriuOptions options)
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
