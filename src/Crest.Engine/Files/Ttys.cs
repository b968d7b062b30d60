// Terminals held by the dumped tree, as CRIU's TTY file entries (CRIU tty.c):
//   files.img   one TTY entry per open file description {id, tty_info_id, flags, fown, regf_id} plus the REG
//               entry of its path (/dev/ptmx, /dev/pts/N) that regf_id names;
//   tty-info.img one TtyInfoEntry per terminal end: type (PTY for both ends of a Unix98 pty), pty index, rdev,
//               termios (TCGETS2), locked termios, window size, packet mode (master), locked (master), exclusive,
//               the session and foreground group of the slave, the slave's owner;
//   tty-data.img the bytes queued for a reader: tty_id is the tty-info id of the end that would read them
//               (the slave's input, written to the master and not read yet; the master's input, written to the slave).
// Two kinds of terminal:
//  - a pty whose master (/dev/ptmx) is held by the tree: recreated at restore (RestoreTtys.cs). Its state is read
//    through a duplicate of the master (pidfd_getfd), where termios, window size, session and group calls reach the
//    slave; the slave's own state (exclusive, queued input) through a new description of it (TIOCGPTPEER, the pty
//    unlocked for that moment). Queued input cannot be peeked at (no tee for ttys): it is read out, with the slave
//    switched to non-canonical mode for the read so that a partial line comes too, and written back (echo off)
//    when the tree is left running or the dump fails (RefillInput);
//  - any other terminal (the slave of a pty whose master is outside, a VT, a serial line, /dev/tty): the terminal
//    of the shell that started the tree. Only a shell job (--shell-job) may hold one; its fds are reopened on the
//    restoring Crest's terminal. Without --shell-job the dump fails, naming the fd and the option.
using System.Globalization;
using Crest.Diagnostics;
using Crest.Engine.Dump;
using Crest.Images.Protos;
using Crest.Kernel;
using Crest.Kernel.Files;
using Crest.Kernel.Proc;
using Crest.Kernel.Processes;

namespace Crest.Engine.Files;

internal sealed class Ttys
{
    private const uint PtmxMajor = 5, PtmxMinor = 2, PtsMajorFirst = 136, PtsMajorLast = 143;
    private const uint O_CLOEXEC = 0x80000;

    /// <summary>A terminal end: which pty (or device) and whether it is the master.</summary>
    private readonly record struct End(bool Master, int Index, ulong RDevice);

    private sealed class Seen
    {
        public required TtyInfoEntry Info;
        public readonly List<(int Pid, int Fd, uint Id)> Files = [];
    }

    private readonly bool _shellJob;
    private readonly Dictionary<End, Seen> _ends = [];
    private readonly Dictionary<ulong, (int Pid, int Fd, string Path)> _firstExternal = [];
    private readonly List<(FileDescriptor Master, Termios Termios, byte[] Input, byte[] Output, bool Packet)> _consumed = [];

    private readonly ExternalFiles? _external;

    public Ttys(bool shellJob, ExternalFiles? external = null)
    {
        _shellJob = shellJob;
        _external = external;
    }

    /// <summary>CRIU's id of a terminal for --external and --inherit-fd: <c>tty[RDEV:DEV]</c>, both in hex.</summary>
    public static string ExternalId(uint rdev, uint dev) => string.Create(CultureInfo.InvariantCulture, $"tty[{rdev:x}:{dev:x}]");

    /// <summary>tty-info.img entries, in the order the ends were first seen.</summary>
    public List<TtyInfoEntry> Infos { get; } = [];

    /// <summary>tty-data.img entries.</summary>
    public List<TtyDataEntry> Data { get; } = [];

    /// <summary>Whether the character device <paramref name="st"/> is a terminal end this class takes: a pty end, or any tty.</summary>
    public static bool IsTerminal(FileStatus st, PidFd pidfd, int fd)
    {
        if (!st.IsCharacterDevice) return false;
        uint major = FileStatus.Major(st.RDevice);
        if (major is (>= PtsMajorFirst and <= PtsMajorLast) || (major == PtmxMajor && FileStatus.Minor(st.RDevice) == PtmxMinor)) return true;
        try
        {
            using var dup = pidfd.GetFd(fd);
            return Terminal.IsTerminal(dup);
        }
        catch (KernelException)
        {
            return false;
        }
    }

    /// <summary>The file id of terminal fd <paramref name="fd"/> of <paramref name="pid"/> (its link <paramref name="target"/>).</summary>
    public uint Add(PidFd pidfd, int fd, string target, FdInfo info, FileStatus st, FownEntry owner, FileTable table, SharedFiles shared, string what)
    {
        int pid = pidfd.Pid;
        using var dup = pidfd.GetFd(fd);
        uint major = FileStatus.Major(st.RDevice), minor = FileStatus.Minor(st.RDevice);
        bool master = major == PtmxMajor && minor == PtmxMinor;
        bool pts = major is >= PtsMajorFirst and <= PtsMajorLast;
        int index;
        try
        {
            index = master ? Terminal.GetPtyNumber(dup) : pts ? (int)(((major - PtsMajorFirst) << 20) | minor) : (int)minor;
        }
        catch (KernelException e)
        {
            throw new DumpException($"{what}: cannot read the pty number of {target}: {e.Message}.", e);
        }
        var end = new End(master, index, master || pts ? 0 : st.RDevice);
        if (!_ends.TryGetValue(end, out var seen))
        {
            seen = new Seen { Info = Describe(pid, dup, st, master, pts, index, what) };
            seen.Info.Id = (uint)Infos.Count + 1;
            _ends[end] = seen;
            Infos.Add(seen.Info);
        }
        if (!master) _firstExternal.TryAdd(st.RDevice, (pid, fd, target));

        uint id = shared.Find(st.Device, st.Inode, pid, fd);
        if (id != 0) return id;
        var reg = RegularFiles.Describe(target, info.Flags & ~O_CLOEXEC, 0, st, info.MntId);
        uint regfId = table.Add(reg);
        id = table.Add(new TtyFileEntry { TtyInfoId = seen.Info.Id, Flags = info.Flags & ~O_CLOEXEC, Fown = owner, RegfId = regfId });
        shared.Add(st.Device, st.Inode, pid, fd, id);
        seen.Files.Add((pid, fd, id));
        Log.Info($"{pid}: dump: fd {fd} is {(master ? "the master of pty" : pts ? "the slave of pty" : "terminal")} {index} ({target}), tty-info {seen.Info.Id}");
        return id;
    }

    private static TtyInfoEntry Describe(int pid, FileDescriptor dup, FileStatus st, bool master, bool pts, int index, string what)
    {
        try
        {
            var termios = Terminal.GetTermios(dup);
            var info = new TtyInfoEntry
            {
                Type = pts || master ? TtyType.Pty : Kind(st.RDevice),
                Locked = master && Terminal.GetPtyLocked(dup),
                Exclusive = Terminal.GetExclusive(dup),
                PacketMode = master && Terminal.GetPacketMode(dup),
                Sid = 0,
                Pgrp = 0,
                Rdev = (uint)st.RDevice,
                Termios = ToEntry(termios),
                TermiosLocked = ToEntry(Terminal.GetLockedTermios(dup)),
                Winsize = ToEntry(Terminal.GetWindowSize(dup)),
                Dev = (uint)st.Device,
                Uid = st.Uid,
                Gid = st.Gid,
            };
            if (pts || master) info.Pty = new TtyPtyEntry { Index = (uint)index };
            if (master)
            {
                // The slave's session and foreground group, reached through the master.
                info.Sid = (uint)Terminal.GetSession(dup);
                info.Pgrp = (uint)Terminal.GetForegroundGroup(dup);
            }
            else
            {
                // Not Crest's terminal: TIOCGSID would refuse. The task's own view: /proc/PID/stat names its
                // controlling terminal, its session and the terminal's foreground group.
                var stat = ProcStat.Parse(ProcFile.ReadAll(pid, "stat"));
                if ((ulong)(uint)stat.TtyNr == st.RDevice)
                {
                    info.Sid = (uint)stat.Session;
                    info.Pgrp = stat.Tpgid > 0 ? (uint)stat.Tpgid : 0;
                }
            }
            return info;
        }
        catch (KernelException e)
        {
            throw new DumpException($"{what}: cannot read the terminal state: {e.Message}.", e);
        }
    }

    /// <summary>CRIU's tty type of a terminal that is not a pty end, by its device number.</summary>
    private static TtyType Kind(ulong rdev) => (FileStatus.Major(rdev), FileStatus.Minor(rdev)) switch
    {
        (5, 0) => TtyType.Ctty,
        (5, 1) => TtyType.Console,
        (4, < 64) => TtyType.Vt,
        _ => TtyType.Serial,
    };

    public static TermiosEntry ToEntry(Termios t)
    {
        var entry = new TermiosEntry
        {
            CIflag = t.InputFlags, COflag = t.OutputFlags, CCflag = t.ControlFlags, CLflag = t.LocalFlags,
            CLine = t.Line, CIspeed = t.InputSpeed, COspeed = t.OutputSpeed,
        };
        foreach (byte c in t.ControlChars) entry.CCc.Add(c);
        return entry;
    }

    public static Termios FromEntry(TermiosEntry e) =>
        new(e.CIflag, e.COflag, e.CCflag, e.CLflag, (byte)e.CLine, [.. e.CCc.Select(c => (byte)c)], e.CIspeed, e.COspeed);

    private static WinsizeEntry ToEntry(WindowSize w) => new() { WsRow = w.Rows, WsCol = w.Columns, WsXpixel = w.XPixels, WsYpixel = w.YPixels };

    /// <summary>
    /// Once the whole tree is seen: refuse terminals of the shell without --shell-job, then read the bytes queued in
    /// each pty of the tree (consumed: <see cref="PutBack"/> returns them if the tree goes on running).
    /// </summary>
    public void Finish(IReadOnlySet<int> tree)
    {
        var masters = _ends.Keys.Where(e => e.Master).Select(e => e.Index).ToHashSet();
        foreach (var (end, seen) in _ends.OrderBy(e => e.Value.Info.Id))
        {
            if (end.Master || (end.RDevice == 0 && masters.Contains(end.Index))) continue;
            var (pid, fd, _) = seen.Files.Count > 0 ? seen.Files[0] : (0, 0, 0u);
            string path = seen.Files.Count > 0 && _firstExternal.TryGetValue((ulong)seen.Info.Rdev, out var first) ? first.Path : "a terminal";
            string externalId = ExternalId(seen.Info.Rdev, seen.Info.Dev);
            bool external = _external?.Contains(externalId) == true;
            if (!_shellJob && !external)
                throw new DumpException($"task {pid} fd {fd}: {path} is a terminal whose other end is outside the dumped tree " +
                    "(the terminal of the shell that started it); dump it as a shell job with --shell-job (-j) and restore it with --shell-job, " +
                    $"which gives it the restoring crest's terminal, or dump it with --external {externalId} and restore it with " +
                    $"--inherit-fd fd[N]:{externalId} where N is an fd of the restoring process open on the terminal to give it");
            if (external) Log.Info($"dump: {path} (tty-info {seen.Info.Id}) is the external terminal {externalId}");
            seen.Info.Type = end.RDevice == 0 ? TtyType.Pty : seen.Info.Type;
            if (seen.Info.Sid != 0 && tree.Contains((int)seen.Info.Sid))
                Log.Warning($"dump: {path} is the controlling terminal of session leader {seen.Info.Sid} of the tree; after a --shell-job restore " +
                    "its fds are on the restoring crest's terminal but the restored session has no controlling terminal");
            Log.Info($"dump: {path} (tty-info {seen.Info.Id}) is the shell's terminal (--shell-job): session {seen.Info.Sid}, foreground group {seen.Info.Pgrp}");
        }
        foreach (var (end, seen) in _ends.Where(e => e.Key.Master).OrderBy(e => e.Value.Info.Id))
        {
            var slave = _ends.TryGetValue(end with { Master = false }, out var s) ? s : null;
            ReadQueued(end.Index, seen, slave);
        }
    }

    /// <summary>The slave's queued input and the master's queued input (the slave's output) of pty <paramref name="index"/>.</summary>
    private void ReadQueued(int index, Seen master, Seen? slave)
    {
        var (pid, fd, _) = master.Files[0];
        string what = $"task {pid} fd {fd} (pty {index})";
        try
        {
            using var pidfd = PidFd.Open(pid);
            var dup = pidfd.GetFd(fd);
            bool kept = false;
            try
            {
            bool locked = Terminal.GetPtyLocked(dup);
            if (locked) Terminal.SetPtyLocked(dup, false);
            FileDescriptor peer;
            try
            {
                peer = Terminal.OpenPeer(dup, OpenFlags.ReadWrite | OpenFlags.NoCtty | OpenFlags.NonBlock | OpenFlags.CloseOnExec);
            }
            finally
            {
                if (locked) Terminal.SetPtyLocked(dup, true);
            }
            using (peer)
            {
                var termios = Terminal.GetTermios(peer);
                bool exclusive = Terminal.GetExclusive(peer);
                if (slave is not null) slave.Info.Exclusive = exclusive;
                master.Info.Exclusive = exclusive;
                byte[] input = ReadInput(peer, termios);
                bool packet = Terminal.GetPacketMode(dup);
                byte[] output = ReadOutput(dup, packet);
                if (input.Length > 0 || output.Length > 0)
                {
                    _consumed.Add((dup, termios, input, output, packet));
                    kept = true;
                }
                uint slaveInfo = slave?.Info.Id ?? AddSlaveInfo(master.Info);
                if (input.Length > 0) Data.Add(new TtyDataEntry { TtyId = slaveInfo, Data = Google.Protobuf.ByteString.CopyFrom(input) });
                if (output.Length > 0) Data.Add(new TtyDataEntry { TtyId = master.Info.Id, Data = Google.Protobuf.ByteString.CopyFrom(output) });
                Log.Info($"{pid}: dump: pty {index}: {input.Length} bytes queued for the slave, {output.Length} for the master, " +
                    $"{(locked ? "locked, " : "")}{(exclusive ? "exclusive, " : "")}{(packet ? "packet mode, " : "")}session {master.Info.Sid}, group {master.Info.Pgrp}");
            }
            }
            finally
            {
                if (!kept) dup.Dispose();
            }
        }
        catch (KernelException e)
        {
            throw new DumpException($"{what}: cannot read the pty: {e.Message}.", e);
        }
    }

    /// <summary>A slave end no fd of the tree holds gets a tty-info entry of its own for its queued input.</summary>
    private uint AddSlaveInfo(TtyInfoEntry master)
    {
        var info = master.Clone();
        info.Id = (uint)Infos.Count + 1;
        info.Locked = false;
        info.PacketMode = false;
        info.Rdev = 0;
        Infos.Add(info);
        return info.Id;
    }

    /// <summary>Everything the slave's reader has not taken yet, a partial line included (non-canonical for the read).</summary>
    private static byte[] ReadInput(FileDescriptor peer, Termios termios)
    {
        var cc = (byte[])termios.ControlChars.Clone();
        cc[Termios.VMIN] = 0;
        cc[Termios.VTIME] = 0;
        Terminal.SetTermios(peer, termios with { LocalFlags = termios.LocalFlags & ~Termios.ICANON, ControlChars = cc });
        try
        {
            return ReadAll(peer);
        }
        finally
        {
            Terminal.SetTermios(peer, termios);
        }
    }

    /// <summary>What the slave wrote that the master's reader has not taken, read through the task's own description.</summary>
    private static byte[] ReadOutput(FileDescriptor master, bool packet)
    {
        if (Terminal.InputQueued(master) == 0) return [];
        var flags = master.StatusFlags;
        if (packet) Terminal.SetPacketMode(master, false);
        master.Fcntl(4 /* F_SETFL */, (long)(flags | OpenFlags.NonBlock));
        try
        {
            return ReadAll(master);
        }
        finally
        {
            master.Fcntl(4, (long)flags);
            if (packet) Terminal.SetPacketMode(master, true);
        }
    }

    private static byte[] ReadAll(FileDescriptor fd)
    {
        var data = new List<byte>();
        var buffer = new byte[4096];
        while (true)
        {
            int n;
            try
            {
                n = fd.Read(buffer);
            }
            catch (KernelException e) when (e.Errno.Value is Errno.EAGAIN or Errno.EIO)
            {
                break;
            }
            if (n <= 0) break;
            data.AddRange(buffer.AsSpan(0, n));
        }
        return [.. data];
    }

    /// <summary>The tree goes on (leave-running, failure): the bytes read out of its ptys go back where they were.</summary>
    public void PutBack()
    {
        foreach (var (master, termios, input, output, packet) in _consumed)
        {
            try
            {
                bool locked = Terminal.GetPtyLocked(master);
                if (locked) Terminal.SetPtyLocked(master, false);
                FileDescriptor peer;
                try
                {
                    peer = Terminal.OpenPeer(master, OpenFlags.ReadWrite | OpenFlags.NoCtty | OpenFlags.NonBlock | OpenFlags.CloseOnExec);
                }
                finally
                {
                    if (locked) Terminal.SetPtyLocked(master, true);
                }
                using (peer)
                {
                    if (output.Length > 0) RefillOutput(master, peer, termios, output);
                    if (input.Length > 0) RefillInput(master, peer, termios, input);
                }
            }
            catch (Exception e) when (e is KernelException or TimeoutException)
            {
                Log.Error($"dump: cannot put {input.Length + output.Length} bytes back into a pty: {e.Message}");
            }
            master.Dispose();
        }
        _consumed.Clear();
    }

    /// <summary>The tree is gone: the duplicates of its masters are closed.</summary>
    public void Discard()
    {
        foreach (var c in _consumed) c.Master.Dispose();
        _consumed.Clear();
    }

    /// <summary>
    /// Queue <paramref name="data"/> for the slave's reader: written to the master with echo, signals and input
    /// processing off (the bytes were processed when they first came), then the slave's termios back. Waits until the
    /// line discipline has taken them (TIOCINQ; in canonical mode only complete lines count).
    /// </summary>
    public static void RefillInput(FileDescriptor master, FileDescriptor slave, Termios termios, byte[] data)
    {
        const uint echoes = Termios.ECHO | Termios.ECHOE | Termios.ECHOK | Termios.ECHONL | Termios.ECHOCTL | Termios.ECHOKE;
        Terminal.SetTermios(slave, termios with
        {
            InputFlags = termios.InputFlags & ~Termios.InputProcessing,
            LocalFlags = termios.LocalFlags & ~(echoes | Termios.ISIG | Termios.IEXTEN),
        });
        try
        {
            int before = Terminal.InputQueued(slave);
            master.WriteAll(data);
            int expected = data.Length;
            if ((termios.LocalFlags & Termios.ICANON) != 0)
            {
                byte eol = termios.ControlChars[Termios.VEOL], eol2 = termios.ControlChars[Termios.VEOL2];
                int last = Array.FindLastIndex(data, b => b == (byte)'\n' || (b != 0 && (b == eol || b == eol2)));
                expected = last + 1;
            }
            WaitFor(() => Terminal.InputQueued(slave) >= before + expected, "the slave's line discipline to take the refilled input");
        }
        finally
        {
            Terminal.SetTermios(slave, termios);
        }
    }

    /// <summary>Queue <paramref name="data"/> for the master's reader: written to the slave with output processing off.</summary>
    public static void RefillOutput(FileDescriptor master, FileDescriptor slave, Termios termios, byte[] data)
    {
        const uint OPOST = 1;
        Terminal.SetTermios(slave, termios with { OutputFlags = termios.OutputFlags & ~OPOST });
        try
        {
            int before = Terminal.InputQueued(master);
            slave.WriteAll(data);
            WaitFor(() => Terminal.InputQueued(master) >= before + data.Length, "the master to take the refilled output");
        }
        finally
        {
            Terminal.SetTermios(slave, termios);
        }
    }

    private static void WaitFor(Func<bool> done, string what)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!done())
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(5)) throw new TimeoutException($"timed out waiting for {what}");
            Thread.Sleep(1);
        }
    }
}
