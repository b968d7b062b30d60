// A small dumper for the restore tests, used until (and beside) the real DumpEngine: it writes the CRIU
// images a single-threaded fixture needs (pstree, core, mm, pagemap/pages, ids, fs, files, fdinfo) from
// /proc, ptrace and a few injected syscalls. It leaves the task stopped, so the test kills it.
using System.Buffers.Binary;
using System.Globalization;
using Crest.Images;
using Crest.Images.Pages;
using Crest.Images.Protos;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Injection;
using Crest.Kernel.Memory;
using Crest.Kernel.Proc;
using Crest.Kernel.Ptrace;

namespace Crest.Engine.Tests.Restore;

internal static class TestDumper
{
    public static void Dump(int pid, string dir)
    {
        using var tracer = new Tracer("test dumper");
        tracer.Run(() => DumpOnTracer(tracer, pid, dir));
    }

    private static void DumpOnTracer(Tracer tracer, int pid, string dir)
    {
        var tracee = tracer.Seize(pid);
        tracee.InterruptAndWait(TimeSpan.FromSeconds(10));
        var regs = tracee.GetRegisters();
        var xstate = tracee.GetXState();
        ulong sigmask = tracee.GetSigMask();
        var rseq = tracee.GetRseqConfiguration();
        var sigactions = new List<SaEntry>();
        ulong clearTid, robustHead, robustLen;
        var sas = new ThreadSasEntry();
        using (var inj = SyscallInjector.Open(tracee))
        {
            ulong scratch = inj.AllocScratch(4096);
            var buffer = new byte[64];
            inj.Syscall(SyscallNumbers.prctl, 40, (long)scratch);
            inj.ReadScratch(scratch, buffer.AsSpan(0, 8));
            clearTid = BitConverter.ToUInt64(buffer);
            inj.Syscall(SyscallNumbers.get_robust_list, 0, (long)scratch, (long)scratch + 8);
            inj.ReadScratch(scratch, buffer.AsSpan(0, 16));
            robustHead = BitConverter.ToUInt64(buffer);
            robustLen = BitConverter.ToUInt64(buffer, 8);
            for (int sig = 1; sig <= 64; sig++)
            {
                if (sig is 9 or 19) continue;
                inj.Syscall(SyscallNumbers.rt_sigaction, sig, 0, (long)scratch, 8);
                inj.ReadScratch(scratch, buffer.AsSpan(0, 32));
                sigactions.Add(new SaEntry
                {
                    Sigaction = BitConverter.ToUInt64(buffer), Flags = BitConverter.ToUInt64(buffer, 8),
                    Restorer = BitConverter.ToUInt64(buffer, 16), Mask = BitConverter.ToUInt64(buffer, 24),
                });
            }
            inj.Syscall(SyscallNumbers.sigaltstack, 0, (long)scratch);
            inj.ReadScratch(scratch, buffer.AsSpan(0, 24));
            sas.SsSp = BitConverter.ToUInt64(buffer);
            sas.SsFlags = BitConverter.ToUInt32(buffer, 8);
            sas.SsSize = BitConverter.ToUInt64(buffer, 16);
        }

        var stat = ProcStat.Parse(File.ReadAllBytes($"/proc/{pid}/stat"));
        var status = ProcStatus.Parse(File.ReadAllBytes($"/proc/{pid}/status"));
        var smaps = ProcSmaps.Parse(File.ReadAllBytes($"/proc/{pid}/smaps"));
        var maps = smaps.Select(v => v.Vma).ToList();
        var vmFlags = smaps.ToDictionary(v => v.Vma.Start, v => v.VmFlags);
        var files = new List<FileEntry>();
        uint nextId = 1;
        uint AddFile(string path, uint flags, ulong pos, bool withSize)
        {
            var reg = new RegFileEntry { Id = nextId, Flags = flags, Pos = pos, Fown = new FownEntry { Uid = 0, Euid = 0, Signum = 0, PidType = 0, Pid = 0 }, Name = path };
            if (withSize) reg.Size = (ulong)new FileInfo(path).Length;
            files.Add(new FileEntry { Type = FdTypes.Reg, Id = nextId, Reg = reg });
            return nextId++;
        }

        string exe = File.ResolveLinkTarget($"/proc/{pid}/exe", false)!.FullName;
        uint exeId = AddFile(exe, 0, 0, true);
        var mm = new MmEntry
        {
            MmStartCode = stat.StartCode, MmEndCode = stat.EndCode, MmStartData = stat.StartData, MmEndData = stat.EndData,
            MmStartStack = stat.StartStack, MmStartBrk = stat.StartBrk, MmBrk = ReadBrk(maps, stat.StartBrk),
            MmArgStart = stat.ArgStart, MmArgEnd = stat.ArgEnd, MmEnvStart = stat.EnvStart, MmEnvEnd = stat.EnvEnd,
            ExeFileId = exeId, Dumpable = 1,
        };
        var auxv = File.ReadAllBytes($"/proc/{pid}/auxv");
        for (int i = 0; i + 8 <= auxv.Length; i += 8) mm.MmSavedAuxv.Add(BitConverter.ToUInt64(auxv, i));
        var fileIds = new Dictionary<string, uint>();
        var pageRanges = new List<(ulong Start, ulong End, bool FilePrivate)>();
        foreach (var v in maps)
        {
            if (v.Kind == VmaKind.Vsyscall) continue;
            var e = new VmaEntry { Start = v.Start, End = v.End, Pgoff = v.Offset, Fd = -1, Shmid = 0, Status = 0, Flags = 0, Prot = 0 };
            e.Prot = (uint)((v.Permissions.HasFlag(VmaPermissions.Read) ? 1 : 0) | (v.Permissions.HasFlag(VmaPermissions.Write) ? 2 : 0) | (v.Permissions.HasFlag(VmaPermissions.Execute) ? 4 : 0));
            bool shared = v.Permissions.HasFlag(VmaPermissions.Shared);
            e.Flags = shared ? 1u : 2u;
            switch (v.Kind)
            {
                case VmaKind.Vdso: e.Status = 1 | 8; e.Flags |= 0x20; break;
                case VmaKind.Vvar or VmaKind.VvarVclock: e.Status = 1 | 0x1000; e.Flags |= 0x20; break;
                case VmaKind.File:
                    string path = v.Path!;
                    if (!fileIds.TryGetValue(path, out uint id)) fileIds[path] = id = AddFile(path, 0, 0, true);
                    e.Shmid = id;
                    e.Status = 1 | (shared ? 0x80u : 0x40u);
                    if (shared) e.Fdflags = (uint)(v.Permissions.HasFlag(VmaPermissions.Write) ? 2 : 0);
                    if (!shared && v.Permissions.HasFlag(VmaPermissions.Read)) pageRanges.Add((v.Start, v.End, true));
                    break;
                default:
                    e.Flags |= 0x20;
                    e.Status = 1 | (shared ? 0x100u : 0x200u) | (v.Kind == VmaKind.Heap ? 0x20u : 0) | (v.Kind == VmaKind.Stack ? 2u : 0);
                    if ((vmFlags[v.Start] & VmFlags.GrowsDown) != 0) e.Flags |= 0x100;
                    if ((vmFlags[v.Start] & VmFlags.HugePage) != 0) e.Madv |= 1UL << 14;
                    if (!shared && v.Permissions.HasFlag(VmaPermissions.Read)) pageRanges.Add((v.Start, v.End, false));
                    break;
            }
            mm.Vmas.Add(e);
        }

        // Pages: anonymous (present or swapped, not a file page) from /proc/PID/pagemap.
        using (var pagemap = ImageWriter.Create(Path.Combine(dir, $"pagemap-{pid}.img"), ImageKinds.Pagemap))
        using (var pages = File.Create(Path.Combine(dir, "pages-1.img")))
        using (var pm = File.OpenRead($"/proc/{pid}/pagemap"))
        {
            pagemap.WriteEntry(new PagemapHead { PagesId = 1 });
            var entries = new byte[8 * 4096];
            foreach (var (start, end, filePrivate) in pageRanges)
            {
                ulong runStart = 0;
                uint runPages = 0;
                void Flush()
                {
                    if (runPages == 0) return;
                    pagemap.WriteEntry(new PagemapEntry { Vaddr = runStart, NrPages = runPages, Flags = (uint)PagemapFlags.Present });
                    var data = new byte[runPages * 4096UL];
                    RemoteMemory.Read(pid, runStart, data);
                    pages.Write(data);
                    runPages = 0;
                }
                for (ulong chunk = start; chunk < end; chunk += 4096UL * 4096)
                {
                    ulong n = Math.Min(4096, (end - chunk) / 4096);
                    pm.Position = (long)(chunk / 4096 * 8);
                    pm.ReadExactly(entries, 0, (int)n * 8);
                    for (ulong i = 0; i < n; i++)
                    {
                        ulong e = BitConverter.ToUInt64(entries, (int)i * 8);
                        bool present = (e & (1UL << 63)) != 0 || (e & (1UL << 62)) != 0;
                        bool anonymous = (e & (1UL << 61)) == 0;
                        ulong page = chunk + i * 4096;
                        if (present && (anonymous || !filePrivate) && (e & (1UL << 61)) == 0)
                        {
                            if (runPages > 0 && runStart + runPages * 4096UL == page && runPages < 65536) runPages++;
                            else { Flush(); runStart = page; runPages = 1; }
                        }
                        else Flush();
                    }
                }
                Flush();
            }
            pagemap.Complete();
        }

        // Files: every fd that is a regular file or a character device reopened by path.
        var fds = new List<FdinfoEntry>();
        foreach (var link in Directory.GetFiles($"/proc/{pid}/fd"))
        {
            int fd = int.Parse(Path.GetFileName(link), CultureInfo.InvariantCulture);
            string target = File.ResolveLinkTarget(link, false)!.FullName;
            string info = File.ReadAllText($"/proc/{pid}/fdinfo/{fd}");
            ulong pos = ulong.Parse(Field(info, "pos"), CultureInfo.InvariantCulture);
            uint flags = Convert.ToUInt32(Field(info, "flags"), 8);
            uint id = AddFile(target, flags & ~0x80000u, pos, false);
            fds.Add(new FdinfoEntry { Id = id, Fd = (uint)fd, Type = FdTypes.Reg, Flags = (flags & 0x80000) != 0 ? 1u : 0u });
        }
        string cwd = File.ResolveLinkTarget($"/proc/{pid}/cwd", false)!.FullName;
        uint cwdId = AddFile(cwd, 0, 0, false), rootId = AddFile("/", 0, 0, false);

        var fpregs = new UserX86FpregsEntry
        {
            Cwd = BinaryPrimitives.ReadUInt16LittleEndian(xstate), Swd = BinaryPrimitives.ReadUInt16LittleEndian(xstate.AsSpan(2)),
            Twd = BinaryPrimitives.ReadUInt16LittleEndian(xstate.AsSpan(4)), Fop = BinaryPrimitives.ReadUInt16LittleEndian(xstate.AsSpan(6)),
            Rip = BitConverter.ToUInt64(xstate, 8), Rdp = BitConverter.ToUInt64(xstate, 16),
            Mxcsr = BitConverter.ToUInt32(xstate, 24), MxcsrMask = BitConverter.ToUInt32(xstate, 28),
        };
        for (int i = 0; i < 32; i++) fpregs.StSpace.Add(BitConverter.ToUInt32(xstate, 32 + 4 * i));
        for (int i = 0; i < 64; i++) fpregs.XmmSpace.Add(BitConverter.ToUInt32(xstate, 160 + 4 * i));
        for (int i = 0; i < 24; i++) fpregs.Padding.Add(BitConverter.ToUInt32(xstate, 416 + 4 * i));
        if (xstate.Length > 512)
        {
            var xs = new UserX86XsaveEntry { XstateBv = BitConverter.ToUInt64(xstate, 512) };
            int ymm = XSave.ComponentOffset(2);
            for (int i = 0; i < 64; i++) xs.YmmhSpace.Add(BitConverter.ToUInt32(xstate, ymm + 4 * i));
            void Words(Google.Protobuf.Collections.RepeatedField<ulong> to, int component, int count)
            {
                int off = XSave.ComponentOffset(component);
                if (off > 0 && off + count * 8 <= xstate.Length)
                    for (int i = 0; i < count; i++) to.Add(BitConverter.ToUInt64(xstate, off + 8 * i));
            }
            Words(xs.OpmaskReg, 5, 8);
            Words(xs.ZmmUpper, 6, 64);
            Words(xs.Hi16Zmm, 7, 128);
            int pkru = XSave.ComponentOffset(9);
            if (pkru > 0 && pkru + 4 <= xstate.Length) xs.Pkru.Add(BitConverter.ToUInt32(xstate, pkru));
            fpregs.Xsave = xs;
        }
        var gp = new UserX86RegsEntry
        {
            R15 = regs.r15, R14 = regs.r14, R13 = regs.r13, R12 = regs.r12, Bp = regs.rbp, Bx = regs.rbx, R11 = regs.r11,
            R10 = regs.r10, R9 = regs.r9, R8 = regs.r8, Ax = regs.rax, Cx = regs.rcx, Dx = regs.rdx, Si = regs.rsi,
            Di = regs.rdi, OrigAx = regs.orig_rax, Ip = regs.rip, Cs = regs.cs, Flags = regs.eflags, Sp = regs.rsp,
            Ss = regs.ss, FsBase = regs.fs_base, GsBase = regs.gs_base, Ds = regs.ds, Es = regs.es, Fs = regs.fs, Gs = regs.gs,
        };
        var ids = new TaskKobjIdsEntry { VmId = 1, FilesId = 1, FsId = 1, SighandId = 1 };
        var tc = new TaskCoreEntry
        {
            TaskState = 1, ExitCode = 0, Personality = uint.Parse(File.ReadAllText($"/proc/{pid}/personality").Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture),
            Flags = stat.Flags, BlkSigset = sigmask, Comm = stat.Comm,
        };
        tc.Sigactions.AddRange(sigactions);
        tc.Rlimits = new TaskRlimitsEntry();
        foreach (var l in ProcLimits.Parse(File.ReadAllBytes($"/proc/{pid}/limits")))
            tc.Rlimits.Rlimits.Add(new RlimitEntry { Cur = l.Soft, Max = l.Hard });
        var thread = new ThreadCoreEntry { FutexRla = robustHead, FutexRlaLen = (uint)robustLen, BlkSigset = sigmask, Sas = sas, Comm = stat.Comm };
        if (rseq.AbiPointer != 0)
            thread.RseqEntry = new RseqEntry { RseqAbiPointer = rseq.AbiPointer, RseqAbiSize = rseq.AbiSize, Signature = rseq.Signature };
        var core = new CoreEntry
        {
            Mtype = CoreEntry.Types.March.X8664,
            ThreadInfo = new ThreadInfoX86 { ClearTidAddr = clearTid, Gpregs = gp, Fpregs = fpregs },
            Tc = tc, ThreadCore = thread,
        };

        Write(dir, "inventory.img", ImageKinds.Inventory, new InventoryEntry { ImgVersion = 2, FdinfoPerId = true, RootIds = ids });
        Write(dir, "pstree.img", ImageKinds.Pstree, new PstreeEntry { Pid = (uint)pid, Ppid = 0, Pgid = (uint)stat.Pgrp, Sid = (uint)stat.Session, Threads = { (uint)pid } });
        Write(dir, $"core-{pid}.img", ImageKinds.Core, core);
        Write(dir, $"mm-{pid}.img", ImageKinds.Mm, mm);
        Write(dir, $"ids-{pid}.img", ImageKinds.Ids, ids);
        Write(dir, $"fs-{pid}.img", ImageKinds.Fs, new FsEntry { CwdId = cwdId, RootId = rootId, Umask = status.Umask ?? 0x12 });
        Write(dir, "files.img", ImageKinds.Files, files.ToArray());
        Write(dir, "fdinfo-1.img", ImageKinds.Fdinfo, fds.ToArray());

        // The dump is done: the task dies here, as after a real dump.
        RestoreTestSupport.Kill(pid, RestoreTestSupport.SIGKILL);
        try
        {
            while (true) tracee.WaitForStop(TimeSpan.FromSeconds(10));
        }
        catch (TraceeExitedException)
        {
        }
    }

    private static ulong ReadBrk(IReadOnlyList<Vma> maps, ulong startBrk)
    {
        foreach (var v in maps) if (v.Kind == VmaKind.Heap) return v.End;
        return startBrk;
    }

    private static string Field(string text, string name)
    {
        foreach (var line in text.Split('\n'))
            if (line.StartsWith(name + ":", StringComparison.Ordinal)) return line[(name.Length + 1)..].Trim();
        throw new InvalidDataException($"no {name} in fdinfo");
    }

    private static void Write(string dir, string name, ImageKind kind, params Google.Protobuf.IMessage[] entries)
    {
        using var w = ImageWriter.Create(Path.Combine(dir, name), kind);
        foreach (var e in entries) w.WriteEntry(e);
        w.Complete();
    }
}
