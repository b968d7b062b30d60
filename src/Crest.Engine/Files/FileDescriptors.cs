// The fd table of a task: /proc/PID/fd (readlink gives the kind: a path, or "pipe:[ino]", "socket:[ino]",
// "anon_inode:[eventfd]"...) and /proc/PID/fdinfo/N (pos, flags in octal with O_CLOEXEC, mnt_id). Every fd
// is checked before the dump changes anything in the task, so an unsupported one fails the dump early.
// Descriptors that share one open file description (dup, dup2, inherited) get one file id, found with
// kcmp(KCMP_FILE) among the fds on the same inode, so that restore keeps their position shared.
// The owner set with F_SETOWN(_EX) / F_SETSIG is read from a duplicate taken with pidfd_getfd (Linux 5.6):
// F_GETOWN_EX, F_GETSIG and F_GETOWNER_UIDS (CONFIG_CHECKPOINT_RESTORE).
using System.Globalization;
using Crest.Diagnostics;
using Crest.Engine.Dump;
using Crest.Images.Protos;
using Crest.Kernel;
using Crest.Kernel.Files;
using Crest.Kernel.Proc;
using Crest.Kernel.Processes;

namespace Crest.Engine.Files;

internal static class FileDescriptors
{
    private const uint O_CLOEXEC = 0x80000, FD_CLOEXEC = 1;
    private const int F_GETSIG = 11, F_GETOWN_EX = 16, F_GETOWNER_UIDS = 17;

    /// <summary>Describe every fd of <paramref name="pid"/> into <paramref name="table"/>; returns fdinfo-N.img's entries.</summary>
    /// <param name="unions">The union mounts of the task: a path the kernel gives inside a branch is named through the union.</param>
    /// <param name="leftOut">fds that are Crest's own (the dirty-page tracker), not the task's.</param>
    public static List<FdinfoEntry> Collect(int pid, FileTable table, SharedFiles shared, UnionMounts unions, IReadOnlySet<int>? leftOut = null)
    {
        var fds = new List<int>();
        foreach (string entry in Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd"))
        {
            int fd = int.Parse(Path.GetFileName(entry), CultureInfo.InvariantCulture);
            if (leftOut is null || !leftOut.Contains(fd)) fds.Add(fd);
        }
        fds.Sort();
        var result = new List<FdinfoEntry>(fds.Count);
        using var pidfd = PidFd.Open(pid);
        var pipes = shared.Pipes;
        foreach (int fd in fds)
        {
            string what = $"task {pid} fd {fd}";
            string link = $"/proc/{pid}/fd/{fd}";
            string target = new FileInfo(link).LinkTarget ?? throw new DumpException($"{what}: readlink {link} failed.");
            if (Pipes.IsPipe(target, out uint pipeId))
            {
                var status = FdInfo.Parse(ProcFile.ReadAll(pid, $"fdinfo/{fd}")).Flags;
                uint pipe = pipes.Add(pid, fd, pipeId, status, ReadOwner(pidfd, fd, what), table, what);
                result.Add(new FdinfoEntry { Id = pipe, Flags = (status & O_CLOEXEC) != 0 ? FD_CLOEXEC : 0, Type = FdTypes.Pipe, Fd = (uint)fd });
                continue;
            }
            if (UnixSockets.IsSocket(target, out uint socketInode))
            {
                uint status = FdInfo.Parse(ProcFile.ReadAll(pid, $"fdinfo/{fd}")).Flags;
                uint socket = shared.UnixSockets.Add(pidfd, fd, socketInode, status, () => ReadOwner(pidfd, fd, what), table, what);
                result.Add(new FdinfoEntry { Id = socket, Flags = (status & O_CLOEXEC) != 0 ? FD_CLOEXEC : 0, Type = FdTypes.Unixsk, Fd = (uint)fd });
                continue;
            }
            if (!target.StartsWith('/'))
                throw new DumpException($"{what}: unsupported file kind ({target}).");
            if (target.StartsWith("/memfd:", StringComparison.Ordinal))
                throw new DumpException($"{what}: unsupported file kind (memfd {target}).");
            var info = FdInfo.Parse(ProcFile.ReadAll(pid, $"fdinfo/{fd}"));
            var st = RegularFiles.TryStat(link) ?? throw new DumpException($"{what}: {link} cannot be opened (the fd was closed during the dump?).");
            string externalId = ExternalFiles.FileId(info.MntId ?? -1, st.Inode);
            if (shared.External.Contains(externalId))
            {
                result.Add(new FdinfoEntry
                {
                    Id = AddExternal(pidfd, fd, externalId, info, st, table, shared, what),
                    Flags = (info.Flags & O_CLOEXEC) != 0 ? FD_CLOEXEC : 0,
                    Type = FdTypes.Reg,
                    Fd = (uint)fd,
                });
                continue;
            }
            if (st.IsFifo && !target.EndsWith(" (deleted)", StringComparison.Ordinal))
            {
                var reg = RegularFiles.Describe(target, info.Flags, 0, st, info.MntId);
                reg.Fown = ReadOwner(pidfd, fd, what);
                uint fifo = shared.Pipes.AddFifo(pid, fd, st.Device, st.Inode, reg, table, what);
                result.Add(new FdinfoEntry { Id = fifo, Flags = (info.Flags & O_CLOEXEC) != 0 ? FD_CLOEXEC : 0, Type = FdTypes.Fifo, Fd = (uint)fd });
                continue;
            }
            if (!RegularFiles.IsSupported(st) && Ttys.IsTerminal(st, pidfd, fd))
            {
                uint tty = shared.Ttys.Add(pidfd, fd, target, info, st, ReadOwner(pidfd, fd, what), table, shared, what);
                result.Add(new FdinfoEntry { Id = tty, Flags = (info.Flags & O_CLOEXEC) != 0 ? FD_CLOEXEC : 0, Type = FdTypes.Tty, Fd = (uint)fd });
                continue;
            }
            if (!RegularFiles.IsSupported(st))
                throw new DumpException($"{what}: unsupported file kind ({target}, mode {Convert.ToString(st.Mode, 8)}).");
            if (target.EndsWith(" (deleted)", StringComparison.Ordinal))
                throw new DumpException($"{what}: file {target[..^" (deleted)".Length]} was deleted, so a restore cannot reopen it; {shared.External.Advice(externalId)}.");
            var (path, atPath, mntId) = RegularFiles.Resolve(what, target, st, info.MntId, unions, shared.External.Advice(externalId));
            uint id = shared.Find(st.Device, st.Inode, pid, fd);
            if (id == 0)
            {
                var reg = RegularFiles.Describe(path, info.Flags, (ulong)info.Pos, atPath, mntId, link);
                reg.Fown = ReadOwner(pidfd, fd, what);
                id = table.Add(reg);
                shared.Add(st.Device, st.Inode, pid, fd, id);
            }
            result.Add(new FdinfoEntry
            {
                Id = id,
                Flags = (info.Flags & O_CLOEXEC) != 0 ? FD_CLOEXEC : 0,
                Type = FdTypes.Reg,
                Fd = (uint)fd,
            });
        }
        return result;
    }

    /// <summary>
    /// An fd on a file given with --external: a REG entry named by the id with <c>ext</c> set (as CRIU writes it), with
    /// the flags, position and owner the replacement gets at restore. The path is not looked at: it may be gone.
    /// </summary>
    private static uint AddExternal(PidFd pidfd, int fd, string externalId, FdInfo info, FileStatus st, FileTable table, SharedFiles shared, string what)
    {
        int pid = pidfd.Pid;
        uint id = shared.Find(st.Device, st.Inode, pid, fd);
        if (id != 0) return id;
        id = table.Add(new RegFileEntry
        {
            Flags = info.Flags,
            Pos = (ulong)info.Pos,
            Fown = ReadOwner(pidfd, fd, what),
            Name = externalId,
            Ext = true,
            Mode = st.Mode,
        });
        shared.Add(st.Device, st.Inode, pid, fd, id);
        Log.Info($"{pid}: dump: fd {fd} is the external file {externalId}, pos {info.Pos}");
        return id;
    }

    /// <summary>The fd's owner for SIGIO/SIGURG (CRIU's fown): all zeros when none was set.</summary>
    private static unsafe FownEntry ReadOwner(PidFd pidfd, int fd, string what)
    {
        try
        {
            using var dup = pidfd.GetFd(fd);
            var owner = stackalloc int[2];    // struct f_owner_ex { int type; pid_t pid; }
            var uids = stackalloc uint[2];    // uid, euid of whoever set the owner
            dup.Fcntl(F_GETOWN_EX, (long)owner);
            int signal = dup.Fcntl(F_GETSIG);
            if (owner[1] == 0) return new FownEntry { Uid = 0, Euid = 0, Signum = (uint)signal, PidType = 0, Pid = 0 };
            dup.Fcntl(F_GETOWNER_UIDS, (long)uids);
            return new FownEntry { Uid = uids[0], Euid = uids[1], Signum = (uint)signal, PidType = (uint)owner[0], Pid = (uint)owner[1] };
        }
        catch (KernelException e)
        {
            throw new DumpException($"{what}: cannot read the file owner: {e.Message}.", e);
        }
    }
}
