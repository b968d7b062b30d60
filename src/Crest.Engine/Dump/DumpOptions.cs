using Crest.Images.Pages;

namespace Crest.Engine.Dump;

/// <summary>What to checkpoint, where, and how to leave the task afterwards (CRIU's dump options).</summary>
public sealed record DumpOptions
{
    /// <summary>The root task of the tree to checkpoint: it and every descendant (single-threaded processes for now).</summary>
    public required int Pid { get; init; }

    /// <summary>The images directory, absolute or relative to the current directory; it must exist.</summary>
    public required string ImagesDir { get; init; }

    /// <summary>-R / --leave-running: detach the task running once the images are safe.</summary>
    public bool LeaveRunning { get; init; }

    /// <summary>-s / --leave-stopped: detach the task stopped (SIGSTOP) once the images are safe.</summary>
    public bool LeaveStopped { get; init; }

    /// <summary>pre-dump: only memory is written (pagemap, pages, inventory, stats) and the task keeps running;
    /// its pages are write-protect tracked for the next round (Memory/DirtyTracking.cs).</summary>
    public bool PreDump { get; init; }

    /// <summary>--prev-images-dir as given (relative to the images directory, or absolute): the text of the
    /// "parent" link made in the images directory.</summary>
    public string? ParentLink { get; init; }

    /// <summary>--track-mem: pages unchanged since the parent (pre-)dump become PE_PARENT entries (pre-dump always tracks).</summary>
    public bool TrackMemory { get; init; }

    /// <summary>--timeout: how long freezing may take.</summary>
    public TimeSpan FreezeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// --external: resources held by the tree that the restore gets from outside, by CRIU's ids:
    /// <c>file[MNT_ID:INODE]</c> (hex) for a file opened by path, <c>pipe:[INODE]</c> for a pipe end.
    /// </summary>
    public IReadOnlyList<string> External { get; init; } = [];

    /// <summary>
    /// --page-server: where pagemap and pages images go instead of the images directory (the other images are
    /// written locally). The caller connects it before the dump and disposes of it after; the dump calls
    /// <see cref="IPageDestination.Finish"/> before it releases the tree, so a destination that did not store
    /// every page fails the dump with the tree left running.
    /// </summary>
    public IPageDestination? PageDestination { get; init; }

    /// <summary>
    /// --lazy-pages (post-copy migration): the pages of private anonymous memory are kept in this store instead of
    /// pages-N.img, and their pagemap entries are PE_LAZY without data; the caller serves them from the store once the
    /// dump returned (the tree is gone by then) and disposes of it. Local images only (no page server, no --remote).
    /// </summary>
    public Memory.LazyPageStore? LazyPages { get; init; }

    /// <summary>
    /// --remote: where each pages-N.img goes instead of the images directory, written in order as the task's memory
    /// is read (given the image's name, a stream the dump disposes once the image is complete); its pagemap stays in
    /// the images directory. A failed write fails the dump with the tree released as it was.
    /// </summary>
    public Func<string, Stream>? PagesOutput { get; init; }

    /// <summary>
    /// Called with the images directory once every image of the (pre-)dump is complete, while the tree is still
    /// frozen: --remote hands the images over here and returns once the destination acknowledged them. A
    /// DumpException thrown here fails the dump and releases the tree as it was (it is never killed for images
    /// that did not arrive).
    /// </summary>
    public Action<string>? ImagesComplete { get; init; }

    /// <summary>
    /// -j / --shell-job: the tree may hold the terminal of the shell that started it (a pty slave whose master is
    /// outside, or another tty) and belong to the shell's session; the restore gives it the restoring crest's terminal.
    /// </summary>
    public bool ShellJob { get; init; }

    /// <summary>
    /// --ext-unix-sk: which unix sockets connected to a peer outside the tree may be dumped (the restore connects a new
    /// socket to the peer's name). Without it such a socket fails the dump.
    /// </summary>
    public Files.UnixSocketPolicy ExternalUnixSockets { get; init; } = Files.UnixSocketPolicy.None;
}
