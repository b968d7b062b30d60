// A dump's connection to the image-proxy, open for the whole dump, so that images can go out while the dump
// still makes others: a dump streams each pages-N.img as it reads the task's memory (OpenImage, written by the
// page writer's thread), then hands over the rest and ends the snapshot (FinishAsync), which returns once the
// image-cache acknowledged all of it. Disposed without FinishAsync, the connection closes with no DumpEnd: the
// proxy drops its TCP connection and the cache marks whatever it got of the snapshot as broken.
//
//   dump --unix--> Hello  pages-1.img (while read) ... pages-N.img  other images  DumpEnd s  -> Ack s | Error
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
    public long RawBytes => _writer.RawBytes;

    /// <summary>Connects to the image-proxy at <paramref name="proxySocket"/> and says hello.</summary>
    public static async Task<SnapshotUpload> OpenAsync(string proxySocket, string snapshot, CancellationToken cancel)
    {
        var socket = await ImageSockets.ConnectUnixAsync(proxySocket, "image-proxy", cancel).ConfigureAwait(false);
        var upload = new SnapshotUpload(socket, snapshot);
        try
        {
            await upload._writer.WriteHelloAsync(cancel).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            upload.Dispose();
            throw new RemoteImageException($"the image-proxy at {proxySocket} closed the connection at once: {e.InnerException?.Message ?? e.Message}", e);
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
            _writer.BeginImageAsync(Snapshot, name, Codec.None).GetAwaiter().GetResult();
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
                await _writer.WriteImageAsync(Snapshot, image.Name, content, Codec.None, cancel).ConfigureAwait(false);
                _sent.Add(image.Name);
            }
            await _writer.WriteDumpEndAsync(Snapshot, cancel).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            // The proxy may have said why before it closed.
            throw new RemoteImageException(await ReasonAsync(cancel).ConfigureAwait(false)
                ?? $"the image-proxy connection broke while sending {Snapshot}: {e.InnerException?.Message ?? e.Message}", e);
        }
        StreamEvent? answer;
        try
        {
            answer = await _reader.ReadAsync(cancel).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or StreamProtocolException)
        {
            throw new RemoteImageException($"the image-proxy connection broke while waiting for the image-cache to acknowledge {Snapshot}: {e.InnerException?.Message ?? e.Message}", e);
        }
        return answer switch
        {
            AckEvent a when a.Snapshot == Snapshot => _writer.RawBytes,
            ErrorEvent error => throw new RemoteImageException(error.Message),
            null => throw new RemoteImageException($"the image-proxy closed the connection before the image-cache acknowledged {Snapshot}"),
            _ => throw new RemoteImageException($"the image-proxy answered {answer} to the end of {Snapshot}"),
        };
    }

    public void Dispose()
    {
        _stream.Dispose();
        _socket.Dispose();
    }

    private IOException Broken(string name, Exception e)
    {
        using var soon = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        string why = ReasonAsync(soon.Token).GetAwaiter().GetResult()
            ?? $"the image-proxy connection broke while sending {name}: {e.InnerException?.Message ?? e.Message}";
        return new IOException($"the images of {Snapshot} did not reach the image-cache: {why}", e);
    }

    private async Task<string?> ReasonAsync(CancellationToken cancel)
    {
        try
        {
            using var soon = CancellationTokenSource.CreateLinkedTokenSource(cancel);
            soon.CancelAfter(TimeSpan.FromSeconds(1));
            return await _reader.ReadAsync(soon.Token).ConfigureAwait(false) is ErrorEvent error ? error.Message : null;
        }
        catch (Exception e) when (e is IOException or SocketException or StreamProtocolException or OperationCanceledException or ObjectDisposedException)
        {
            return null;
        }
    }

    /// <summary>One image on its way: bytes go out as they are written; disposing ends it (length and checksum).</summary>
    private sealed class ImageStream(SnapshotUpload upload, string name) : Stream
    {
        private bool _broken;
        private bool _ended;

        public string Name => name;

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            ObjectDisposedException.ThrowIf(_ended, this);
            if (_broken) throw new IOException($"the images of {upload.Snapshot} did not reach the image-cache: an earlier write of {name} failed");
            try
            {
                upload._writer.WriteImageData(buffer);
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
                        upload._writer.EndImageAsync().GetAwaiter().GetResult();
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
