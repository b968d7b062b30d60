// Per-task images as Crest writes them for a small x86_64 process, decoded by crit 3.17.
using System.Text.Json;
using Crest.Images.Protos;
using Google.Protobuf;

namespace Crest.Images.Tests.Schemas;

public sealed class TaskImagesDecodeWithCritTests : IClassFixture<ScratchDirectory>
{
    private readonly ScratchDirectory _scratch;

    public TaskImagesDecodeWithCritTests(ScratchDirectory scratch) => _scratch = scratch;

    internal static CoreEntry X86Core()
    {
        var gpregs = new UserX86RegsEntry
        {
            R15 = 0, R14 = 0x7ffd5c1e3a40, R13 = 0x401136, R12 = 0, Bp = 0x7ffd5c1e3920, Bx = 0,
            R11 = 0x246, R10 = 0, R9 = 0, R8 = 0, Ax = 0xfffffffffffffdfc, Cx = 0x7f3a9c2e47fa,
            Dx = 0, Si = 0x7ffd5c1e38f0, Di = 0x7ffd5c1e38f0, OrigAx = 230, Ip = 0x7f3a9c2e47fa,
            Cs = 0x33, Flags = 0x246, Sp = 0x7ffd5c1e38d8, Ss = 0x2b, FsBase = 0x7f3a9c1d6740,
            GsBase = 0, Ds = 0, Es = 0, Fs = 0, Gs = 0, Mode = UserX86RegsMode.Native,
        };
        var fpregs = new UserX86FpregsEntry
        {
            Cwd = 0x37f, Swd = 0, Twd = 0, Fop = 0, Rip = 0, Rdp = 0, Mxcsr = 0x1f80, MxcsrMask = 0xffff,
            Xsave = new UserX86XsaveEntry { XstateBv = 0x7 },
        };
        fpregs.StSpace.Add(Enumerable.Range(0, 32).Select(i => (uint)i));
        fpregs.XmmSpace.Add(Enumerable.Range(0, 64).Select(i => 0x01010101u * (uint)(i % 4)));
        fpregs.Padding.Add(new uint[24]);
        fpregs.Xsave.YmmhSpace.Add(Enumerable.Range(0, 64).Select(i => (uint)(0xa0 + i)));

        var task = new TaskCoreEntry
        {
            TaskState = 1, ExitCode = 0, Personality = 0, Flags = 0x400100, BlkSigset = 0x4000,
            Comm = "sleeper", Loginuid = 0xffffffff, OomScoreAdj = 0, ChildSubreaper = false,
            Timers = new TaskTimersEntry { Real = new ItimerEntry(), Virt = new ItimerEntry(), Prof = new ItimerEntry() },
            Rlimits = new TaskRlimitsEntry(),
        };
        task.Timers.Real.Isec = 0; task.Timers.Real.Iusec = 0; task.Timers.Real.Vsec = 5; task.Timers.Real.Vusec = 250000;
        foreach (ItimerEntry t in new[] { task.Timers.Virt, task.Timers.Prof })
        {
            t.Isec = 0; t.Iusec = 0; t.Vsec = 0; t.Vusec = 0;
        }
        task.Rlimits.Rlimits.Add(new RlimitEntry { Cur = 8388608, Max = ulong.MaxValue });
        task.Rlimits.Rlimits.Add(new RlimitEntry { Cur = 1024, Max = 524288 });

        var creds = new CredsEntry
        {
            Uid = 1000, Gid = 1000, Euid = 1000, Egid = 1000, Suid = 1000, Sgid = 1000, Fsuid = 1000, Fsgid = 1000,
            Secbits = 0,
        };
        creds.CapInh.Add([0u, 0u]);
        creds.CapPrm.Add([0u, 0u]);
        creds.CapEff.Add([0u, 0u]);
        creds.CapBnd.Add([0xffffffffu, 0x1ffu]);
        creds.Groups.Add([1000u, 27u]);

        var thread = new ThreadCoreEntry
        {
            FutexRla = 0x7f3a9c1d6a20, FutexRlaLen = 24, SchedNice = -5, SchedPolicy = 0, SchedPrio = 0,
            BlkSigset = 0, PdeathSig = 0, Creds = creds, SeccompMode = SeccompMode.Disabled, Comm = "sleeper",
            Sas = new ThreadSasEntry { SsSp = 0, SsSize = 0, SsFlags = 2 },
            RseqEntry = new RseqEntry { RseqAbiPointer = 0x7f3a9c1d6fe0, RseqAbiSize = 32, Signature = 0x53053053 },
        };

        return new CoreEntry
        {
            Mtype = CoreEntry.Types.March.X8664,
            ThreadInfo = new ThreadInfoX86 { ClearTidAddr = 0x7f3a9c1d6a10, Gpregs = gpregs, Fpregs = fpregs },
            Tc = task,
            ThreadCore = thread,
        };
    }

    [Fact]
    public void CoreWithX86RegistersDecodes()
    {
        CoreEntry core = X86Core();
        JsonElement entry = CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Core, core)[0];

        Assert.Equal("X86_64", entry.GetProperty("mtype").GetString());
        JsonElement info = entry.GetProperty("thread_info");
        Assert.Equal("0x7f3a9c1d6a10", info.GetProperty("clear_tid_addr").GetString());
        // gpregs is marked hex, and crit prints every register inside it in hex.
        JsonElement gpregs = info.GetProperty("gpregs");
        Assert.Equal("0x7f3a9c2e47fa", gpregs.GetProperty("ip").GetString());
        Assert.Equal("0x7ffd5c1e38d8", gpregs.GetProperty("sp").GetString());
        Assert.Equal("0xe6", gpregs.GetProperty("orig_ax").GetString());
        Assert.Equal("NATIVE", gpregs.GetProperty("mode").GetString());
        JsonElement fpregs = info.GetProperty("fpregs");
        Assert.Equal(0x1f80, fpregs.GetProperty("mxcsr").GetInt32());
        Assert.Equal(32, fpregs.GetProperty("st_space").GetArrayLength());
        Assert.Equal(64, fpregs.GetProperty("xmm_space").GetArrayLength());
        Assert.Equal(7, fpregs.GetProperty("xsave").GetProperty("xstate_bv").GetInt32());
        Assert.Equal(0xa0 + 63, fpregs.GetProperty("xsave").GetProperty("ymmh_space")[63].GetInt32());

        JsonElement tc = entry.GetProperty("tc");
        Assert.Equal("Alive", tc.GetProperty("task_state").GetString());
        Assert.Equal("0x4000", tc.GetProperty("blk_sigset").GetString());
        Assert.Equal("sleeper", tc.GetProperty("comm").GetString());
        Assert.Equal(5, tc.GetProperty("timers").GetProperty("real").GetProperty("vsec").GetInt32());
        Assert.Equal(ulong.MaxValue, tc.GetProperty("rlimits").GetProperty("rlimits")[0].GetProperty("max").GetUInt64());

        JsonElement thread = entry.GetProperty("thread_core");
        Assert.Equal(-5, thread.GetProperty("sched_nice").GetInt32());
        Assert.Equal("disabled", thread.GetProperty("seccomp_mode").GetString());
        Assert.Equal(1000, thread.GetProperty("creds").GetProperty("uid").GetInt32());
        Assert.Equal(0x1ff, thread.GetProperty("creds").GetProperty("cap_bnd")[1].GetInt32());
        Assert.Equal(0x53053053, thread.GetProperty("rseq_entry").GetProperty("signature").GetInt32());
    }

    [Fact]
    public void FieldsNewerThanCritAreSkippedNotMisread()
    {
        CoreEntry core = X86Core();
        core.Tc.TaskState = 6;
        core.Tc.StopSigno = 19;
        core.ThreadCore.CgSet = 3;
        JsonElement entry = CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Core, core)[0];
        Assert.Equal("Stopped", entry.GetProperty("tc").GetProperty("task_state").GetString());
        Assert.False(entry.GetProperty("tc").TryGetProperty("stop_signo", out _));
    }

    [Fact]
    public void CrestGuardRangesOfAVmaAreSkippedByCrit()
    {
        var mm = new MmEntry { MmStartCode = 0x400000, ExeFileId = 1 };
        var vma = new VmaEntry { Start = 0x7f0000000000, End = 0x7f0000008000, Pgoff = 0, Shmid = 0, Prot = 3, Flags = 0x22, Status = 0x201, Fd = -1 };
        vma.CrestGuardRanges.Add([0x7f0000002000, 0x7f0000003000, 0x7f0000005000, 0x7f0000007000]);
        mm.Vmas.Add(vma);
        JsonElement entry = CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Mm, mm)[0];
        JsonElement decoded = entry.GetProperty("vmas")[0];
        Assert.Equal("0x7f0000000000", decoded.GetProperty("start").GetString());
        Assert.False(decoded.TryGetProperty("crest_guard_ranges", out _));
    }

    [Fact]
    public void InventoryDecodesWithoutCommonMagic()
    {
        var inventory = new InventoryEntry
        {
            ImgVersion = 2, FdinfoPerId = true, NsPerId = true, RootCgSet = 1, Lsmtype = Lsmtype.NoLsm,
            DumpUptime = 123456789, TcpClose = false, NetworkLockMethod = 0, DumpCriuRunId = "crest-1",
            RootIds = new TaskKobjIdsEntry { VmId = 1, FilesId = 2, FsId = 3, SighandId = 4, PidNsId = 5, NetNsId = 6, MntNsId = 7, TimeNsId = 8 },
            PluginsEntry = new PluginsEntry(),
        };
        JsonElement entries = CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Inventory, inventory);
        Assert.Equal(2, entries[0].GetProperty("img_version").GetInt32());
        Assert.Equal("NO_LSM", entries[0].GetProperty("lsmtype").GetString());
        Assert.Equal(8, entries[0].GetProperty("root_ids").GetProperty("time_ns_id").GetInt32());
    }

    [Fact]
    public void PstreeIdsAndCredsDecode()
    {
        var parent = new PstreeEntry { Pid = 4242, Ppid = 0, Pgid = 4242, Sid = 4200 };
        parent.Threads.Add([4242u, 4243u, 4244u]);
        var child = new PstreeEntry { Pid = 4250, Ppid = 4242, Pgid = 4242, Sid = 4200 };
        child.Threads.Add(4250u);
        JsonElement tree = CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Pstree, parent, child);
        Assert.Equal(3, tree[0].GetProperty("threads").GetArrayLength());
        Assert.Equal(4242, tree[1].GetProperty("ppid").GetInt32());

        var ids = new TaskKobjIdsEntry { VmId = 1, FilesId = 1, FsId = 1, SighandId = 1, PidNsId = 2, UtsNsId = 3 };
        Assert.Equal(3, CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Ids, ids)[0].GetProperty("uts_ns_id").GetInt32());

        CredsEntry creds = X86Core().ThreadCore.Creds;
        Assert.Equal(27, CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Creds, creds)[0].GetProperty("groups")[1].GetInt32());
    }

    [Fact]
    public void SignalStateDecodes()
    {
        var handler = new SaEntry { Sigaction = 0x401156, Flags = 0x4000000, Restorer = 0x7f3a9c24a050, Mask = 0, CompatSigaction = false };
        var ignored = new SaEntry { Sigaction = 1, Flags = 0, Restorer = 0, Mask = 0 };
        JsonElement sigacts = CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Sigacts, handler, ignored);
        Assert.Equal("0x401156", sigacts[0].GetProperty("sigaction").GetString());
        Assert.Equal("0x4000000", sigacts[0].GetProperty("flags").GetString());

        var itimers = new[]
        {
            new ItimerEntry { Isec = 1, Iusec = 0, Vsec = 0, Vusec = 500000 },
            new ItimerEntry { Isec = 0, Iusec = 0, Vsec = 0, Vusec = 0 },
            new ItimerEntry { Isec = 0, Iusec = 0, Vsec = 0, Vusec = 0 },
        };
        Assert.Equal(500000, CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Itimers, itimers)[0].GetProperty("vusec").GetInt32());

        var timer = new PosixTimerEntry
        {
            ItId = 0, ClockId = 1, SiSigno = 14, ItSigevNotify = 0, SivalPtr = 0x1234, Overrun = 0,
            Isec = 2, Insec = 0, Vsec = 1, Vnsec = 999_000_000, NotifyThreadId = 4243,
        };
        Assert.Equal(999_000_000, CritDecoding.DecodeAndCompare(_scratch, ImageKinds.PosixTimers, timer)[0].GetProperty("vnsec").GetInt32());

        var pending = new SiginfoEntry { Siginfo = ByteString.CopyFrom(new byte[128]) };
        CoreEntry core = X86Core();
        core.ThreadCore.SignalsP = new SignalQueueEntry();
        core.ThreadCore.SignalsP.Signals.Add(pending);
        JsonElement signals = CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Core, core)[0].GetProperty("thread_core").GetProperty("signals_p");
        Assert.Equal(128, Convert.FromBase64String(signals.GetProperty("signals")[0].GetProperty("siginfo").GetString()!).Length);
    }

    [Fact]
    public void LimitsFsSeccompAndStatsDecode()
    {
        var stack = new RlimitEntry { Cur = 8 << 20, Max = ulong.MaxValue };
        Assert.Equal(8 << 20, CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Rlimit, stack)[0].GetProperty("cur").GetInt32());

        var fs = new FsEntry { CwdId = 7, RootId = 1, Umask = 18 }; // umask 022
        Assert.Equal(18, CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Fs, fs)[0].GetProperty("umask").GetInt32());

        var seccomp = new SeccompEntry();
        seccomp.SeccompFilters.Add(new SeccompFilter { Filter = ByteString.CopyFrom(new byte[] { 0x06, 0, 0, 0, 0, 0, 0xff, 0x7f }), Prev = 0, Flags = 0 });
        JsonElement filters = CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Seccomp, seccomp)[0].GetProperty("seccomp_filters");
        Assert.Single(filters.EnumerateArray());

        // stats-dump.img carries the service magic in front of its own.
        var stats = new StatsEntry
        {
            Dump = new DumpStatsEntry
            {
                FreezingTime = 120, FrozenTime = 4500, MemdumpTime = 3000, MemwriteTime = 800,
                PagesScanned = 1024, PagesSkippedParent = 0, PagesWritten = 300, PagesLazy = 0,
            },
        };
        byte[] image = CriuImageFraming.Build(ImageKinds.Stats, stats);
        Assert.Equal(ImageKinds.ServiceMagic, BitConverter.ToUInt32(image, 0));
        JsonElement dump = CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Stats, stats)[0].GetProperty("dump");
        Assert.Equal(300, dump.GetProperty("pages_written").GetInt32());
    }
}
