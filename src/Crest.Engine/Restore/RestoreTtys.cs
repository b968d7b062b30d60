// Terminals of a restored tree (files.img TTY entries, tty-info.img, tty-data.img; dump side Files/Ttys.cs).
//  - A pty whose master the tree held is recreated in Crest before any process gets its files: /dev/ptmx is
//    opened until it gives the dumped index (the kernel hands out the lowest free index, so the lower ones are
//    held open meanwhile and closed after; when the dumped index is taken by someone else the pty gets another
//    one, which the log says). Crest unlocks it, opens the slave from it (TIOCGPTPEER), queues the dumped bytes
//    (RefillOutput, RefillInput), and sets the slave's termios, locked termios and window size and the master's
//    packet mode. Each file id becomes one description in Crest (the master itself; a new slave description with
//    the dumped status flags), which the task takes with pidfd_open + pidfd_getfd: the same open file description,
//    as a descriptor passed over SCM_RIGHTS would be. Exclusive mode and the pty lock come last (Finish), once no
//    more opens are needed. A session leader whose terminal it was gets it back as its controlling terminal
//    (TIOCSCTTY injected with a descriptor of the slave) with the dumped foreground group (TIOCSPGRP).
//  - A terminal of the shell that started the tree (--shell-job): its fds are opened on the restoring Crest's own
//    controlling terminal (its stdin when it has none, as CRIU does), by the task, O_NOCTTY. The tree is in Crest's
//    session (RestoreProcessTree); when the job was the terminal's foreground group, its group becomes the
//    foreground group of Crest's terminal just before the tree is released (tcsetpgrp with SIGTTOU blocked).
//    The termios of the shell's terminal are the restoring user's and are left alone.
using System.Globalization;
using Crest.Diagnostics;
using Crest.Engine.Files;
using Crest.Images;
using Crest.Images.Protos;
using Crest.Kernel;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Files;

namespace Crest.Engine.Restore;

internal sealed class RestoreTtys : IDisposable
{
    private const uint PtmxMajor = 5, PtmxMinor = 2;
    private const long O_ACCMODE = 3, O_NONBLOCK = 0x800, O_APPEND = 0x400, O_ASYNC = 0x2000, O_NOCTTY = 0x100, AT_FDCWD = -100;
    private const long TIOCSCTTY = 0x540E, TIOCSPGRP = 0x5410;

    private sealed class Pair
    {
        public required uint Index;
        public required FileDescriptor Master;
        public required FileDescriptor Slave;
        public required TtyInfoEntry MasterInfo;
        public bool MasterTaken;
    }

    private readonly bool _shellJob;
    private readonly Dictionary<uint, TtyInfoEntry> _infos = [];
    private readonly Dictionary<uint, List<byte[]>> _data = [];
    private readonly Dictionary<uint, Pair> _pairs = [];
    private readonly Dictionary<uint, FileDescriptor> _descriptions = [];
    private string? _shellTerminal;
    private readonly HashSet<uint> _owned = [];

    private readonly RestoreInheritedFds? _inherited;
    private readonly Dictionary<uint, string> _inheritedTerminals = [];

    public RestoreTtys(string directory, bool shellJob, RestoreInheritedFds? inherited = null)
    {
        _shellJob = shellJob;
        _inherited = inherited;
        try
        {
            string infoPath = Path.Combine(directory, ImageKinds.FileName(ImageKinds.TtyInfo));
            if (File.Exists(infoPath))
            {
                using var reader = ImageReader.Open(infoPath, ImageKinds.TtyInfo);
                foreach (var info in reader.ReadEntries(TtyInfoEntry.Parser)) _infos[info.Id] = info;
            }
            string dataPath = Path.Combine(directory, ImageKinds.FileName(ImageKinds.TtyData));
            if (File.Exists(dataPath))
            {
                using var reader = ImageReader.Open(dataPath, ImageKinds.TtyData);
                foreach (var entry in reader.ReadEntries(TtyDataEntry.Parser))
                {
                    if (!_data.TryGetValue(entry.TtyId, out var list)) _data[entry.TtyId] = list = [];
                    list.Add(entry.Data.ToByteArray());
                }
            }
        }
        catch (ImageFormatException e)
        {
            throw new RestoreException($"corrupt image: {e.Message}", e);
        }
    }

    private static bool IsMaster(TtyInfoEntry info) =>
        FileStatus.Major(info.Rdev) == PtmxMajor && FileStatus.Minor(info.Rdev) == PtmxMinor;

    /// <summary>Pty indexes whose master the tree held.</summary>
    private IEnumerable<TtyInfoEntry> Masters => _infos.Values.Where(i => i.Type == TtyType.Pty && IsMaster(i) && i.Pty is not null);

    /// <summary>Whether <paramref name="info"/> is the terminal of the shell (no master of it in the images).</summary>
    private bool IsShellTerminal(TtyInfoEntry info) =>
        !(info.Type == TtyType.Pty && info.Pty is { } pty && Masters.Any(m => m.Pty.Index == pty.Index));

    /// <summary>Before anything is created: a shell's terminal needs --shell-job, and a terminal to give.</summary>
    public void CheckTree(RestoreTree tree)
    {
        foreach (var (pid, images) in tree.Processes.OrderBy(p => p.Key))
        {
            foreach (var fd in images.Fds.Where(f => f.Type == FdTypes.Tty).OrderBy(f => f.Fd))
            {
                var tty = images.Files.TryGetValue(fd.Id, out var file) && file.Tty is { } t ? t
                    : throw new RestoreException($"files.img has no tty with file id {fd.Id} (fd {fd.Fd} of task {pid})");
                var info = _infos.TryGetValue(tty.TtyInfoId, out var i) ? i
                    : throw new RestoreException($"tty-info.img has no entry {tty.TtyInfoId} (fd {fd.Fd} of task {pid})");
                if (!IsShellTerminal(info)) continue;
                string externalId = Files.Ttys.ExternalId(info.Rdev, info.Dev);
                if (_inherited?.LinkFor(externalId) is { } link)
                {
                    _inheritedTerminals[info.Id] = link;
                    Log.Info($"restore: task {pid} fd {fd.Fd}: the terminal {externalId} is --inherit-fd {link}");
                    continue;
                }
                if (!_shellJob)
                    throw new RestoreException($"task {pid} fd {fd.Fd} was dumped on the terminal of the shell that started it " +
                        "(a shell job); restore it with --shell-job (-j), which gives it this crest's terminal");
                _shellTerminal ??= FindOwnTerminal();
            }
        }
    }

    /// <summary>A path the task can open to reach Crest's controlling terminal (or its stdin when it has none).</summary>
    private static string FindOwnTerminal()
    {
        var stat = Crest.Kernel.Proc.ProcStat.Parse(Crest.Kernel.Proc.ProcFile.ReadAll("/proc/self/stat"));
        int self = Environment.ProcessId;
        ulong ctty = (uint)stat.TtyNr;
        for (int fd = 0; fd <= 2; fd++)
        {
            var st = RegularFiles.TryStat($"/proc/self/fd/{fd}");
            if (st is not { IsCharacterDevice: true } s) continue;
            if (ctty != 0 ? s.RDevice == ctty : IsTerminalFd(fd))
            {
                string link = new FileInfo($"/proc/self/fd/{fd}").LinkTarget ?? "";
                string path = link.StartsWith("/dev/", StringComparison.Ordinal) ? link : string.Create(CultureInfo.InvariantCulture, $"/proc/{self}/fd/{fd}");
                Log.Info($"restore: the shell job gets {(ctty != 0 ? "crest's controlling terminal" : "crest's stdin")} {path}");
                return path;
            }
        }
        if (ctty != 0)
        {
            Log.Info($"restore: the shell job gets crest's controlling terminal /dev/tty");
            return "/dev/tty";
        }
        throw new RestoreException("--shell-job: crest has no controlling terminal and its stdin is not a terminal, so there is no terminal to give the shell job");
    }

    private static bool IsTerminalFd(int fd)
    {
        try
        {
            using var own = FileDescriptor.Open($"/proc/self/fd/{fd}", OpenFlags.ReadOnly | OpenFlags.NoCtty | OpenFlags.NonBlock | OpenFlags.CloseOnExec);
            return Terminal.IsTerminal(own);
        }
        catch (KernelException)
        {
            return false;
        }
    }

    /// <summary>Create every pty pair of the images in Crest (before any task takes its fds).</summary>
    public void CreatePairs()
    {
        foreach (var masterInfo in Masters.OrderBy(m => m.Id))
        {
            uint index = masterInfo.Pty.Index;
            if (_pairs.ContainsKey(index)) continue;
            var master = OpenPtmx(index);
            try
            {
                Terminal.SetPtyLocked(master, false);
                var slave = Terminal.OpenPeer(master, OpenFlags.ReadWrite | OpenFlags.NoCtty | OpenFlags.NonBlock | OpenFlags.CloseOnExec);
                var pair = new Pair { Index = index, Master = master, Slave = slave, MasterInfo = masterInfo };
                _pairs[index] = pair;
                Prepare(pair);
            }
            catch (KernelException e)
            {
                master.Dispose();
                throw new RestoreException($"pty {index}: {e.Message}", e);
            }
            catch
            {
                master.Dispose();
                throw;
            }
        }
    }

    /// <summary>/dev/ptmx opened until it gives <paramref name="index"/>; the lower indexes taken meanwhile are let go.</summary>
    private static FileDescriptor OpenPtmx(uint index)
    {
        var held = new List<FileDescriptor>();
        try
        {
            while (true)
            {
                FileDescriptor master;
                try
                {
                    master = FileDescriptor.Open("/dev/ptmx", OpenFlags.ReadWrite | OpenFlags.NoCtty | OpenFlags.CloseOnExec);
                }
                catch (KernelException e)
                {
                    throw new RestoreException($"pty {index}: cannot open /dev/ptmx: {e.Message}", e);
                }
                int got = Terminal.GetPtyNumber(master);
                if (got == index) return master;
                if (got > index || held.Count >= 4096)
                {
                    Log.Warning($"restore: pty {index} is taken by another process; the restored pty is /dev/pts/{got}");
                    return master;
                }
                held.Add(master);
            }
        }
        finally
        {
            foreach (var fd in held) fd.Dispose();
        }
    }

    /// <summary>Queued bytes, termios, locked termios, window size, packet mode of a new pair.</summary>
    private void Prepare(Pair pair)
    {
        var info = pair.MasterInfo;
        var termios = info.Termios is { } t ? Ttys.FromEntry(t) : Terminal.GetTermios(pair.Slave);
        Terminal.SetTermios(pair.Slave, termios);
        var slaveInfos = _infos.Values.Where(i => i.Pty?.Index == pair.Index && !IsMaster(i)).Select(i => i.Id).ToHashSet();
        byte[] output = Concat(_data.TryGetValue(info.Id, out var o) ? o : []);
        byte[] input = Concat(_data.Where(d => slaveInfos.Contains(d.Key)).SelectMany(d => d.Value));
        if (output.Length > 0) Ttys.RefillOutput(pair.Master, pair.Slave, termios, output);
        if (input.Length > 0) Ttys.RefillInput(pair.Master, pair.Slave, termios, input);
        if (info.TermiosLocked is { } locked) Terminal.SetLockedTermios(pair.Slave, Ttys.FromEntry(locked));
        if (info.Winsize is { } w) Terminal.SetWindowSize(pair.Slave, new WindowSize((ushort)w.WsRow, (ushort)w.WsCol, (ushort)w.WsXpixel, (ushort)w.WsYpixel));
        if (info.PacketMode) Terminal.SetPacketMode(pair.Master, true);
        Log.Info($"restore: pty {pair.Index} recreated as /dev/pts/{Terminal.GetPtyNumber(pair.Master)}: {input.Length} bytes queued for the slave, " +
            $"{output.Length} for the master{(info.PacketMode ? ", packet mode" : "")}");
    }

    private static byte[] Concat(IEnumerable<byte[]> parts) => [.. parts.SelectMany(p => p)];

    /// <summary>Give the task terminal <paramref name="tty"/> as fd <paramref name="fd"/>; returns false when it was opened by path.</summary>
    public void Open(StubInjector task, FdinfoEntry fd, TtyFileEntry tty, bool cloexec)
    {
        var info = _infos[tty.TtyInfoId];
        if (IsShellTerminal(info))
        {
            string path = _inheritedTerminals.GetValueOrDefault(info.Id) ?? _shellTerminal
                ?? throw new RestoreException($"fd {fd.Fd} of task {task.Pid}: the shell's terminal was not looked for");
            long flags = (tty.Flags & ~(0x40L | 0x80 | 0x200 | 0x80000)) | O_NOCTTY;
            long opened = task.Syscall(SyscallNumbers.openat, AT_FDCWD, (long)task.PutString(path), flags, 0);
            task.ResetScratch();
            if (opened < 0)
                throw new RestoreException($"fd {fd.Fd} of task {task.Pid}: cannot open the terminal {path}: {Errno.FromRawReturn(opened)}");
            if (opened != fd.Fd)
            {
                task.Check("dup3", $"fd {fd.Fd} (terminal {path})", SyscallNumbers.dup3, opened, fd.Fd, cloexec ? 0x80000 : 0);
                task.Check("close", $"temporary fd {opened}", SyscallNumbers.close, opened);
            }
            else if (cloexec)
            {
                task.Check("fcntl(F_SETFD)", $"fd {fd.Fd}", SyscallNumbers.fcntl, fd.Fd, 2, 1);
            }
            Log.Debug($"{task.Pid}: restore: fd {fd.Fd} = the shell's terminal {path} flags 0x{flags:x}");
            return;
        }
        var description = Description(tty, info, $"fd {fd.Fd} of task {task.Pid}");
        RestoreFiles.TakeFrom(task, fd, Environment.ProcessId, description.Fd, cloexec);
        RestoreFiles.SetOwner(task, (int)fd.Fd, tty.Fown);
        if (!IsMaster(info) && info.HasUid && info.HasGid && _owned.Add(info.Pty.Index))
        {
            // The slave's inode (/dev/pts/N) belongs to whoever owned it at dump time (grantpt gave it to the user).
            const long fchown = 93;
            task.Check("fchown", $"fd {fd.Fd} (pty {info.Pty.Index} slave) to {info.Uid}:{info.Gid}", fchown, fd.Fd, info.Uid, info.Gid);
        }
        Log.Debug($"{task.Pid}: restore: fd {fd.Fd} = pty {info.Pty.Index} {(IsMaster(info) ? "master" : "slave")} (tty file {tty.Id})");
    }

    /// <summary>Crest's description for file id <paramref name="tty"/>: the master itself, or a new slave description.</summary>
    private FileDescriptor Description(TtyFileEntry tty, TtyInfoEntry info, string what)
    {
        if (_descriptions.TryGetValue(tty.Id, out var known)) return known;
        var pair = _pairs.TryGetValue(info.Pty.Index, out var p) ? p : throw new RestoreException($"{what}: pty {info.Pty.Index} was not recreated");
        long status = tty.Flags & (O_NONBLOCK | O_APPEND | O_ASYNC);
        try
        {
            FileDescriptor description;
            if (IsMaster(info))
            {
                if (pair.MasterTaken) throw new RestoreException($"{what}: pty {pair.Index} has two master descriptions");
                pair.MasterTaken = true;
                description = pair.Master;
                description.Fcntl(4 /* F_SETFL */, status);
            }
            else
            {
                description = Terminal.OpenPeer(pair.Master, (OpenFlags)((tty.Flags & O_ACCMODE) | status) | OpenFlags.NoCtty | OpenFlags.CloseOnExec);
            }
            _descriptions[tty.Id] = description;
            return description;
        }
        catch (KernelException e)
        {
            throw new RestoreException($"{what}: pty {pair.Index}: {e.Message}", e);
        }
    }

    /// <summary>A session leader gets the pty it controlled back as its controlling terminal, with its foreground group.</summary>
    public void SetControllingTerminal(StubInjector task, PstreeEntry entry)
    {
        if (entry.Sid != entry.Pid) return;
        foreach (var pair in _pairs.Values.Where(p => p.MasterInfo.Sid == entry.Pid))
        {
            string what = $"controlling terminal (pty {pair.Index}) of session leader {task.Pid}";
            long pidfd = task.Check("pidfd_open", what, SyscallNumbers.pidfd_open, Environment.ProcessId, 0);
            long slave = task.Check("pidfd_getfd", what, SyscallNumbers.pidfd_getfd, pidfd, pair.Slave.Fd, 0);
            task.Check("close", $"pidfd {pidfd}", SyscallNumbers.close, pidfd);
            task.Check("ioctl(TIOCSCTTY)", what, SyscallNumbers.ioctl, slave, TIOCSCTTY, 0);
            if (pair.MasterInfo.Pgrp != 0)
            {
                ulong pgrp = task.Put(BitConverter.GetBytes((int)pair.MasterInfo.Pgrp));
                task.Check("ioctl(TIOCSPGRP)", $"{what}, foreground group {pair.MasterInfo.Pgrp}", SyscallNumbers.ioctl, slave, TIOCSPGRP, (long)pgrp);
                task.ResetScratch();
            }
            task.Check("close", $"temporary fd {slave}", SyscallNumbers.close, slave);
            Log.Info($"{task.Pid}: restore: pty {pair.Index} is the controlling terminal again, foreground group {pair.MasterInfo.Pgrp}");
        }
    }

    /// <summary>Once every task has its fds: exclusive mode and the pty lock, which would refuse the opens before.</summary>
    public void Finish()
    {
        foreach (var pair in _pairs.Values)
        {
            bool exclusive = _infos.Values.Any(i => i.Pty?.Index == pair.Index && !IsMaster(i) && i.Exclusive);
            try
            {
                if (exclusive) Terminal.SetExclusive(pair.Slave, true);
                if (pair.MasterInfo.Locked) Terminal.SetPtyLocked(pair.Master, true);
            }
            catch (KernelException e)
            {
                throw new RestoreException($"pty {pair.Index}: {e.Message}", e);
            }
        }
    }

    /// <summary>
    /// A shell job that was in the foreground of its terminal becomes the foreground group of Crest's terminal
    /// (<paramref name="rootPgid"/>: the restored root's group). Returns the group that was in the foreground, or 0.
    /// </summary>
    public int ForegroundShellJob(RestoreTree tree)
    {
        if (_shellTerminal is null) return 0;
        var root = tree.Root;
        bool foreground = _infos.Values.Any(i => IsShellTerminal(i) && i.Pgrp != 0 && i.Pgrp == root.Pgid);
        if (!foreground) return 0;
        int pgid = Crest.Kernel.Proc.ProcStat.Parse(Crest.Kernel.Proc.ProcFile.ReadAll(tree.RootPid, "stat")).Pgrp;
        try
        {
            using var terminal = FileDescriptor.Open(_shellTerminal, OpenFlags.ReadWrite | OpenFlags.NoCtty | OpenFlags.NonBlock | OpenFlags.CloseOnExec);
            int before = Terminal.GetForegroundGroup(terminal);
            Terminal.WithoutSigttou(() => Terminal.SetForegroundGroup(terminal, pgid));
            Log.Info($"restore: group {pgid} of the shell job is the foreground group of {_shellTerminal} (was {before})");
            return before;
        }
        catch (KernelException e)
        {
            Log.Warning($"restore: cannot make group {pgid} the foreground group of {_shellTerminal}: {e.Message}");
            return 0;
        }
    }

    /// <summary>After a failure: the terminal's foreground group goes back to <paramref name="pgrp"/>.</summary>
    public void GiveBackForeground(int pgrp)
    {
        if (_shellTerminal is null || pgrp == 0) return;
        try
        {
            using var terminal = FileDescriptor.Open(_shellTerminal, OpenFlags.ReadWrite | OpenFlags.NoCtty | OpenFlags.NonBlock | OpenFlags.CloseOnExec);
            Terminal.WithoutSigttou(() => Terminal.SetForegroundGroup(terminal, pgrp));
        }
        catch (KernelException e)
        {
            Log.Warning($"restore: cannot give the foreground of {_shellTerminal} back to group {pgrp}: {e.Message}");
        }
    }

    public void Dispose()
    {
        foreach (var d in _descriptions.Values) d.Dispose();
        _descriptions.Clear();
        foreach (var pair in _pairs.Values)
        {
            pair.Master.Dispose();
            pair.Slave.Dispose();
        }
        _pairs.Clear();
    }
}
