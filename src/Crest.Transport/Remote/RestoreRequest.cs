// The source's half of the last step of `crest migrate`: ask the image-cache to restore a snapshot it has
// acknowledged, on a TCP connection of its own (ImageCache.Restore.cs), and wait until the tree runs there.
using System.Net;
using System.Net.Sockets;
using Crest.Transport.Streams;

namespace Crest.Transport.Remote;

public static class RestoreRequest
{
    /// <summary>Whether the image-cache at <paramref name="cache"/> restores what it is sent (runs with --allow-restore); a RemoteImageException says why not.</summary>
    public static Task ProbeAsync(EndPoint cache, CancellationToken cancel) => SendAsync(cache, "", cancel);

    /// <summary>The destination's answer: the restored root's pid and the time its restore took. Anything else is a RemoteImageException.</summary>
    public static async Task<RestoredEvent> SendAsync(EndPoint cache, string snapshot, CancellationToken cancel)
    {
        using var socket = await ImageSockets.ConnectTcpAsync(cache, cancel).ConfigureAwait(false);
        using var stream = new NetworkStream(socket, ownsSocket: false);
        var writer = new FrameWriter(stream);
        var reader = new FrameReader(stream);
        StreamEvent? answer;
        try
        {
            await writer.WriteHelloAsync(cancel).ConfigureAwait(false);
            await writer.WriteRestoreAsync(snapshot, cancel).ConfigureAwait(false);
            await writer.FlushAsync(cancel).ConfigureAwait(false);
            answer = await reader.ReadAsync(cancel).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or StreamProtocolException)
        {
            throw new RemoteImageException($"the connection to the image-cache at {cache} broke while it restored {snapshot}: {e.InnerException?.Message ?? e.Message}", e);
        }
        return answer switch
        {
            RestoredEvent restored when restored.Snapshot == snapshot && snapshot.Length > 0 => restored,
            AckEvent { Snapshot: "" } when snapshot.Length == 0 => new RestoredEvent("", 0, TimeSpan.Zero),
            ErrorEvent error => throw new RemoteImageException(error.Message),
            null => throw new RemoteImageException($"the image-cache at {cache} closed the connection before it restored {snapshot}"),
            _ => throw new RemoteImageException($"the image-cache at {cache} answered {answer} to the restore of {snapshot}"),
        };
    }
}
