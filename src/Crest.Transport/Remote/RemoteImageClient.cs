// The dump and restore ends of --remote: a dump hands a snapshot's images to the local image-proxy and
// waits until the image-cache has acknowledged all of them; a restore fetches a snapshot from the local
// image-cache. Both speak the image stream (Streams/Frame.cs) over the daemons' unix sockets.
using System.Net.Sockets;
using Crest.Transport.Streams;

namespace Crest.Transport.Remote;

/// <summary>An image to send: its name and how to open its content.</summary>
public sealed record OutgoingImage(string Name, Func<Stream> Open);

public static class RemoteImageClient
{
    /// <summary>
    /// Sends every image of <paramref name="snapshot"/> through the image-proxy at <paramref name="proxySocket"/>
    /// and returns once the image-cache acknowledged the whole snapshot. Anything else is a RemoteImageException.
    /// </summary>
    /// <param name="borrow">false: the images go through the proxy even where it could lend its connection (for comparisons).</param>
    public static async Task<long> SendSnapshotAsync(string proxySocket, string snapshot, IEnumerable<OutgoingImage> images, CancellationToken cancel, bool borrow = true)
    {
        using var upload = await SnapshotUpload.OpenAsync(proxySocket, snapshot, cancel, borrow).ConfigureAwait(false);
        return await upload.FinishAsync(images, cancel).ConfigureAwait(false);
    }

    /// <summary>
    /// Fetches every image of <paramref name="snapshot"/> from the image-cache at <paramref name="cacheSocket"/>:
    /// <paramref name="create"/> gives the stream each one is written to. Returns the image names.
    /// </summary>
    public static async Task<IReadOnlyList<string>> FetchSnapshotAsync(string cacheSocket, string snapshot, Func<string, Stream> create, CancellationToken cancel)
    {
        using var socket = await ImageSockets.ConnectUnixAsync(cacheSocket, "image-cache", cancel).ConfigureAwait(false);
        using var stream = new NetworkStream(socket, ownsSocket: false);
        var writer = new FrameWriter(stream);
        var reader = new FrameReader(stream);
        var names = new List<string>();
        try
        {
            await writer.WriteHelloAsync(cancel).ConfigureAwait(false);
            await writer.WriteGetSnapshotAsync(snapshot, cancel).ConfigureAwait(false);
            while (true)
            {
                var e = await reader.ReadAsync(cancel).ConfigureAwait(false);
                switch (e)
                {
                    case ImageBeginEvent begin when begin.Snapshot == snapshot:
                    {
                        if (!IsPlainName(begin.Name))
                            throw new RemoteImageException($"the image-cache sent an image named \"{begin.Name}\", which is not a file name");
                        await using (var output = create(begin.Name))
                        {
                            await reader.ReadImageAsync(async (chunk, c) => await output.WriteAsync(chunk, c).ConfigureAwait(false), cancel).ConfigureAwait(false);
                        }
                        names.Add(begin.Name);
                        break;
                    }
                    case DumpEndEvent end when end.Snapshot == snapshot:
                        return names;
                    case NotFoundEvent notFound:
                        throw new RemoteImageException($"the image-cache does not hold snapshot {snapshot}: {notFound.Reason}");
                    case ErrorEvent error:
                        throw new RemoteImageException(error.Message);
                    case null:
                        throw new RemoteImageException($"the image-cache closed the connection while sending {snapshot}");
                    default:
                        throw new RemoteImageException($"the image-cache sent {e} while sending {snapshot}");
                }
            }
        }
        catch (Exception e) when (e is IOException or SocketException or StreamProtocolException)
        {
            throw new RemoteImageException($"fetching {snapshot} from the image-cache failed: {e.InnerException?.Message ?? e.Message}", e);
        }
    }

    /// <summary>Fetches one image whole into memory; null when the cache says the snapshot does not have it.</summary>
    public static async Task<byte[]?> FetchImageAsync(string cacheSocket, string snapshot, string name, CancellationToken cancel)
    {
        using var socket = await ImageSockets.ConnectUnixAsync(cacheSocket, "image-cache", cancel).ConfigureAwait(false);
        using var stream = new NetworkStream(socket, ownsSocket: false);
        var writer = new FrameWriter(stream);
        var reader = new FrameReader(stream);
        try
        {
            await writer.WriteHelloAsync(cancel).ConfigureAwait(false);
            await writer.WriteGetAsync(snapshot, name, cancel).ConfigureAwait(false);
            return await reader.ReadWholeAsync(cancel).ConfigureAwait(false) switch
            {
                ImageEvent image when image.Name == name => image.Content,
                NotFoundEvent => null,
                ErrorEvent error => throw new RemoteImageException(error.Message),
                var other => throw new RemoteImageException($"the image-cache answered {other?.ToString() ?? "nothing"} to a request for {snapshot}/{name}"),
            };
        }
        catch (Exception e) when (e is IOException or SocketException or StreamProtocolException)
        {
            throw new RemoteImageException($"fetching {snapshot}/{name} from the image-cache failed: {e.InnerException?.Message ?? e.Message}", e);
        }
    }

    private static bool IsPlainName(string name) =>
        name.Length > 0 && name != "." && name != ".." && !name.Contains('/') && !name.Contains('\0');
}
