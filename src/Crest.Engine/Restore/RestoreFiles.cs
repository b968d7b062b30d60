// File descriptors, cwd and umask of a restored task (ENGINE.md §4.4, CRIU files-reg.c / files.c).
// Regular files (and character devices such as /dev/null) are reopened by path inside the task with their
// status flags (O_APPEND, O_NONBLOCK...; never O_CREAT/O_TRUNC), moved to their number with dup3 (O_CLOEXEC
// from the fd flags) and set to their offset. Opening in the task gives the same result as opening in Crest
// and passing the file over SCM_RIGHTS, with three syscalls fewer; objects that cannot be reopened by path
// (pipes, sockets) will need the passing. Descriptors that shared an open file description share one again,
// within a process (dup3) and across the processes of a tree (pidfd_getfd from the first process that has it).
using Crest.Diagnostics;
using Crest.Images.Protos;
using Crest.Kernel.Arch.X64;

namespace Crest.Engine.Restore;

internal static class RestoreFiles
{
    private const long O_CREAT = 0x40, O_EXCL = 0x80, O_NOCTTY = 0x100, O_TRUNC = 0x200, O_CLOEXEC = 0x80000;
    private const long FD_CLOEXEC = 1, F_SETFD = 2, F_SETSIG = 10, F_SETOWN_EX = 15, SEEK_SET = 0, AT_FDCWD = -100;

    /// <summary>Open <paramref name="file"/> as fd <paramref name="fd"/>: by its path, or through <paramref name="inheritedLink"/>
    /// (Crest's /proc link of the fd given with --inherit-fd) when one replaces it.</summary>
    private static void OpenAt(StubInjector task, FdinfoEntry fd, RegFileEntry file, bool cloexec, string? inheritedLink)
    {
        long flags = file.Flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY | O_CLOEXEC);
        string path = inheritedLink ?? file.Name;
        long opened = task.Syscall(SyscallNumbers.openat, AT_FDCWD, (long)task.PutString(path), flags, 0);
        task.ResetScratch();
        if (opened < 0)
            throw new RestoreException(inheritedLink is null
                ? $"fd {fd.Fd} of task {task.Pid}: cannot open {file.Name}: {Crest.Kernel.Errno.FromRawReturn(opened)}"
                : $"fd {fd.Fd} of task {task.Pid}: cannot open the inherited fd for {RestoreInheritedFds.Key(file)} through {inheritedLink}: {Crest.Kernel.Errno.FromRawReturn(opened)}");
        if (opened != fd.Fd)
        {
            task.Check("dup3", $"fd {fd.Fd} ({file.Name})", SyscallNumbers.dup3, opened, fd.Fd, cloexec ? O_CLOEXEC : 0);
            task.Check("close", $"temporary fd {opened}", SyscallNumbers.close, opened);
        }
        else if (cloexec)
        {
            task.Check("fcntl(F_SETFD)", $"fd {fd.Fd}", SyscallNumbers.fcntl, fd.Fd, F_SETFD, FD_CLOEXEC);
        }
        if (file.Pos != 0)
        {
            long pos = task.Check("lseek", $"fd {fd.Fd} ({file.Name})", SyscallNumbers.lseek, fd.Fd, (long)file.Pos, SEEK_SET);
            if (pos != (long)file.Pos) throw new RestoreException($"fd {fd.Fd} of task {task.Pid}: lseek to {file.Pos} gave {pos}");
        }
        SetOwner(task, (int)fd.Fd, file.Fown);
        Log.Debug($"{task.Pid}: restore: fd {fd.Fd} = {file.Name}{(inheritedLink is null ? "" : " from " + inheritedLink)} flags 0x{flags:x} pos {file.Pos}{(cloexec ? " cloexec" : "")}");
    }

    /// <summary>The owner of SIGIO/SIGURG of fd <paramref name="number"/> and the signal sent, when one was set.</summary>
    internal static void SetOwner(StubInjector task, int number, FownEntry? fown)
    {
        var fd = new { Fd = number };
        if (fown is { } owner && (owner.Pid != 0 || owner.Signum != 0))
        {
            // The owner of SIGIO/SIGURG (fcntl F_SETOWN_EX with F_OWNER_TID/PID/PGRP) and the signal sent.
            if (owner.Pid != 0)
            {
                var ownerEx = new byte[8];
                BitConverter.TryWriteBytes(ownerEx, (int)owner.PidType);
                BitConverter.TryWriteBytes(ownerEx.AsSpan(4), (int)owner.Pid);
                task.Check("fcntl(F_SETOWN_EX)", $"fd {fd.Fd} owner {owner.PidType}:{owner.Pid}", SyscallNumbers.fcntl, fd.Fd, F_SETOWN_EX, (long)task.Put(ownerEx));
                task.ResetScratch();
            }
            if (owner.Signum != 0)
                task.Check("fcntl(F_SETSIG)", $"fd {fd.Fd} signal {owner.Signum}", SyscallNumbers.fcntl, fd.Fd, F_SETSIG, owner.Signum);
        }
    }

    /// <summary>
    /// Take the description <paramref name="otherFd"/> of process <paramref name="otherPid"/> (restored earlier and
    /// still held) as fd <paramref name="fd"/>: pidfd_open + pidfd_getfd (Linux 5.6) in the task, which gives it the
    /// same open file description, so offset and status flags stay shared with the other process.
    /// </summary>
    internal static void TakeFrom(StubInjector task, FdinfoEntry fd, int otherPid, int otherFd, bool cloexec)
    {
        string what = $"fd {fd.Fd} (file id {fd.Id}, shared with fd {otherFd} of task {otherPid})";
        long pidfd = task.Check("pidfd_open", what, SyscallNumbers.pidfd_open, otherPid, 0);
        long got = task.Check("pidfd_getfd", what, SyscallNumbers.pidfd_getfd, pidfd, otherFd, 0);
        if (got != fd.Fd)
        {
            // When the pidfd took the number fd.Fd, this dup3 closes it.
            task.Check("dup3", what, SyscallNumbers.dup3, got, fd.Fd, cloexec ? O_CLOEXEC : 0);
            task.Check("close", $"temporary fd {got}", SyscallNumbers.close, got);
        }
        else if (!cloexec)
        {
            task.Check("fcntl(F_SETFD)", what, SyscallNumbers.fcntl, fd.Fd, F_SETFD, 0); // pidfd_getfd sets FD_CLOEXEC
        }
        if (pidfd != fd.Fd) task.Check("close", $"pidfd {pidfd}", SyscallNumbers.close, pidfd);
        Log.Debug($"{task.Pid}: restore: fd {fd.Fd} = fd {otherFd} of task {otherPid}{(cloexec ? " cloexec" : "")}");
    }

    /// <summary>
    /// The fds, cwd and umask of one process. <paramref name="shared"/> holds, for each file id already given to
    /// a process of the tree, where it is (pid, fd); <paramref name="pipes"/> the tree's pipes.
    /// </summary>
    public static void Restore(StubInjector task, RestoreImages images, RestorePipes pipes, RestoreUnixSockets sockets, RestoreInheritedFds inherited,
        Dictionary<uint, (int Pid, int Fd)> shared, RestoreTtys? ttys = null, bool fds = true)
    {
        if (fds) RestoreFds(task, images, pipes, sockets, inherited, shared, ttys);
        RestoreFs(task, images);
    }

    /// <summary>The fd table of one process (not of one that shares its parent's: <see cref="Restore"/>'s fds is false).</summary>
    private static void RestoreFds(StubInjector task, RestoreImages images, RestorePipes pipes, RestoreUnixSockets sockets, RestoreInheritedFds inherited,
        Dictionary<uint, (int Pid, int Fd)> shared, RestoreTtys? ttys)
    {
        // Descriptors with one file id share one open file description (dup, dup2, fork): it is opened once,
        // at the lowest number, and duplicated to the others, so that they share the offset and status flags.
        // Another process of the tree that has it already passes it on (TakeFrom).
        var opened = new Dictionary<uint, int>();
        foreach (var fd in images.Fds.OrderBy(f => f.Fd))
        {
            if (!opened.ContainsKey(fd.Id) && shared.TryGetValue(fd.Id, out var holder) && holder.Pid != task.Pid)
            {
                TakeFrom(task, fd, holder.Pid, holder.Fd, (fd.Flags & FD_CLOEXEC) != 0);
                opened[fd.Id] = (int)fd.Fd;
                continue;
            }
            if (fd.Type == FdTypes.Pipe && !opened.ContainsKey(fd.Id))
            {
                if (!images.Files.TryGetValue(fd.Id, out var p) || p.Pipe is null)
                    throw new RestoreException($"files.img has no pipe with file id {fd.Id} (fd {fd.Fd})");
                pipes.Open(task, fd, p.Pipe, (fd.Flags & FD_CLOEXEC) != 0, inherited.LinkFor(RestoreInheritedFds.Key(p.Pipe)));
                opened[fd.Id] = (int)fd.Fd;
                shared.TryAdd(fd.Id, (task.Pid, (int)fd.Fd));
                continue;
            }
            if (fd.Type == FdTypes.Fifo && !opened.ContainsKey(fd.Id))
            {
                if (!images.Files.TryGetValue(fd.Id, out var f) || f.Fifo is null)
                    throw new RestoreException($"files.img has no FIFO with file id {fd.Id} (fd {fd.Fd})");
                var path = images.RegularFile(f.Fifo.RegfId, $"path of the FIFO at fd {fd.Fd}");
                pipes.OpenFifo(task, fd, f.Fifo, path, (fd.Flags & FD_CLOEXEC) != 0);
                opened[fd.Id] = (int)fd.Fd;
                shared.TryAdd(fd.Id, (task.Pid, (int)fd.Fd));
                continue;
            }
            if (fd.Type == FdTypes.Tty && !opened.ContainsKey(fd.Id))
            {
                if (!images.Files.TryGetValue(fd.Id, out var t) || t.Tty is null)
                    throw new RestoreException($"files.img has no tty with file id {fd.Id} (fd {fd.Fd})");
                if (ttys is null) throw new RestoreException($"fd {fd.Fd} of task {task.Pid} is a terminal, which this restore was not set up for");
                ttys.Open(task, fd, t.Tty, (fd.Flags & FD_CLOEXEC) != 0);
                opened[fd.Id] = (int)fd.Fd;
                shared.TryAdd(fd.Id, (task.Pid, (int)fd.Fd));
                continue;
            }
            if (fd.Type == FdTypes.Unixsk && !opened.ContainsKey(fd.Id))
            {
                if (!images.Files.TryGetValue(fd.Id, out var u) || u.Usk is null)
                    throw new RestoreException($"files.img has no unix socket with file id {fd.Id} (fd {fd.Fd})");
                sockets.Open(task, fd, u.Usk, (fd.Flags & FD_CLOEXEC) != 0, inherited.FdFor(RestoreInheritedFds.Key(u.Usk)));
                opened[fd.Id] = (int)fd.Fd;
                shared.TryAdd(fd.Id, (task.Pid, (int)fd.Fd));
                continue;
            }
            bool cloexec = (fd.Flags & FD_CLOEXEC) != 0;
            if (opened.TryGetValue(fd.Id, out int first))
            {
                task.Check("dup3", $"fd {fd.Fd} (same file as fd {first})", SyscallNumbers.dup3, first, fd.Fd, cloexec ? O_CLOEXEC : 0);
                Log.Debug($"{task.Pid}: restore: fd {fd.Fd} = fd {first}{(cloexec ? " cloexec" : "")}");
                continue;
            }
            if (fd.Type != FdTypes.Reg)
                throw new RestoreException($"fd {fd.Fd} of task {task.Pid} is a {fd.Type}, which this restore does not support yet");
            var file = images.RegularFile(fd.Id, $"fd {fd.Fd}");
            OpenAt(task, fd, file, cloexec, inherited.LinkFor(RestoreInheritedFds.Key(file)));
            opened[fd.Id] = (int)fd.Fd;
            shared.TryAdd(fd.Id, (task.Pid, (int)fd.Fd));
        }
    }

    /// <summary>cwd and umask.</summary>
    private static void RestoreFs(StubInjector task, RestoreImages images)
    {
        if (images.Fs is { } fs)
        {
            var cwd = images.RegularFile(fs.CwdId, "cwd");
            task.Check("chdir", $"cwd {cwd.Name}", 80 /* chdir */, (long)task.PutString(cwd.Name));
            task.ResetScratch();
            if (images.Files.TryGetValue(fs.RootId, out var root) && root.Reg is { } r && r.Name != "/")
                throw new RestoreException($"task {task.Pid} had root {r.Name}; restoring a chroot is not supported yet");
            if (fs.HasUmask) task.Syscall(SyscallNumbers.umask, fs.Umask);
        }
    }
}
