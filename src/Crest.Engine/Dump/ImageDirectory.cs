// The images directory of one dump. Every image is written whole, then all of them are fsynced at once
// (in parallel where fsync waits for a disk, so that the filesystem commits them in few journal transactions
// instead of one per file),
// then the directory itself, so that a dump that reports success survives a crash. inventory.img is written
// and synced after that: a directory without it is an incomplete dump. On failure every file this dump
// created is removed again.
using Crest.Images;
using Crest.Kernel;
using Crest.Kernel.Files;
using Google.Protobuf;

namespace Crest.Engine.Dump;

internal sealed class ImageDirectory
{
    private readonly List<string> _created = [];
    private readonly List<string> _unsynced = [];

    public ImageDirectory(string path)
    {
        Path = System.IO.Path.GetFullPath(path);
        if (!Directory.Exists(Path))
            throw new DumpException($"The images directory {Path} does not exist.");
    }

    public string Path { get; }

    public ulong BytesWritten { get; private set; }

    public string PathOf(string name) => System.IO.Path.Combine(Path, name);

    /// <summary>Remove an inventory.img left by an earlier dump, so that a failed dump cannot look complete.</summary>
    public void RemoveStaleInventory()
    {
        string inventory = PathOf(ImageKinds.FileName(ImageKinds.Inventory));
        try
        {
            if (File.Exists(inventory)) File.Delete(inventory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DumpException($"Cannot remove the old {inventory}: {e.Message}", e);
        }
    }

    /// <summary>Write an image of <paramref name="kind"/> holding <paramref name="entries"/>.</summary>
    public void Write(ImageKind kind, ulong id, params IMessage[] entries) => WriteNamed(ImageKinds.FileName(kind, id), kind, entries);

    public void WriteNamed(string name, ImageKind kind, IReadOnlyList<IMessage> entries)
    {
        string path = PathOf(name);
        _created.Add(path);
        try
        {
            using var writer = ImageWriter.Create(path, kind, syncOnClose: false);
            foreach (var e in entries) writer.WriteEntry(e);
            writer.Complete();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DumpException($"Cannot write {path}: {e.Message}", e);
        }
        _unsynced.Add(path);
        BytesWritten += (ulong)new FileInfo(path).Length;
    }

    /// <summary>Write an image whose entries are each followed by raw bytes (pipes-data.img); nothing when there are none.</summary>
    public void WriteWithPayloads(string name, ImageKind kind, IReadOnlyList<(IMessage Entry, byte[] Payload)> entries)
    {
        if (entries.Count == 0) return;
        string path = PathOf(name);
        _created.Add(path);
        try
        {
            using var writer = ImageWriter.Create(path, kind, syncOnClose: false);
            foreach (var (e, payload) in entries)
            {
                writer.WriteEntry(e);
                writer.WritePayload(payload);
            }
            writer.Complete();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DumpException($"Cannot write {path}: {e.Message}", e);
        }
        _unsynced.Add(path);
        BytesWritten += (ulong)new FileInfo(path).Length;
    }

    /// <summary>Note a file written by another writer (pagemap/pages) for cleanup and size.</summary>
    public void Track(string name)
    {
        string path = PathOf(name);
        if (!_created.Contains(path)) _created.Add(path);
    }

    /// <summary>Counts bytes of an image that went elsewhere than this directory (streamed as it was made).</summary>
    public void AccountSent(ulong bytes) => BytesWritten += bytes;

    public void Account(string name)
    {
        _unsynced.Add(PathOf(name));
        BytesWritten += (ulong)new FileInfo(PathOf(name)).Length;
    }

    /// <summary>
    /// fsync every image written so far, then the directory. The first fsync tells what they cost here: where
    /// it returns at once (tmpfs, nothing to write back) the rest follow on this thread; where it waited for the
    /// disk they run in parallel, so that the filesystem commits them together (starting the thread pool for
    /// that costs more than a whole dump of a small process on tmpfs).
    /// </summary>
    public void SyncAll()
    {
        static void Sync(string path)
        {
            using var fd = FileDescriptor.Open(path, OpenFlags.ReadOnly | OpenFlags.CloseOnExec);
            fd.Sync();
        }

        try
        {
            if (_unsynced.Count > 0)
            {
                long start = System.Diagnostics.Stopwatch.GetTimestamp();
                Sync(_unsynced[0]);
                var rest = _unsynced.Skip(1);
                if (System.Diagnostics.Stopwatch.GetElapsedTime(start) < CheapSync)
                {
                    foreach (string path in rest) Sync(path);
                }
                else
                {
                    Parallel.ForEach(rest, new ParallelOptions { MaxDegreeOfParallelism = 8 }, Sync);
                }
            }
        }
        catch (KernelException k)
        {
            throw new DumpException($"Cannot sync the images in {Path}: {k.Message}", k);
        }
        catch (AggregateException e) when (e.InnerException is KernelException k)
        {
            throw new DumpException($"Cannot sync the images in {Path}: {k.Message}", k);
        }
        _unsynced.Clear();
        SyncDirectory();
    }

    /// <summary>An fsync faster than this did not wait for a device.</summary>
    private static readonly TimeSpan CheapSync = TimeSpan.FromMilliseconds(0.1);

    /// <summary>fsync the directory so that the new names are durable too.</summary>
    public void SyncDirectory()
    {
        try
        {
            using var dir = FileDescriptor.Open(Path, OpenFlags.ReadOnly | OpenFlags.Directory | OpenFlags.CloseOnExec);
            dir.Sync();
        }
        catch (KernelException e)
        {
            throw new DumpException($"Cannot sync the images directory {Path}: {e.Message}", e);
        }
    }

    /// <summary>Remove what this dump wrote (after a failure).</summary>
    public void RemoveCreated()
    {
        foreach (string path in _created)
        {
            try
            {
                File.Delete(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Crest.Diagnostics.Log.Warning($"cannot remove the partial image {path}: {e.Message}");
            }
        }
        _created.Clear();
    }
}
