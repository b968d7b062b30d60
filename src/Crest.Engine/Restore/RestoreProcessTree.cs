// Creating the tasks of a tree with their pids, parents, sessions and groups (ENGINE.md §4.2), before any of
// them gets its memory: every task is still a copy of the stub, so syscalls can be injected into each.
//   1. the root is cloned from the stub with clone3(CLONE_PARENT, set_tid = [pid]): Crest's child;
//   2. in pstree order (parents first), each child is cloned from its parent, already created, with
//      clone3(set_tid = [pid], exit_signal SIGCHLD); PTRACE_O_TRACEFORK attaches it to our tracer thread.
//      A session leader calls setsid() right after its clone, a group leader setpgid(0, 0), so that the
//      children cloned from it afterwards inherit them;
//   3. every other task joins its group (setpgid(0, pgid)) once all tasks exist: the leader may be cloned
//      after the member (a sibling, or a child of the member);
//   3b. a session whose leader is gone is started by a helper task with the leader's pid, cloned from the
//      parent of its first member; the members are cloned from the helper with CLONE_PARENT. A group whose
//      leader is gone is started by a helper cloned from its first member (setpgid(0, 0) there), which the
//      members then join. The helpers exit once every task is in its group, and their parents reap them;
//   4. zombies end as they did: exit_group(status) or death by their signal; the SIGCHLD this queues in
//      the parent (every signal is blocked in the tasks while they are rebuilt) is taken back with
//      rt_sigtimedwait, so the parent finds only the zombie, as at dump time.
// The root's session and group, when led by a task outside the images (a shell), stay Crest's.
using Crest.Diagnostics;
using Crest.Images.Protos;
using Crest.Kernel;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Processes;
using Crest.Kernel.Ptrace;

namespace Crest.Engine.Restore;

internal sealed class RestoreProcessTree
{
    private const ulong CLONE_PARENT = 0x8000, CLONE_FILES = 0x400;
    private const int SIGCHLD = 17, EAGAIN = 11;
    private const long rt_sigtimedwait = 128;

    private readonly RestoreTree _tree;
    private readonly ulong _regionBase;

    public RestoreProcessTree(RestoreTree tree, ulong regionBase)
    {
        _tree = tree;
        _regionBase = regionBase;
    }

    /// <summary>Every task created so far (live ones and zombies until they end), in creation order.</summary>
    public List<int> Created { get; } = [];

    /// <summary>The injector of each live task.</summary>
    public Dictionary<int, StubInjector> Tasks { get; } = [];

    private StubInjector NewInjector(Tracee task) => new(task, _regionBase, _regionBase + RestoreStub.GadgetOffset);

    /// <summary>Clone the root from the stub and every other task from its parent; sessions, groups, zombies.</summary>
    public void Create(Tracee stub)
    {
        var stubInjector = NewInjector(stub);
        const long PROT_RW = 3, MAP_PRIVATE_ANON_FIXED_NOREPLACE = 0x02 | 0x20 | 0x100000;
        // Scratch memory for the clone3 arguments; every clone inherits it.
        stubInjector.Check("mmap", "restore scratch", SyscallNumbers.mmap, (long)stubInjector.ScratchBase, (long)StubInjector.ScratchSize,
            PROT_RW, MAP_PRIVATE_ANON_FIXED_NOREPLACE, -1, 0);
        var rootEntry = _tree.Root;
        // exit_signal stays 0 with CLONE_PARENT (clone3 refuses one): the root inherits the stub's, SIGCHLD.
        var root = Clone(stubInjector, _tree.RootPid, CLONE_PARENT, 0);
        Tasks[root.Pid] = root;
        Lead(root, rootEntry);

        var pids = _tree.Entries.Select(e => e.Pid).ToHashSet();
        foreach (var entry in _tree.Entries.Skip(1))
        {
            int pid = (int)entry.Pid;
            var parent = Tasks[(int)entry.Ppid];
            StubInjector task;
            if (!pids.Contains(entry.Sid) && entry.Sid != rootEntry.Sid && ReadStat(parent.Pid).Session != entry.Sid)
            {
                // A session whose leader is gone: a helper with the leader's pid starts it, and the task is
                // cloned from the helper with CLONE_PARENT, so its parent is the helper's.
                if (_tree.SharesFdTableWithParent(pid))
                    throw new RestoreException($"task {pid} shares its fd table with its parent {entry.Ppid} but is in a session whose leader is gone; not supported yet");
                var helper = SessionHelper(parent, (int)entry.Sid);
                task = Clone(helper, pid, CLONE_PARENT, 0);
            }
            else
            {
                // A child that shared its parent's fd table (CLONE_FILES) shares it again; the parent's fds,
                // restored later, are then the child's too.
                task = Clone(parent, pid, _tree.SharesFdTableWithParent(pid) ? CLONE_FILES : 0, SIGCHLD);
            }
            Tasks[pid] = task;
            Lead(task, entry);
        }
        JoinGroups();
        EndHelpers();
        EndZombies();
    }

    /// <summary>Helper tasks standing in for dead session and group leaders, with the parent that reaps each.</summary>
    private readonly List<(StubInjector Helper, StubInjector Parent)> _helpers = [];

    private StubInjector SessionHelper(StubInjector parent, int sid)
    {
        foreach (var (helper, helperParent) in _helpers)
        {
            if (helper.Pid != sid) continue;
            if (helperParent.Pid != parent.Pid)
                throw new RestoreException($"session {sid} (leader gone) has members with different parents ({helperParent.Pid}, {parent.Pid}); not supported yet");
            return helper;
        }
        var created = Clone(parent, sid, 0, SIGCHLD);
        created.Check("setsid", $"helper for the session {sid}", SyscallNumbers.setsid);
        _helpers.Add((created, parent));
        Log.Info($"{sid}: restore: helper task for the session of the gone leader {sid}, cloned from {parent.Pid}");
        return created;
    }

    /// <summary>A helper with pid <paramref name="pgid"/>, cloned from <paramref name="member"/> (so in its session), leads the group.</summary>
    private void GroupHelper(StubInjector member, int pgid)
    {
        var created = Clone(member, pgid, 0, SIGCHLD);
        created.Check("setpgid", $"helper for the group {pgid}", SyscallNumbers.setpgid, 0, 0);
        _helpers.Add((created, member));
        Log.Info($"{pgid}: restore: helper task for the group of the gone leader {pgid}, cloned from {member.Pid}");
    }

    /// <summary>The helpers exit (their sessions and groups live on in the members); their parents reap them.</summary>
    private void EndHelpers()
    {
        const long __WALL = 0x40000000;
        foreach (var (helper, parent) in _helpers)
        {
            helper.ExitGroup(0);
            long rc = parent.Syscall(SyscallNumbers.wait4, helper.Pid, 0, __WALL, 0);
            if (rc != helper.Pid) throw new RestoreException($"wait4 for helper {helper.Pid} in task {parent.Pid} gave {(rc < 0 ? Errno.FromRawReturn(rc).ToString() : rc.ToString(System.Globalization.CultureInfo.InvariantCulture))}");
            Created.Remove(helper.Pid);
            TakeBackSigchld(parent);
        }
        _helpers.Clear();
    }

    private StubInjector Clone(StubInjector parent, int pid, ulong flags, int exitSignal)
    {
        parent.ResetScratch();
        ulong tidArray = parent.Put(BitConverter.GetBytes((long)pid));
        Span<byte> args = stackalloc byte[88];
        args.Clear();
        BitConverter.TryWriteBytes(args[0..], flags);
        BitConverter.TryWriteBytes(args[32..], (ulong)exitSignal);
        BitConverter.TryWriteBytes(args[64..], tidArray);              // set_tid
        BitConverter.TryWriteBytes(args[72..], 1UL);                   // set_tid_size
        ulong argsAddress = parent.Put(args);
        parent.NewChildren.Clear();
        long rc = parent.Syscall(SyscallNumbers.clone3, (long)argsAddress, 88);
        // A pid whose task has just been reaped can still be allocated for a moment after /proc stopped
        // showing it (seen as EEXIST with no holder in /proc): try again for as long as a zombie is waited for.
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (rc == -Errno.EEXIST && !Directory.Exists($"/proc/{pid}") && waited.Elapsed < RestoreEngine.PidWait)
        {
            Thread.Sleep(5);
            rc = parent.Syscall(SyscallNumbers.clone3, (long)argsAddress, 88);
        }
        parent.ResetScratch();
        if (rc < 0)
        {
            var errno = Errno.FromRawReturn(rc);
            string holder = errno.Value == Errno.EEXIST ? $" (held by {RestoreEngine.DescribeHolder(pid)})" : "";
            throw new RestoreException($"clone3 with set_tid {pid} in task {parent.Pid} failed: {errno}{holder}");
        }
        Created.Add((int)rc);
        if (rc != pid) throw new RestoreException($"clone3 with set_tid {pid} gave pid {rc}");
        var tracee = parent.Tracee.Tracer.Adopt(pid, parent.Tracee.Options);
        var first = tracee.WaitForStop(TimeSpan.FromSeconds(10));
        if (!first.Status.IsEventStop) throw new RestoreException($"new task {pid}: first stop is {first.Status}, expected an event stop");
        // Every signal blocked while the task is rebuilt: one sent to it now waits for the release.
        tracee.SetSigMask(ulong.MaxValue);
        Log.Debug($"{pid}: restore: cloned from {parent.Pid}");
        return NewInjector(tracee);
    }

    /// <summary>A session leader starts its session, a group leader its group, before it clones anything.</summary>
    private static void Lead(StubInjector task, PstreeEntry entry)
    {
        if (entry.Sid == entry.Pid)
            task.Check("setsid", "session leader", SyscallNumbers.setsid);
        else if (entry.Pgid == entry.Pid)
            task.Check("setpgid", "group leader", SyscallNumbers.setpgid, 0, 0);
    }

    private void JoinGroups()
    {
        var root = _tree.Root;
        var pids = _tree.Entries.Select(e => e.Pid).ToHashSet();
        // The root's session and group may be led from outside the images (a shell): they are Crest's now.
        int rootSid = ReadStat(_tree.RootPid).Session, rootPgid = ReadStat(_tree.RootPid).Pgrp;
        if (!pids.Contains(root.Sid) || !pids.Contains(root.Pgid))
            Log.Info($"{root.Pid}: restore: session {root.Sid} / group {root.Pgid} are led outside the images; the tree joins Crest's ({rootSid} / {rootPgid})");
        foreach (var entry in _tree.Entries)
        {
            int pid = (int)entry.Pid;
            int wantSid = entry.Sid == root.Sid && !pids.Contains(root.Sid) ? rootSid : (int)entry.Sid;
            int wantPgid = entry.Pgid == root.Pgid && !pids.Contains(root.Pgid) ? rootPgid : (int)entry.Pgid;
            var stat = ReadStat(pid);
            if (stat.Session != wantSid)
                throw new RestoreException($"task {pid} belongs to session {entry.Sid}, whose leader is not in the images; restoring such a session is not supported yet");
            if (stat.Pgrp == wantPgid) continue;
            if (!GroupExists(wantPgid)) GroupHelper(Tasks[pid], wantPgid);
            Tasks[pid].Check("setpgid", $"group {wantPgid}", SyscallNumbers.setpgid, 0, wantPgid);
        }
    }

    private bool GroupExists(int pgid) =>
        Tasks.Keys.Concat(_helpers.Select(h => h.Helper.Pid)).Any(pid => ReadStat(pid).Pgrp == pgid);

    private void EndZombies()
    {
        var parents = new HashSet<int>();
        foreach (var entry in _tree.Entries)
        {
            int pid = (int)entry.Pid;
            if (!_tree.Zombies.TryGetValue(pid, out var tc)) continue;
            var task = Tasks[pid];
            Tasks.Remove(pid);
            int status = (int)tc.ExitCode;
            int signal = status & 0x7f;
            if (signal is not 0 and not 0x7f)
            {
                // No core file from this second death.
                task.Check("prlimit64", "RLIMIT_CORE 0", SyscallNumbers.prlimit64, 0, 4 /* RLIMIT_CORE */, (long)task.Put(new byte[16]), 0);
                task.DieOfSignal(signal);
            }
            else
            {
                task.ExitGroup((status >> 8) & 0xff);
            }
            Log.Info($"{pid}: restore: zombie again (wait status 0x{status:x})");
            parents.Add((int)entry.Ppid);
        }
        foreach (int parent in parents) TakeBackSigchld(Tasks[parent]);
    }

    /// <summary>The SIGCHLD a child's end queued in <paramref name="task"/> (blocked there) is taken back.</summary>
    private static void TakeBackSigchld(StubInjector task)
    {
        {
            int parent = task.Pid;
            task.ResetScratch();
            ulong set = task.Put(BitConverter.GetBytes(1UL << (SIGCHLD - 1)));
            ulong zero = task.Put(new byte[16]);
            long rc;
            do rc = task.Syscall(rt_sigtimedwait, (long)set, 0, (long)zero, 8);
            while (rc == SIGCHLD);
            task.ResetScratch();
            if (rc != -EAGAIN) throw new RestoreException($"rt_sigtimedwait(SIGCHLD) in task {parent} failed: {Errno.FromRawReturn(rc)}");
        }
    }

    private static Crest.Kernel.Proc.ProcStat ReadStat(int pid) =>
        Crest.Kernel.Proc.ProcStat.Parse(Crest.Kernel.Proc.ProcFile.ReadAll(pid, "stat"));

    /// <summary>
    /// Fail closed: SIGKILL every task created, then reap them all. Crest is a child subreaper meanwhile, so the
    /// tasks whose parents die first come to Crest to be reaped instead of to PID 1 (slow here, ENGINE.md §8).
    /// </summary>
    public static unsafe void KillAll(IReadOnlyList<int> created)
    {
        const int PR_SET_CHILD_SUBREAPER = 36, PR_GET_CHILD_SUBREAPER = 37, SIGKILL = 9;
        int wasSubreaper = 0;
        ProcessControl.Prctl(PR_GET_CHILD_SUBREAPER, (ulong)&wasSubreaper);
        ProcessControl.Prctl(PR_SET_CHILD_SUBREAPER, 1);
        try
        {
            foreach (int pid in created)
            {
                try
                {
                    using var pidfd = Crest.Kernel.Files.PidFd.Open(pid);
                    pidfd.SendSignal(SIGKILL);
                }
                catch (KernelException e) when (e.Errno.Value == Errno.ESRCH)
                {
                }
            }
            var left = new List<int>(created);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (left.Count > 0 && clock.Elapsed < TimeSpan.FromSeconds(10))
            {
                foreach (int pid in left.ToArray())
                {
                    ChildProcess.TryReapPid(pid);
                    if (!Directory.Exists($"/proc/{pid}")) left.Remove(pid);
                }
                if (left.Count > 0) Thread.Sleep(1);
            }
            if (left.Count > 0) Log.Error($"restore: tasks {string.Join(", ", left)} are still there after the failure");
        }
        finally
        {
            ProcessControl.Prctl(PR_SET_CHILD_SUBREAPER, (ulong)wasSubreaper);
        }
    }
}
