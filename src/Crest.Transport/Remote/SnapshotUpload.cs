// A dump's connection to the image-proxy, open for the whole dump, so that images can go out while the dump
// still makes others: a dump streams each pages-N.img as it reads the task's memory (OpenImage, written by the
// page writer's thread), then hands over the rest and ends the snapshot (FinishAsync), which returns once the
// image-cache acknowledged all of it. Disposed without FinishAsync, the connection closes with no DumpEnd: the
// proxy drops its TCP connection and the cache marks whatever it got of the snapshot as broken.
//
// Opening waits for the dump's turn on the proxy's TCP connection and borrows it (Borrow -> Lend): on a plain
// TCP connection the images are written straight into it (LentConnection: from the dump's memory to the socket,
// compressed here), and the proxy only relays the end of the snapshot and the cache's answer; over TLS the proxy
// lends nothing and the images go through it as before.
//
//   lent:     dump --unix--> Hello Borrow s                  <- Lend{codec, fd}
//             dump --TCP---> pages-1.img (while read) ... other images
//             dump --unix--> Returned{raw, sent} DumpEnd s   <- Ack s | Error
//   relayed:  dump --unix--> Hello Borrow s                  <- Lend{codec, no fd}
//             dump --unix--> pages-1.img ... other images DumpEnd s  <- Ack s | Error
using System.Net.Sockets;
using Crest.Transport.Streams;

namespace Crest.Transport.Remote;

public sealed class SnapshotUpload : IDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly FrameWriter _writer;
    private readonly FrameReader _reader;
    private readonly HashSet<string> _sent = new(StringComparer.Ordinal);
    private ImageStream? _open;
    /// <summary>The proxy's connection to the cache, while this dump holds it.</summary>
    private LentConnection? _lent;
    /// <summary>While lent, the read of the proxy's next frame, started at once: the proxy says nothing until the dump
    /// ended, so that its end (the proxy died or was stopped) stops the writes into its connection at once instead of
    /// at the end of the dump. Its result is the answer to DumpEnd.</summary>
    private Task<StreamEvent?>? _fromProxy;
    private byte[]? _readBuffer;

    private SnapshotUpload(Socket socket, string snapshot)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: false);
        _writer = new FrameWriter(_stream);
        _reader = new FrameReader(_stream);
        Snapshot = snapshot;
    }

    public string Snapshot { get; }

    /// <summary>Images sent whole so far (their names).</summary>
    public IReadOnlyCollection<string> Sent => _sent;

    /// <summary>Raw bytes of images sent so far.</summary>
    public long RawBytes => _writer.RawBytes + (_lent?.RawBytes ?? 0) + _returnedRaw;
    private long _returnedRaw;

    /// <summary>Whether the images go straight into the proxy's connection to the cache (false: through the proxy).</summary>
    public bool Lent => _lent is not null;

    /// <summary>Connects to the image-proxy at <paramref name="proxySocket"/>, says hello and waits for the turn of this dump,
    /// which borrows the proxy's connection to the image-cache when it can (<paramref name="borrow"/> false: the images go
    /// through the proxy, as over TLS; for comparisons).</summary>
    public static async Task<SnapshotUpload> OpenAsync(string proxySocket, string snapshot, CancellationToken cancel, bool borrow = true)
    {
        var socket = await ImageSockets.ConnectUnixAsync(proxySocket, "image-proxy", cancel).ConfigureAwait(false);
        var upload = new SnapshotUpload(socket, snapshot);
        try
        {
            await upload._writer.WriteHelloAsync(cancel).ConfigureAwait(false);
            if (!borrow) return upload;
            await upload._writer.WriteBorrowAsync(snapshot, cancel).ConfigureAwait(false);
            var (frame, descriptor) = await DescriptorPassing.ReceiveFrameAsync(socket, cancel).ConfigureAwait(false);
            StreamEvent? answer;
            try
            {
                answer = await new FrameReader(new MemoryStream(frame, writable: false)).ReadAsync(cancel).ConfigureAwait(false);
            }
            catch
            {
                if (descriptor >= 0) Interop.Libc.close(descriptor);
                throw;
            }
            switch (answer)
            {
                case LendEvent { Attached: true } lend when descriptor >= 0:
                {
                    var lent = upload._lent = new LentConnection(descriptor, lend.Codec);
                    var fromProxy = upload._fromProxy = upload._reader.ReadAsync(CancellationToken.None);
                    _ = fromProxy.ContinueWith(t => lent.Abort(t.IsCompletedSuccessfully && t.Result is ErrorEvent error
                        ? $"the image-proxy took its connection back: {error.Message}"
                        : $"the image-proxy ended while the dump of {snapshot} held its connection to the image-cache{(t.Exception is { } e ? $" ({e.InnerException?.Message})" : "")}"),
                        CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
                    break;
                }
                case LendEvent { Attached: false } when descriptor < 0:
                    break;
                case ErrorEvent error:
                    if (descriptor >= 0) Interop.Libc.close(descriptor);
                    throw new RemoteImageException(error.Message);
                default:
                    if (descriptor >= 0) Interop.Libc.close(descriptor);
                    throw new RemoteImageException($"the image-proxy at {proxySocket} answered {answer?.ToString() ?? "nothing"}{(descriptor >= 0 ? " with a descriptor" : "")} to Borrow");
            }
        }
        catch (Exception e) when (e is IOException or SocketException or StreamProtocolException)
        {
            upload.Dispose();
            throw new RemoteImageException($"the image-proxy at {proxySocket} closed the connection at once: {e.InnerException?.Message ?? e.Message}", e);
        }
        catch
        {
            upload.Dispose();
            throw;
        }
        return upload;
    }

    /// <summary>
    /// Begins image <paramref name="name"/>: the returned stream takes its bytes in order, synchronously, and ends
    /// the image when disposed. One image at a time. Write failures are IOExceptions that say the images did not
    /// reach the image-cache.
    /// </summary>
    public Stream OpenImage(string name)
    {
        if (_open is not null) throw new InvalidOperationException($"image {_open.Name} of {Snapshot} is still open");
        try
        {
            if (_lent is { } lent) lent.BeginImage(Snapshot, name);
            else _writer.BeginImageAsync(Snapshot, name, Codec.None).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            throw Broken(name, e);
        }
        return _open = new ImageStream(this, name);
    }

    /// <summary>Sends <paramref name="images"/>, ends the snapshot and waits for the image-cache's acknowledgement.</summary>
    public async Task<long> FinishAsync(IEnumerable<OutgoingImage> images, CancellationToken cancel)
    {
        if (_open is not null) throw new InvalidOperationException($"image {_open.Name} of {Snapshot} is still open");
        try
        {
            foreach (var image in images)
            {
                await using var content = image.Open();
                if (_lent is { } lent) WriteLent(lent, image.Name, content, cancel);
                else await _writer.WriteImageAsync(Snapshot, image.Name, content, Codec.None, cancel).ConfigureAwait(false);
                _sent.Add(image.Name);
            }
            if (_lent is { } done)
            {
                var (raw, sent) = done.Return();
                _returnedRaw = raw;
                _lent = null;
                done.Dispose();
                await _writer.WriteReturnedAsync(raw, sent, cancel).ConfigureAwait(false);
            }
            await _writer.WriteDumpEndAsync(Snapshot, cancel).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            // The proxy may have said why before it closed; with a lent connection it learns here that it broke.
            await GiveBackBrokenAsync(e).ConfigureAwait(false);
            throw new RemoteImageException(await ReasonAsync(cancel).ConfigureAwait(false)
                ?? $"the image-proxy connection broke while sending {Snapshot}: {e.InnerException?.Message ?? e.Message}", e);
        }
        StreamEvent? answer;
        try
        {
            answer = await NextFromProxyAsync(cancel).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or StreamProtocolException)
        {
            throw new RemoteImageException($"the image-proxy connection broke while waiting for the image-cache to acknowledge {Snapshot}: {e.InnerException?.Message ?? e.Message}", e);
        }
        return answer switch
        {
            AckEvent a when a.Snapshot == Snapshot => RawBytes,
            ErrorEvent error => throw new RemoteImageException(error.Message),
            null => throw new RemoteImageException($"the image-proxy closed the connection before the image-cache acknowledged {Snapshot}"),
            _ => throw new RemoteImageException($"the image-proxy answered {answer} to the end of {Snapshot}"),
        };
    }

    public void Dispose()
    {
        // The unix connection first: a proxy that sees it end without Returned drops the TCP connection, which also
        // ends a write of the lent connection that waits for room.
        _stream.Dispose();
        _socket.Dispose();
        _lent?.Dispose();
        _lent = null;
    }

    /// <summary>One image read from <paramref name="content"/> into the lent connection.</summary>
    private void WriteLent(LentConnection lent, string name, Stream content, CancellationToken cancel)
    {
        var buffer = _readBuffer ??= GC.AllocateUninitializedArray<byte>(FrameFormat.MaxChunk);
        lent.BeginImage(Snapshot, name);
        // Read synchronously on this thread (the caller waits for the snapshot anyway): an asynchronous read of a file
        // opened without FileOptions.Asynchronous is a thread-pool hop per MiB, queued behind the compression jobs.
        lent.WriteFrom(content, buffer, cancel);
        lent.EndImage();
    }

    /// <summary>
    /// A write into the lent connection failed: it is closed here, and the proxy told why (Error), so that it drops
    /// the connection and answers with what it knows (the cache's last words, if any).
    /// </summary>
    private async Task GiveBackBrokenAsync(Exception e)
    {
        if (_lent is not { } lent) return;
        _lent = null;
        lent.Dispose();
        try
        {
            await _writer.WriteErrorAsync($"the dump's write into the lent connection failed: {e.Message}").ConfigureAwait(false);
        }
        catch (Exception w) when (w is IOException or SocketException)
        {
            // the proxy is gone: it dropped the connection already
        }
    }

    private IOException Broken(string name, Exception e)
    {
        if (_lent is not null) GiveBackBrokenAsync(e).GetAwaiter().GetResult();
        using var soon = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        string why = ReasonAsync(soon.Token).GetAwaiter().GetResult()
            ?? $"the image-proxy connection broke while sending {name}: {e.InnerException?.Message ?? e.Message}";
        return new IOException($"the images of {Snapshot} did not reach the image-cache: {why}", e);
    }

    /// <summary>The proxy's next frame: the read begun while lent, or a new one.</summary>
    private Task<StreamEvent?> NextFromProxyAsync(CancellationToken cancel)
    {
        var pending = _fromProxy;
        _fromProxy = null;
        return pending is null ? _reader.ReadAsync(cancel) : pending.WaitAsync(cancel);
    }

    private async Task<string?> ReasonAsync(CancellationToken cancel)
    {
        try
        {
            using var soon = CancellationTokenSource.CreateLinkedTokenSource(cancel);
            soon.CancelAfter(TimeSpan.FromSeconds(1));
            return await NextFromProxyAsync(soon.Token).ConfigureAwait(false) is ErrorEvent error ? error.Message : null;
        }
        catch (Exception e) when (e is IOException or SocketException or StreamProtocolException or OperationCanceledException or ObjectDisposedException)
        {
            return null;
        }
    }

    /// <summary>One image on its way: bytes go out as they are written; disposing ends it (length and checksum).</summary>
    private sealed class ImageStream(SnapshotUpload upload, string name) : WriteOnlyStream
    {
        private bool _broken;
        private bool _ended;

        public string Name => name;

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            ObjectDisposedException.ThrowIf(_ended, this);
            if (_broken) throw new IOException($"the images of {upload.Snapshot} did not reach the image-cache: an earlier write of {name} failed");
            try
            {
                if (upload._lent is { } lent) lent.Write(buffer);
                else upload._writer.WriteImageData(buffer);
            }
            catch (Exception e) when (e is IOException or SocketException)
            {
                _broken = true;
                throw upload.Broken(name, e);
            }
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing && !_ended)
            {
                _ended = true;
                upload._open = null;
                // A broken image is not ended: the snapshot fails as a whole (no DumpEnd follows).
                if (!_broken)
                {
                    try
                    {
                        if (upload._lent is { } lent) lent.EndImage();
                        else upload._writer.EndImageAsync().GetAwaiter().GetResult();
                        upload._sent.Add(name);
                    }
                    catch (Exception e) when (e is IOException or SocketException)
                    {
                        _broken = true;
                    }
                }
            }
            base.Dispose(disposing);
        }
    }
}
