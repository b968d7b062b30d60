// Where the image-cache keeps what it receives: one tmpfs file per image, so that a restore on this machine
// reads a snapshot in place (LeaseAsync) instead of a copy of it, and the cache holds no image in its own heap.
//
//   /dev/shm/crest-cache-PID/            mode 0700, removed when the cache ends (Dispose: exit, SIGTERM, SIGINT);
//       SNAPSHOT/                        one directory per snapshot id, removed when the snapshot is dropped
//           core-1.img pages-1.img ...   the images as they arrived (decompressed, checksum verified)
//           parent -> ../PARENT          the "parent" image (a snapshot id) as the link the engine's PageChain follows
//
// A cache killed with SIGKILL leaves its directory: the next cache removes the directories of pids that are gone.
// Snapshot ids and image names come from the network: each must be one path component (no '/', not "." or ".."),
// or the snapshot is refused. --cache-limit counts the bytes of the files; tmpfs running out (ENOSPC) breaks the
// snapshot being received, as the limit does.
using System.Text;
using Crest.Images.Pages;
using Microsoft.Win32.SafeHandles;

namespace Crest.Transport.Remote;

/// <summary>
/// A complete snapshot and its parents, held in the image-cache's directory and kept there (never dropped nor
/// replaced) until this is disposed. <see cref="Directory"/> is an images directory a restore reads in place.
/// </summary>
public sealed class SnapshotLease : IDisposable
{
    private readonly ImageCache _cache;
    private int _disposed;

    internal SnapshotLease(ImageCache cache, string directory, IReadOnlyList<string> chain)
    {
        _cache = cache;
        Directory = directory;
        Chain = chain;
    }

    /// <summary>The snapshot's directory; its "parent" link leads to the next of <see cref="Chain"/>.</summary>
    public string Directory { get; }

    /// <summary>The snapshot ids of the chain, the leased one first.</summary>
    public IReadOnlyList<string> Chain { get; }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) _cache.Release(Chain);
    }
}

public sealed partial class ImageCache
{
    public const string StorePrefix = "crest-cache-";
    private const string StoreParent = "/dev/shm";
    private const UnixFileMode PrivateDirectory = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    /// <summary>Longest "parent" image: a snapshot id is one file name.</summary>
    private const int MaxName = 255;
    private static int s_instances;

    /// <summary>The directory that holds this cache's snapshots (one subdirectory each).</summary>
    public string StoreDirectory { get; }

    /// <summary>/dev/shm/crest-cache-PID, or -PID-N for a further cache of the same process; stale ones of dead pids are removed first.</summary>
    private string CreateStore(string? directory)
    {
        if (directory is null)
        {
            RemoveStaleStores();
            int n = Interlocked.Increment(ref s_instances);
            directory = Path.Combine(StoreParent, n == 1 ? $"{StorePrefix}{Environment.ProcessId}" : $"{StorePrefix}{Environment.ProcessId}-{n}");
        }
        try
        {
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
            Directory.CreateDirectory(directory, PrivateDirectory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RemoteImageException($"image-cache: cannot create its image directory {directory}: {e.Message}", e);
        }
        return directory;
    }

    /// <summary>The directories of caches whose process is gone (killed, or a machine that lost power mid-run on a persistent /dev/shm).</summary>
    private void RemoveStaleStores()
    {
        foreach (var (store, owner) in OwnedDirectories.Orphaned(StoreParent, StorePrefix))
        {
            _log($"image-cache: removing {store}, left by image-cache {owner} that is gone");
            DeleteDirectory(store);
        }
    }

    /// <summary>A snapshot id or image name that is one path component.</summary>
    internal static bool IsFileName(string name) =>
        name.Length > 0 && name is not ("." or "..") && !name.Contains('/') && !name.Contains('\0') && Encoding.UTF8.GetByteCount(name) <= MaxName;

    private void DeleteDirectory(string directory)
    {
        try
        {
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log($"image-cache: cannot remove {directory}: {e.Message}");
        }
    }

    /// <summary>
    /// Waits until <paramref name="id"/> and every parent it names are complete here, and keeps them until the lease is
    /// disposed. A RemoteImageException says which one is missing or broken.
    /// </summary>
    public async Task<SnapshotLease> LeaseAsync(string id, CancellationToken cancel)
    {
        var chain = new List<string>();
        try
        {
            for (string? next = id; next is not null; )
            {
                if (chain.Count >= PageChain.MaxDepth) throw new RemoteImageException($"the chain of parent snapshots of {id} is longer than {PageChain.MaxDepth}");
                var (snapshot, why) = await WaitForAsync(next, cancel).ConfigureAwait(false);
                string of = next == id ? "" : $" (a parent of {id})";
                if (snapshot is null) throw new RemoteImageException($"{why}{of}");
                lock (_lock)
                {
                    if (!_snapshots.TryGetValue(next, out var current) || current != snapshot || snapshot.Broken is not null)
                        throw new RemoteImageException($"snapshot {next}{of} was dropped from this image-cache");
                    if (chain.Contains(next)) throw new RemoteImageException($"the parent snapshots of {id} form a loop at {next}");
                    snapshot.Pins++;
                    chain.Add(next);
                    next = snapshot.Parent;
                }
            }
        }
        catch
        {
            Release(chain);
            throw;
        }
        return new SnapshotLease(this, Path.Combine(StoreDirectory, id), chain);
    }

    internal void Release(IReadOnlyList<string> chain)
    {
        lock (_lock)
        {
            foreach (string id in chain)
                if (_snapshots.TryGetValue(id, out var snapshot) && snapshot.Pins > 0) snapshot.Pins--;
        }
    }

    /// <summary>
    /// Drops every snapshot whose id starts with <paramref name="prefix"/> (complete, broken or being received), except
    /// those a restore holds; returns how many went.
    /// </summary>
    public int ForgetPrefix(string prefix)
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        List<CachedSnapshot> gone;
        lock (_lock)
        {
            // Out of the table first: from then on no lease can take them.
            gone = [.. _snapshots.Values.Where(s => s.Id.StartsWith(prefix, StringComparison.Ordinal) && s.Pins == 0)];
            foreach (var snapshot in gone) _snapshots.Remove(snapshot.Id);
        }
        foreach (var snapshot in gone) Fail(snapshot, $"snapshot {snapshot.Id} was forgotten at the source's request");
        return gone.Count;
    }

    /// <summary>The snapshot's directory, made now; or the snapshot broken with the reason it has none.</summary>
    private void CreateSnapshotDirectory(CachedSnapshot snapshot)
    {
        if (snapshot.Directory is null)
        {
            Fail(snapshot, $"image-cache: \"{snapshot.Id}\" is not a snapshot id (one file name)");
            return;
        }
        // Not remade when it is gone: a cache that ended (Dispose) must not leave a directory behind a late receive.
        if (!Directory.Exists(StoreDirectory))
        {
            Fail(snapshot, $"image-cache: its image directory {StoreDirectory} is gone (the cache is ending)");
            return;
        }
        try
        {
            Directory.CreateDirectory(snapshot.Directory, PrivateDirectory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Fail(snapshot, $"image-cache: cannot create {snapshot.Directory}: {e.Message}");
        }
    }

    /// <summary>An image being received into its file (or, for "parent", into memory).</summary>
    private sealed class IncomingImage(CachedSnapshot snapshot, string name, SafeFileHandle? file) : IDisposable
    {
        public CachedSnapshot Snapshot { get; } = snapshot;
        public string Name { get; } = name;
        public SafeFileHandle? File { get; } = file;
        public MemoryStream? Content { get; } = file is null ? new MemoryStream() : null;
        public long Length { get; set; }

        public void Dispose() => File?.Dispose();
    }

    /// <summary>Opens the file of an image that begins; null when the snapshot is (or now becomes) broken.</summary>
    private IncomingImage? BeginImage(CachedSnapshot snapshot, string name)
    {
        if (snapshot.Broken is not null) return null;
        if (!IsFileName(name))
        {
            Fail(snapshot, $"image-cache: \"{name}\" in {snapshot.Id} is not an image name (one file name)");
            return null;
        }
        if (name == ParentImage) return new IncomingImage(snapshot, name, null);
        string path = Path.Combine(snapshot.Directory!, name);
        lock (_lock)
        {
            // The same name twice in one dump: the later one counts.
            if (snapshot.Images.Remove(name, out var old))
            {
                _held -= old.Length;
                snapshot.Held -= old.Length;
            }
        }
        try
        {
            return new IncomingImage(snapshot, name, File.OpenHandle(path, FileMode.Create, FileAccess.Write, FileShare.Read));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Fail(snapshot, $"image-cache: cannot create {path}: {e.Message}");
            return null;
        }
    }

    /// <summary>A chunk of raw image data into its file, counted against the limit.</summary>
    private void Receive(IncomingImage image, ReadOnlySpan<byte> chunk)
    {
        var snapshot = image.Snapshot;
        if (snapshot.Broken is not null) return;
        if (!Hold(snapshot, chunk.Length))
        {
            Fail(snapshot, $"image-cache: memory limit of {_memoryLimit} bytes reached while receiving {snapshot.Id}/{image.Name}");
            return;
        }
        if (image.Content is { } content)
        {
            if (content.Length + chunk.Length > MaxName)
            {
                Fail(snapshot, $"image-cache: the parent image of {snapshot.Id} is longer than a snapshot id");
                return;
            }
            content.Write(chunk);
        }
        else
        {
            try
            {
                RandomAccess.Write(image.File!, chunk, image.Length);
            }
            catch (IOException e)
            {
                Fail(snapshot, $"image-cache: cannot store {snapshot.Id}/{image.Name} in {StoreDirectory}: {e.Message}");
                return;
            }
        }
        image.Length += chunk.Length;
    }

    /// <summary>The image arrived whole (length and checksum checked): it is part of the snapshot now.</summary>
    private void EndImage(IncomingImage image)
    {
        var snapshot = image.Snapshot;
        if (snapshot.Broken is not null) return;
        string? parent = null;
        if (image.Content is { } content)
        {
            parent = Encoding.UTF8.GetString(content.ToArray());
            if (!IsFileName(parent))
            {
                Fail(snapshot, $"image-cache: snapshot {snapshot.Id} names a parent \"{parent}\" that is not a snapshot id");
                return;
            }
            string link = Path.Combine(snapshot.Directory!, PageChain.ParentLink);
            try
            {
                File.Delete(link);
                File.CreateSymbolicLink(link, Path.Combine("..", parent));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Fail(snapshot, $"image-cache: cannot link {link} to its parent {parent}: {e.Message}");
                return;
            }
        }
        lock (_lock)
        {
            if (snapshot.Broken is not null) return;
            if (parent is not null) snapshot.Parent = parent;
            snapshot.Images[image.Name] = new CachedImage(Path.Combine(snapshot.Directory!, image.Name), image.Length, parent);
        }
    }

    /// <summary>What a restore is sent of one image: its file opened now (so that a drop meanwhile does not cut it short), or the parent id.</summary>
    private sealed record ServedImage(string Name, SafeFileHandle? File, long Length, byte[]? Content) : IDisposable
    {
        public void Dispose() => File?.Dispose();
    }

    /// <summary>Opens the images of a complete snapshot for sending (all of them, or the one named); empty when it was dropped meanwhile.</summary>
    private List<ServedImage> OpenForServing(CachedSnapshot snapshot, string? only)
    {
        var served = new List<ServedImage>();
        lock (_lock)
        {
            if (snapshot.Broken is not null) return served;
            try
            {
                foreach (var (name, image) in snapshot.Images)
                {
                    if (only is not null && name != only) continue;
                    served.Add(image.Parent is { } parent
                        ? new ServedImage(name, null, image.Length, Encoding.UTF8.GetBytes(parent))
                        : new ServedImage(name, File.OpenHandle(image.Path, FileMode.Open, FileAccess.Read), image.Length, null));
                }
            }
            catch
            {
                foreach (var s in served) s.Dispose();
                throw;
            }
        }
        return served;
    }

    private sealed class CachedSnapshot(string id, string? directory)
    {
        public string Id { get; } = id;
        /// <summary>Its directory in the store; null for an id that is no file name (refused, holds nothing).</summary>
        public string? Directory { get; } = directory;
        public Dictionary<string, CachedImage> Images { get; } = [];
        /// <summary>The snapshot its "parent" image names.</summary>
        public string? Parent { get; set; }
        public bool Complete { get; set; }
        /// <summary>Bytes of data received for it, whole images or not.</summary>
        public long Held { get; set; }
        public string? Broken { get; set; }
        /// <summary>Leases that hold it: while there are any it is neither dropped nor replaced.</summary>
        public int Pins { get; set; }
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>An image held in its file; the "parent" image is the id it names (and the link in the directory).</summary>
    private sealed record CachedImage(string Path, long Length, string? Parent);
}
