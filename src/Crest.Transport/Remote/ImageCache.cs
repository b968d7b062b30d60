// image-cache: the destination's end. Image-proxies connect over TCP and stream snapshots (one TCP
// connection per proxy carries every image of every snapshot); restores connect to the unix socket in
// the work directory and ask for images by snapshot id. Everything is held in memory, in chunks of at
// most FrameFormat.MaxChunk, up to the memory limit; nothing is written to disk.
//
//   proxy --TCP-->  [Hello] [image...] [DumpEnd s]   -> Ack s | Error (limit reached, bad stream)
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
    public ImageCache(EndPoint listen, string unixSocketPath, long memoryLimit, Action<string> log, TlsSettings? tls = null)
    {
        _memoryLimit = memoryLimit;
        _log = log;
        _tls = tls;
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
            throw new RemoteImageException($"image-cache: cannot listen on {listen}: {e.Message}", e);
        }
        try
        {
            _unix = ImageSockets.Listen(unixSocketPath);
        }
        catch
        {
            _tcp.Dispose();
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
    }

    private async Task AcceptLoopAsync(Socket listener, Func<Socket, CancellationToken, Task> serve, CancellationToken cancel)
    {
        while (!cancel.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(cancel).ConfigureAwait(false);
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
                        var image = new CachedImage();
                        await reader.ReadImageAsync((chunk, _) =>
                        {
                            if (snapshot.Broken is null && !Hold(snapshot, chunk.Length))
                                Fail(snapshot, $"image-cache: memory limit of {_memoryLimit} bytes reached while receiving {begin.Snapshot}/{begin.Name}");
                            if (snapshot.Broken is null) snapshot.Store(image, chunk.Span);
                            return ValueTask.CompletedTask;
                        }, cancel).ConfigureAwait(false);
                        if (snapshot.Broken is null)
                        {
                            lock (_lock) snapshot.Images[begin.Name] = image;
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
                    List<KeyValuePair<string, CachedImage>> images;
                    lock (_lock) images = [.. snapshot.Images];
                    foreach (var (name, image) in images) await SendAsync(writer, get.Snapshot, name, image, cancel).ConfigureAwait(false);
                    await writer.WriteDumpEndAsync(get.Snapshot, cancel).ConfigureAwait(false);
                    _log($"image-cache: served snapshot {get.Snapshot} ({images.Count} images)");
                    break;
                }
                case GetEvent get:
                {
                    var (snapshot, why) = await WaitForAsync(get.Snapshot, cancel).ConfigureAwait(false);
                    CachedImage? image = null;
                    if (snapshot is not null)
                    {
                        lock (_lock) snapshot.Images.TryGetValue(get.Name, out image);
                    }
                    if (image is null)
                        await writer.WriteNotFoundAsync(get.Snapshot, get.Name, why ?? $"the dump of {get.Snapshot} ended without {get.Name}", cancel).ConfigureAwait(false);
                    else
                        await SendAsync(writer, get.Snapshot, get.Name, image, cancel).ConfigureAwait(false);
                    break;
                }
                default:
                    await writer.WriteErrorAsync($"image-cache: unexpected {e.GetType().Name} on the restore socket", cancel).ConfigureAwait(false);
                    return;
            }
        }
    }

    private static async Task SendAsync(FrameWriter writer, string snapshot, string name, CachedImage image, CancellationToken cancel)
    {
        await writer.BeginImageAsync(snapshot, name, Codec.None, cancel).ConfigureAwait(false);
        foreach (var chunk in image.Chunks) await writer.WriteImageDataAsync(chunk, cancel).ConfigureAwait(false);
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
        var snapshot = new CachedSnapshot(id);
        CachedSnapshot? old;
        lock (_lock)
        {
            _snapshots.Remove(id, out old);
            _snapshots[id] = snapshot;
        }
        if (old is not null)
        {
            _log($"image-cache: snapshot {id} arrives again; the old one is dropped");
            Fail(old, $"snapshot {id} was replaced by a new dump of it");
            Drop(old);
        }
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

    private void Fail(CachedSnapshot snapshot, string why)
    {
        lock (_lock)
        {
            snapshot.Broken ??= why;
            _held -= snapshot.Held;
            snapshot.Held = 0;
            snapshot.Images.Clear();
        }
        snapshot.Done.TrySetResult();
    }

    private void Drop(CachedSnapshot snapshot)
    {
        lock (_lock)
        {
            if (_snapshots.TryGetValue(snapshot.Id, out var current) && current == snapshot && !snapshot.Complete)
                _snapshots.Remove(snapshot.Id);
        }
    }

    private sealed class CachedSnapshot(string id)
    {
        /// <summary>Image data is copied into slabs of this size: few large allocations instead of one per chunk.</summary>
        private const int SlabSize = 16 << 20;
        private byte[]? _slab;
        private int _used;

        public string Id { get; } = id;

        /// <summary>Appends raw bytes to <paramref name="image"/>, in this snapshot's slabs.</summary>
        public void Store(CachedImage image, ReadOnlySpan<byte> data)
        {
            while (!data.IsEmpty)
            {
                if (_slab is null || _used == _slab.Length)
                {
                    _slab = GC.AllocateUninitializedArray<byte>(SlabSize);
                    _used = 0;
                }
                int n = Math.Min(data.Length, _slab.Length - _used);
                data[..n].CopyTo(_slab.AsSpan(_used));
                image.Chunks.Add(_slab.AsMemory(_used, n));
                image.Length += n;
                _used += n;
                data = data[n..];
            }
        }

        public Dictionary<string, CachedImage> Images { get; } = [];
        public bool Complete { get; set; }
        /// <summary>Bytes of data received for it, whole images or not.</summary>
        public long Held { get; set; }
        public string? Broken { get; set; }
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class CachedImage
    {
        public List<ReadOnlyMemory<byte>> Chunks { get; } = [];
        public long Length { get; set; }
    }
}
