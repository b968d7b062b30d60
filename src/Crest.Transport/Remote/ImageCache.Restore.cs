// image-cache, the destination of `crest migrate`: after the final snapshot was acknowledged, the source asks on
// a TCP connection of its own for that snapshot to be restored here (Restore{snapshot}); the cache runs the
// restore through Restorer (the CLI's `crest restore --remote -d`) and answers Restored{pid, time} once the tree
// runs, or Error{why}. Without Restorer (image-cache without --allow-restore) every request is refused: a
// network peer may not make this machine run processes unless its operator said so.
//
// A restored chain is dropped from memory: its snapshot and every parent it named. A failed restore keeps
// them, so that the operator may try again by hand (`crest restore --remote -D ID`).
using System.Text;
using Crest.Transport.Streams;

namespace Crest.Transport.Remote;

/// <summary>What a restore at the destination gave: the restored root's pid and how long the restore took.</summary>
public sealed record RestoreOutcome(int Pid, TimeSpan Took);

public sealed partial class ImageCache
{
    /// <summary>Name of the image that holds a snapshot's parent id (PageChain.ParentLink on the wire).</summary>
    private const string ParentImage = "parent";

    private readonly SemaphoreSlim _restoring = new(1, 1);

    /// <summary>Restores a complete snapshot held here; throws RemoteImageException with the reason when it fails.</summary>
    public Func<string, CancellationToken, Task<RestoreOutcome>>? Restorer { get; set; }

    private async Task AnswerRestoreAsync(FrameWriter writer, string snapshot, string peer, CancellationToken cancel)
    {
        if (Restorer is not { } restorer)
        {
            _log($"image-cache: {peer} asked to restore {snapshot}, refused (no --allow-restore)");
            await writer.WriteErrorAsync($"the image-cache at the destination does not restore: start it with --allow-restore", cancel).ConfigureAwait(false);
            return;
        }
        if (snapshot.Length == 0)
        {
            await writer.WriteAckAsync("", cancel).ConfigureAwait(false); // the question whether it restores at all
            return;
        }
        var (held, why) = await WaitForAsync(snapshot, cancel).ConfigureAwait(false);
        if (held is null)
        {
            await writer.WriteErrorAsync($"cannot restore {snapshot} at the destination: {why}", cancel).ConfigureAwait(false);
            return;
        }
        await _restoring.WaitAsync(cancel).ConfigureAwait(false);
        RestoreOutcome outcome;
        try
        {
            _log($"image-cache: restoring {snapshot} for {peer}");
            outcome = await restorer(snapshot, cancel).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            _log($"image-cache: the restore of {snapshot} failed: {e.Message}");
            await writer.WriteErrorAsync($"the restore of {snapshot} at the destination failed: {e.Message}", cancel).ConfigureAwait(false);
            return;
        }
        finally
        {
            _restoring.Release();
        }
        int dropped = Forget(snapshot);
        _log($"image-cache: {snapshot} restored as pid {outcome.Pid} in {outcome.Took.TotalMilliseconds:0.0} ms; {dropped} snapshots of its chain dropped (held now {HeldBytes})");
        await writer.WriteRestoredAsync(snapshot, outcome.Pid, outcome.Took, cancel).ConfigureAwait(false);
    }

    /// <summary>Drops <paramref name="id"/> and the parents it names from memory; returns how many were held.</summary>
    private int Forget(string id)
    {
        int dropped = 0;
        lock (_lock)
        {
            for (string? next = id; next is not null && _snapshots.Remove(next, out var snapshot); dropped++)
            {
                _held -= snapshot.Held;
                snapshot.Held = 0;
                next = null;
                if (snapshot.Images.TryGetValue(ParentImage, out var parent))
                {
                    var text = new MemoryStream();
                    foreach (var chunk in parent.Chunks) text.Write(((ReadOnlyMemory<byte>)chunk).Span);
                    next = Encoding.UTF8.GetString(text.ToArray());
                }
                snapshot.Images.Clear();
            }
        }
        return dropped;
    }
}
