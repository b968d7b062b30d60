// image-cache: the destination's end. Image-proxies connect over TCP and stream snapshots (one TCP
// connection per proxy carries every image of every snapshot); restores connect to the unix socket in
// the work directory and ask for images by snapshot id. Every image is received straight into a file of
// its own on tmpfs (ImageCache.Store.cs: RAM, never a disk), up to the memory limit, so that a restore
// on this machine can also read a snapshot in place (LeaseAsync).
//
//   proxy --TCP-->  [Hello] [image...] [DumpEnd s]   -> Ack s | Error (limit reached, bad stream)
//                   [Forget prefix]                  -> Ack prefix (snapshots s* dropped: a migration that failed)
//   restore --unix--> [Hello] [GetSnapshot s]  -> images of s, DumpEnd s | NotFound | Error
//                             [Get s name]     -> the image | NotFound
//
// A snapshot is served only once its DumpEnd arrived: a restore that asks earlier waits; a connection lost
// before it marks the snapshot broken, and whoever waits gets that reason. All I/O is async: a task per
// connection, never a thread per image.
using System.Net;
using System.Net.Sockets;
using Crest.Transport.Streams;

namespace Crest.Transport.Remote;

public sealed partial class ImageCache : IDisposable
{
    private readonly Socket _tcp;
    private readonly Socket _unix;
    private readonly long _memoryLimit;
    private readonly Action<string> _log;
    private readonly TlsSettings? _tls;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, CachedSnapshot> _snapshots = [];
    private long _held;

    /// <summary>Listens at once (so that readiness can be reported when this returns); serves from <see cref="RunAsync"/>.</summary>
    /// <param name="storeDirectory">Where the images are kept (made, and removed on Dispose); by default /dev/shm/crest-cache-PID.</param>
    public ImageCache(EndPoint listen, string unixSocketPath, long memoryLimit, Action<string> log, TlsSettings? tls = null, string? storeDirectory = null)
    {
        _memoryLimit = memoryLimit;
        _log = log;
        _tls = tls;
        StoreDirectory = CreateStore(storeDirectory);
        _tcp = new Socket(listen.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            _tcp.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            _tcp.Bind(listen);
            _tcp.Listen(16);
        }
        catch (SocketException e)
        {
            _tcp.Dispose();
            DeleteDirectory(StoreDirectory);
            throw new RemoteImageException($"image-cache: cannot listen on {listen}: {e.Message}", e);
        }
        try
        {
            _unix = ImageSockets.Listen(unixSocketPath);
        }
        catch
        {
            _tcp.Dispose();
            DeleteDirectory(StoreDirectory);
            throw;
        }
        UnixSocketPath = unixSocketPath;
    }

    public EndPoint LocalEndPoint => _tcp.LocalEndPoint!;
    public string UnixSocketPath { get; }

    /// <summary>Bytes of image data held now.</summary>
    public long HeldBytes { get { lock (_lock) return _held; } }

    public async Task RunAsync(CancellationToken cancel)
    {
        var proxies = AcceptLoopAsync(_tcp, ServeProxyAsync, cancel);
        var restores = AcceptLoopAsync(_unix, ServeRestoreAsync, cancel);
        await Task.WhenAll(proxies, restores).ConfigureAwait(false);
    }

    public void Dispose()
    {
        _tcp.Dispose();
        _unix.Dispose();
        try
        {
            File.Delete(UnixSocketPath);
        }
        catch (IOException)
        {
            // gone already
        }
        DeleteDirectory(StoreDirectory);
    }

    private async Task AcceptLoopAsync(Socket listener, Func<Socket, CancellationToken, Task> serve, CancellationToken cancel)
    {
        while (!cancel.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(cancel).ConfigureAwait(false);
                if (client.ProtocolType == ProtocolType.Tcp) ImageSockets.WatchPeer(client);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.OperationAborted or SocketError.Interrupted)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            _ = Task.Run(async () =>
            {
                using (client)
                {
                    try
                    {
                        await serve(client, cancel).ConfigureAwait(false);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        _log($"image-cache: connection ended: {e.Message}");
                    }
                }
            }, CancellationToken.None);
        }
    }

    /// <summary>One proxy: snapshots until the connection ends. Whatever it was receiving when it ends is broken.</summary>
    private async Task ServeProxyAsync(Socket socket, CancellationToken cancel)
    {
        string peer = socket.RemoteEndPoint?.ToString() ?? "?";
        _log($"image-cache: proxy connected from {peer}");
        Stream stream = new NetworkStream(socket, ownsSocket: false);
        if (_tls is not null)
        {
            try
            {
                stream = await _tls.AcceptAsync(stream, cancel).ConfigureAwait(false);
            }
            catch (RemoteImageException e)
            {
                _log($"image-cache: proxy {peer}: {e.Message}");
                return;
            }
        }
        await using var owned = stream;
        var reader = new FrameReader(stream);
        var writer = new FrameWriter(stream);
        var receiving = new Dictionary<string, CachedSnapshot>();
        try
        {
            if (await reader.ReadAsync(cancel).ConfigureAwait(false) is not HelloEvent { Version: FrameFormat.ProtocolVersion })
                throw new StreamProtocolException($"the proxy at {peer} did not say hello with protocol {FrameFormat.ProtocolVersion}");
            while (await reader.ReadAsync(cancel).ConfigureAwait(false) is { } e)
            {
                switch (e)
                {
                    case ImageBeginEvent begin:
                    {
                        var snapshot = receiving.TryGetValue(begin.Snapshot, out var s) ? s : receiving[begin.Snapshot] = StartSnapshot(begin.Snapshot);
                        using (var image = BeginImage(snapshot, begin.Name))
                        {
                            // Chunk k is written into its file on the thread pool while chunk k+1 is received and hashed
                            // (the reader keeps k's memory until the next call returns): on two cores the copy out of the
                            // socket and the copy into tmpfs run side by side instead of in turn.
                            Task writing = Task.CompletedTask;
                            try
                            {
                                await reader.ReadImageAsync(async (chunk, _) =>
                                {
                                    if (image is null) return;
                                    await writing.ConfigureAwait(false);
                                    writing = Task.Run(() => Receive(image, chunk.Span), CancellationToken.None);
                                }, cancel).ConfigureAwait(false);
                            }
                            finally
                            {
                                // The file stays open until its last write ended.
                                await writing.ConfigureAwait(false);
                            }
                            if (image is not null) EndImage(image);
                        }
                        break;
                    }
                    case DumpEndEvent end:
                    {
                        if (!receiving.Remove(end.Snapshot, out var snapshot))
                            snapshot = StartSnapshot(end.Snapshot); // a dump of no images at all
                        if (snapshot.Broken is { } why)
                        {
                            await writer.WriteErrorAsync(why, cancel).ConfigureAwait(false);
                            // Kept, without data, so that a restore asking for it learns why it is not here.
                            _log($"{why}; the dump of {end.Snapshot} is refused");
                            break;
                        }
                        long bytes;
                        lock (_lock)
                        {
                            snapshot.Complete = true;
                            bytes = snapshot.Images.Values.Sum(i => i.Length);
                        }
                        snapshot.Done.TrySetResult();
                        await writer.WriteAckAsync(end.Snapshot, cancel).ConfigureAwait(false);
                        _log($"image-cache: snapshot {end.Snapshot} complete: {snapshot.Images.Count} images, {bytes} bytes (held in all {HeldBytes})");
                        break;
                    }
                    case RestoreEvent restore:
                        await AnswerRestoreAsync(writer, restore.Snapshot, peer, cancel).ConfigureAwait(false);
                        break;
                    case ForgetEvent forget:
                        await AnswerForgetAsync(writer, forget.Prefix, peer, cancel).ConfigureAwait(false);
                        break;
                    default:
                        throw new StreamProtocolException($"unexpected {e.GetType().Name} from the proxy");
                }
            }
            foreach (var s in receiving.Values) Fail(s, $"the proxy closed the connection before the dump of {s.Id} ended");
        }
        catch (Exception e) when (e is IOException or SocketException or StreamProtocolException or OperationCanceledException)
        {
            foreach (var s in receiving.Values) Fail(s, $"the connection from the image-proxy at {peer} broke while receiving {s.Id}: {e.Message}");
            if (e is StreamProtocolException)
            {
                try
                {
                    await writer.WriteErrorAsync($"image-cache: {e.Message}", CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception w) when (w is IOException or SocketException)
                {
                    // the proxy is gone too
                }
            }
            if (e is not OperationCanceledException) _log($"image-cache: proxy {peer}: {e.Message}");
            return;
        }
        _log($"image-cache: proxy {peer} disconnected");
    }

    /// <summary>One restore: requests until it closes the connection.</summary>
    private async Task ServeRestoreAsync(Socket socket, CancellationToken cancel)
    {
        using var stream = new NetworkStream(socket, ownsSocket: false);
        var reader = new FrameReader(stream);
        var writer = new FrameWriter(stream);
        byte[]? buffer = null;
        while (await reader.ReadAsync(cancel).ConfigureAwait(false) is { } e)
        {
            switch (e)
            {
                case HelloEvent:
                    break;
                case GetSnapshotEvent get:
                {
                    var (snapshot, why) = await WaitForAsync(get.Snapshot, cancel).ConfigureAwait(false);
                    if (snapshot is null)
                    {
                        await writer.WriteNotFoundAsync(get.Snapshot, "", why!, cancel).ConfigureAwait(false);
                        break;
                    }
                    var images = OpenForServing(snapshot, only: null);
                    try
                    {
                        if (snapshot.Broken is { } gone)
                        {
                            await writer.WriteNotFoundAsync(get.Snapshot, "", gone, cancel).ConfigureAwait(false);
                            break;
                        }
                        foreach (var image in images) await SendAsync(writer, get.Snapshot, image, buffer ??= new byte[FrameFormat.MaxChunk], cancel).ConfigureAwait(false);
                    }
                    finally
                    {
                        foreach (var image in images) image.Dispose();
                    }
                    await writer.WriteDumpEndAsync(get.Snapshot, cancel).ConfigureAwait(false);
                    _log($"image-cache: served snapshot {get.Snapshot} ({images.Count} images)");
                    break;
                }
                case GetEvent get:
                {
                    var (snapshot, why) = await WaitForAsync(get.Snapshot, cancel).ConfigureAwait(false);
                    var images = snapshot is null ? [] : OpenForServing(snapshot, get.Name);
                    try
                    {
                        if (images.Count == 0)
                            await writer.WriteNotFoundAsync(get.Snapshot, get.Name, why ?? snapshot?.Broken ?? $"the dump of {get.Snapshot} ended without {get.Name}", cancel).ConfigureAwait(false);
                        else
                            await SendAsync(writer, get.Snapshot, images[0], buffer ??= new byte[FrameFormat.MaxChunk], cancel).ConfigureAwait(false);
                    }
                    finally
                    {
                        foreach (var image in images) image.Dispose();
                    }
                    break;
                }
                default:
                    await writer.WriteErrorAsync($"image-cache: unexpected {e.GetType().Name} on the restore socket", cancel).ConfigureAwait(false);
                    return;
            }
        }
    }

    /// <summary>One image from its file (read in chunks through <paramref name="buffer"/>) or its content in memory.</summary>
    private static async Task SendAsync(FrameWriter writer, string snapshot, ServedImage image, byte[] buffer, CancellationToken cancel)
    {
        await writer.BeginImageAsync(snapshot, image.Name, Codec.None, cancel).ConfigureAwait(false);
        if (image.Content is { } content)
        {
            await writer.WriteImageDataAsync(content, cancel).ConfigureAwait(false);
        }
        else
        {
            for (long at = 0; at < image.Length; )
            {
                int n = RandomAccess.Read(image.File!, buffer.AsSpan(0, (int)Math.Min(buffer.Length, image.Length - at)), at);
                if (n == 0) throw new IOException($"image-cache: {snapshot}/{image.Name} ends after {at} of its {image.Length} bytes");
                await writer.WriteImageDataAsync(buffer.AsMemory(0, n), cancel).ConfigureAwait(false);
                at += n;
            }
        }
        await writer.EndImageAsync(cancel).ConfigureAwait(false);
    }

    /// <summary>The complete snapshot, waiting while it is being received; or null and why not.</summary>
    private async Task<(CachedSnapshot? Snapshot, string? Why)> WaitForAsync(string id, CancellationToken cancel)
    {
        CachedSnapshot? snapshot;
        lock (_lock) _snapshots.TryGetValue(id, out snapshot);
        if (snapshot is null) return (null, $"no dump of {id} reached this image-cache");
        await snapshot.Done.Task.WaitAsync(cancel).ConfigureAwait(false);
        return snapshot.Broken is { } why ? (null, why) : (snapshot, null);
    }

    private CachedSnapshot StartSnapshot(string id)
    {
        _log($"image-cache: receiving snapshot {id}");
        var snapshot = new CachedSnapshot(id, IsFileName(id) ? Path.Combine(StoreDirectory, id) : null);
        CachedSnapshot? old;
        lock (_lock)
        {
            if (_snapshots.TryGetValue(id, out old) && old.Pins > 0)
            {
                // A restore reads the old one in place: it stays, and this dump is refused (it is not registered).
                snapshot.Broken = $"image-cache: snapshot {id} is being restored from this cache; a new dump of it is refused";
                snapshot.Done.TrySetResult();
                return snapshot;
            }
            _snapshots.Remove(id, out old);
            _snapshots[id] = snapshot;
        }
        if (old is not null)
        {
            _log($"image-cache: snapshot {id} arrives again; the old one is dropped");
            Fail(old, $"snapshot {id} was replaced by a new dump of it"); // its directory goes before the new one is made
        }
        CreateSnapshotDirectory(snapshot);
        return snapshot;
    }

    private bool Hold(CachedSnapshot snapshot, int bytes)
    {
        lock (_lock)
        {
            if (_held + bytes > _memoryLimit) return false;
            _held += bytes;
            snapshot.Held += bytes;
            return true;
        }
    }

    /// <summary>Marks the snapshot broken (kept, without data, so that a restore asking for it learns why) and removes its files.</summary>
    private void Fail(CachedSnapshot snapshot, string why)
    {
        bool first;
        lock (_lock)
        {
            first = snapshot.Broken is null;
            snapshot.Broken ??= why;
            _held -= snapshot.Held;
            snapshot.Held = 0;
            snapshot.Images.Clear();
        }
        if (first && snapshot.Directory is { } directory) DeleteDirectory(directory);
        snapshot.Done.TrySetResult();
    }
}
