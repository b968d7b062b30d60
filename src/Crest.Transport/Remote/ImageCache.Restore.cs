// image-cache, the destination of `crest migrate`: after the final snapshot was acknowledged, the source asks on
// a TCP connection of its own for that snapshot to be restored here (Restore{snapshot}); the cache runs the
// restore through Restorer (the CLI's `crest restore -d` on the snapshot's directory here, held by a LeaseAsync)
// and answers Restored{pid, time} once the tree runs, or Error{why}. Without Restorer (image-cache without --allow-restore) every request is refused: a
// network peer may not make this machine run processes unless its operator said so.
//
// A restored chain is dropped once the answer is out: its snapshot and every parent it named. A failed restore keeps them, so that the
// operator may try again by hand (`crest restore --remote -D ID`). A migration that fails before its final dump
// was acknowledged sends Forget{its id prefix} instead, so that its rounds do not stay here until the cache ends.
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
        // The answer first: removing a GiB of tmpfs files takes a while, and the source counts downtime until it hears.
        try
        {
            await writer.WriteRestoredAsync(snapshot, outcome.Pid, outcome.Took, cancel).ConfigureAwait(false);
            await writer.FlushAsync(cancel).ConfigureAwait(false);
        }
        finally
        {
            int dropped = Forget(snapshot);
            _log($"image-cache: {snapshot} restored as pid {outcome.Pid} in {outcome.Took.TotalMilliseconds:0.0} ms; {dropped} snapshots of its chain dropped (held now {HeldBytes})");
        }
    }

    /// <summary>Drops <paramref name="id"/> and the parents it names (those no lease holds); returns how many were held.</summary>
    private int Forget(string id)
    {
        var gone = new List<CachedSnapshot>();
        lock (_lock)
        {
            for (string? next = id; next is not null && gone.Count < Crest.Images.Pages.PageChain.MaxDepth
                 && _snapshots.TryGetValue(next, out var snapshot) && snapshot.Pins == 0; next = snapshot.Parent)
            {
                _snapshots.Remove(next);
                gone.Add(snapshot);
            }
        }
        foreach (var snapshot in gone) Fail(snapshot, $"snapshot {snapshot.Id} was restored and dropped");
        return gone.Count;
    }

    /// <summary>Forget{prefix}: a migration that failed before its final dump asks for its snapshots to go.</summary>
    private async Task AnswerForgetAsync(FrameWriter writer, string prefix, string peer, CancellationToken cancel)
    {
        // An empty or short prefix would take every snapshot with it: a migration's ids are long.
        if (prefix.Length < MinForgetPrefix)
        {
            await writer.WriteErrorAsync($"image-cache: refusing to forget the snapshots starting with \"{prefix}\" (too short a prefix)", cancel).ConfigureAwait(false);
            return;
        }
        int dropped = ForgetPrefix(prefix);
        _log($"image-cache: {peer} asked to forget the snapshots {prefix}*: {dropped} dropped (held now {HeldBytes})");
        await writer.WriteAckAsync(prefix, cancel).ConfigureAwait(false);
    }

    /// <summary>Shortest prefix a Forget may name.</summary>
    private const int MinForgetPrefix = 4;
}
