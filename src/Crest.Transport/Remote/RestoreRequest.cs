// The source's half of the last step of `crest migrate`: a TCP connection of its own to the image-cache
// (ImageCache.Restore.cs), opened before the first round with the question whether the cache restores at all,
// and held until the final dump is acknowledged, when it carries the Restore{snapshot} request and waits until
// the tree runs there. Opening it early keeps the TCP (and TLS) handshake out of the downtime. A migration that
// fails before then sends Forget{prefix} on it, so that the cache drops the rounds it holds.
using System.Net;
using System.Net.Sockets;
using Crest.Transport.Streams;

namespace Crest.Transport.Remote;

public sealed class RestoreRequest : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly Stream _stream;
    private readonly FrameWriter _writer;
    private readonly FrameReader _reader;
    private readonly EndPoint _cache;

    private RestoreRequest(Socket socket, Stream stream, EndPoint cache)
    {
        _socket = socket;
        _stream = stream;
        _cache = cache;
        _writer = new FrameWriter(stream);
        _reader = new FrameReader(stream);
    }

    /// <summary>
    /// Connects to the image-cache at <paramref name="cache"/> and asks whether it restores what it is sent (runs with
    /// --allow-restore); a RemoteImageException says why not.
    /// </summary>
    /// <param name="tls">As the image-proxy's (the cache speaks TLS on every TCP connection or on none); <paramref name="host"/> the name its certificate must carry.</param>
    public static async Task<RestoreRequest> OpenAsync(EndPoint cache, CancellationToken cancel, TlsSettings? tls = null, string? host = null)
    {
        var socket = await ImageSockets.ConnectTcpAsync(cache, cancel).ConfigureAwait(false);
        RestoreRequest? request = null;
        try
        {
            Stream stream = tls is null ? new NetworkStream(socket, ownsSocket: false)
                : await tls.ConnectAsync(new NetworkStream(socket, ownsSocket: false), host ?? cache.ToString()!, cancel).ConfigureAwait(false);
            request = new RestoreRequest(socket, stream, cache);
            await request._writer.WriteHelloAsync(cancel).ConfigureAwait(false);
            await request.AskAsync("", cancel).ConfigureAwait(false);
            return request;
        }
        catch
        {
            if (request is not null) await request.DisposeAsync().ConfigureAwait(false);
            else socket.Dispose();
            throw;
        }
    }

    /// <summary>The destination's answer: the restored root's pid and the time its restore took. Anything else is a RemoteImageException.</summary>
    public Task<RestoredEvent> RestoreAsync(string snapshot, CancellationToken cancel)
    {
        ArgumentException.ThrowIfNullOrEmpty(snapshot);
        return AskAsync(snapshot, cancel);
    }

    private async Task<RestoredEvent> AskAsync(string snapshot, CancellationToken cancel)
    {
        StreamEvent? answer;
        try
        {
            await _writer.WriteRestoreAsync(snapshot, cancel).ConfigureAwait(false);
            await _writer.FlushAsync(cancel).ConfigureAwait(false);
            answer = await _reader.ReadAsync(cancel).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or StreamProtocolException)
        {
            string what = snapshot.Length == 0 ? "was asked whether it restores" : $"restored {snapshot}";
            throw new RemoteImageException($"the connection to the image-cache at {_cache} broke while it {what}: {e.InnerException?.Message ?? e.Message}", e);
        }
        return answer switch
        {
            RestoredEvent restored when restored.Snapshot == snapshot && snapshot.Length > 0 => restored,
            AckEvent { Snapshot: "" } when snapshot.Length == 0 => new RestoredEvent("", 0, TimeSpan.Zero),
            ErrorEvent error => throw new RemoteImageException(error.Message),
            null => throw new RemoteImageException($"the image-cache at {_cache} closed the connection before it restored {snapshot}"),
            _ => throw new RemoteImageException($"the image-cache at {_cache} answered {answer} to the restore of {snapshot}"),
        };
    }

    /// <summary>
    /// Asks the cache to drop every snapshot whose id starts with <paramref name="prefix"/> (the rounds of a migration
    /// that failed before its final dump) and returns the cache's acknowledgement; anything else is a RemoteImageException.
    /// </summary>
    public async Task ForgetAsync(string prefix, CancellationToken cancel)
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        StreamEvent? answer;
        try
        {
            await _writer.WriteForgetAsync(prefix, cancel).ConfigureAwait(false);
            await _writer.FlushAsync(cancel).ConfigureAwait(false);
            answer = await _reader.ReadAsync(cancel).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or StreamProtocolException)
        {
            throw new RemoteImageException($"the connection to the image-cache at {_cache} broke while it forgot {prefix}*: {e.InnerException?.Message ?? e.Message}", e);
        }
        switch (answer)
        {
            case AckEvent ack when ack.Snapshot == prefix:
                return;
            case ErrorEvent error:
                throw new RemoteImageException(error.Message);
            default:
                throw new RemoteImageException($"the image-cache at {_cache} answered {answer?.ToString() ?? "nothing"} when asked to forget {prefix}*");
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stream.DisposeAsync().ConfigureAwait(false);
        _socket.Dispose();
    }
}
