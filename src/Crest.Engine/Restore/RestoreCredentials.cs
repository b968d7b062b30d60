// Credentials of a restored task, last of its state (ENGINE.md §4.6): once its ids and capabilities drop, no
// privileged injection works any more. The task starts with Crest's credentials (root, Crest's capabilities).
// Each step runs only where the image differs from what the task has, and in the order the kernel's rules
// allow (capabilities(7)):
//   1. setgroups, setresgid, setfsgid      need CAP_SETGID
//   2. PR_CAPBSET_DROP                     needs CAP_SETPCAP, so before the uids change
//   3. SECBIT_KEEP_CAPS, then setresuid    keeps the permitted set when every uid becomes non-zero
//      and setfsuid                        (the effective and ambient sets are cleared by that switch)
//   4. capset(eff = prm = what is left, inh = image), PR_CAP_AMBIENT_RAISE per ambient capability
//   5. PR_SET_SECUREBITS to the image's    needs CAP_SETPCAP, still in the effective set here
//   6. capset to the image's sets, PR_SET_NO_NEW_PRIVS
using System.Buffers.Binary;
using Crest.Diagnostics;
using Crest.Images.Protos;
using Crest.Kernel.Arch.X64;
using Crest.Kernel.Proc;

namespace Crest.Engine.Restore;

internal static class RestoreCredentials
{
    private const long PR_CAPBSET_DROP = 24, PR_GET_SECUREBITS = 27, PR_SET_SECUREBITS = 28, PR_SET_NO_NEW_PRIVS = 38,
        PR_CAP_AMBIENT = 47, PR_CAP_AMBIENT_RAISE = 2;
    private const uint SECBIT_KEEP_CAPS = 1 << 4;
    private const uint CapabilityVersion3 = 0x20080522;

    public static void Restore(StubInjector task, CredsEntry creds)
    {
        var now = ProcStatus.Parse(File.ReadAllBytes($"/proc/{task.Pid}/status"));
        ulong prm = Caps(creds.CapPrm), eff = Caps(creds.CapEff), inh = Caps(creds.CapInh), bnd = Caps(creds.CapBnd), amb = Caps(creds.CapAmb);
        bool groupsDiffer = !now.Groups.SequenceEqual(creds.Groups);
        bool gidsDiffer = now.Gid.Real != creds.Gid || now.Gid.Effective != creds.Egid || now.Gid.Saved != creds.Sgid;
        bool uidsDiffer = now.Uid.Real != creds.Uid || now.Uid.Effective != creds.Euid || now.Uid.Saved != creds.Suid;
        bool capsDiffer = now.CapPrm != prm || now.CapEff != eff || now.CapInh != inh || (now.CapAmb ?? 0) != amb;
        // The dumped bounding set only narrows this one (a capability the kernel lacks cannot be added).
        ulong dropFromBounding = (now.CapBnd ?? 0) & ~bnd;
        uint secbits = (uint)task.Check("prctl(PR_GET_SECUREBITS)", "securebits", SyscallNumbers.prctl, PR_GET_SECUREBITS);

        // 1. groups and gids.
        if (groupsDiffer)
        {
            var groups = new byte[creds.Groups.Count * 4];
            for (int i = 0; i < creds.Groups.Count; i++) BinaryPrimitives.WriteUInt32LittleEndian(groups.AsSpan(i * 4), creds.Groups[i]);
            task.Check("setgroups", $"{creds.Groups.Count} groups", SyscallNumbers.setgroups, creds.Groups.Count, groups.Length > 0 ? (long)task.Put(groups) : 0);
            task.ResetScratch();
        }
        if (gidsDiffer)
            task.Check("setresgid", $"gids {creds.Gid}/{creds.Egid}/{creds.Sgid}", SyscallNumbers.setresgid, creds.Gid, creds.Egid, creds.Sgid);
        if (creds.Fsgid != creds.Egid)
            SetFsId(task, SyscallNumbers.setfsgid, "setfsgid", creds.Fsgid);

        // 2. bounding set.
        for (int cap = 0; cap < 64; cap++)
            if ((dropFromBounding & (1UL << cap)) != 0)
                task.Check("prctl(PR_CAPBSET_DROP)", $"capability {cap}", SyscallNumbers.prctl, PR_CAPBSET_DROP, cap);

        // 3. uids, keeping the permitted capabilities the image still needs.
        if (uidsDiffer)
        {
            bool keep = prm != 0 && (secbits & SECBIT_KEEP_CAPS) == 0;
            if (keep)
                task.Check("prctl(PR_SET_SECUREBITS)", "keep capabilities across setresuid", SyscallNumbers.prctl, PR_SET_SECUREBITS, secbits | SECBIT_KEEP_CAPS);
            if (keep) secbits |= SECBIT_KEEP_CAPS;
            task.Check("setresuid", $"uids {creds.Uid}/{creds.Euid}/{creds.Suid}", SyscallNumbers.setresuid, creds.Uid, creds.Euid, creds.Suid);
        }
        if (creds.Fsuid != creds.Euid)
            SetFsId(task, SyscallNumbers.setfsuid, "setfsuid", creds.Fsuid);

        // 4.-6. capabilities and securebits.
        if (capsDiffer || uidsDiffer || secbits != creds.Secbits)
        {
            ulong left = ProcStatus.Parse(File.ReadAllBytes($"/proc/{task.Pid}/status")).CapPrm ?? 0;
            if ((prm & ~left) != 0)
                throw new RestoreException($"task {task.Pid} needs permitted capabilities 0x{prm & ~left:x} that the restoring process cannot give");
            CapSet(task, left, left, inh, "raise the permitted set");
            for (int cap = 0; cap < 64; cap++)
                if ((amb & (1UL << cap)) != 0)
                    task.Check("prctl(PR_CAP_AMBIENT_RAISE)", $"capability {cap}", SyscallNumbers.prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0);
            if (secbits != creds.Secbits)
                task.Check("prctl(PR_SET_SECUREBITS)", $"securebits 0x{creds.Secbits:x}", SyscallNumbers.prctl, PR_SET_SECUREBITS, creds.Secbits);
            CapSet(task, eff, prm, inh, "the dumped sets");
        }
        if (creds.HasNoNewPrivs && creds.NoNewPrivs != 0)
            task.Check("prctl(PR_SET_NO_NEW_PRIVS)", "no_new_privs", SyscallNumbers.prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        if (groupsDiffer || gidsDiffer || uidsDiffer || capsDiffer || dropFromBounding != 0)
            Log.Info($"{task.Pid}: restore: credentials uid {creds.Uid}/{creds.Euid}/{creds.Suid} gid {creds.Gid}/{creds.Egid}/{creds.Sgid} " +
                $"caps eff 0x{eff:x} prm 0x{prm:x} inh 0x{inh:x} bnd 0x{bnd:x} amb 0x{amb:x} securebits 0x{creds.Secbits:x}");
    }

    /// <summary>Two u32 words, low first, as CRIU stores a capability set.</summary>
    private static ulong Caps(IReadOnlyList<uint> words) =>
        (words.Count > 0 ? words[0] : 0) | (words.Count > 1 ? (ulong)words[1] << 32 : 0);

    private static void CapSet(StubInjector task, ulong effective, ulong permitted, ulong inheritable, string what)
    {
        // struct __user_cap_header_struct { u32 version; int pid; } and two struct __user_cap_data_struct
        // { u32 effective, permitted, inheritable; } for the low and high 32 capabilities.
        Span<byte> header = stackalloc byte[8];
        Span<byte> data = stackalloc byte[24];
        BinaryPrimitives.WriteUInt32LittleEndian(header, CapabilityVersion3);
        BinaryPrimitives.WriteInt32LittleEndian(header[4..], 0);
        for (int half = 0; half < 2; half++)
        {
            int shift = 32 * half;
            BinaryPrimitives.WriteUInt32LittleEndian(data[(12 * half)..], (uint)(effective >> shift));
            BinaryPrimitives.WriteUInt32LittleEndian(data[(12 * half + 4)..], (uint)(permitted >> shift));
            BinaryPrimitives.WriteUInt32LittleEndian(data[(12 * half + 8)..], (uint)(inheritable >> shift));
        }
        task.Check("capset", $"{what} (eff 0x{effective:x} prm 0x{permitted:x} inh 0x{inheritable:x})", SyscallNumbers.capset,
            (long)task.Put(header), (long)task.Put(data));
        task.ResetScratch();
    }

    /// <summary>setfsuid/setfsgid return the previous id, never an error: ask again to see whether it took.</summary>
    private static void SetFsId(StubInjector task, long nr, string name, uint id)
    {
        task.Syscall(nr, id);
        long now = task.Syscall(nr, uint.MaxValue);
        if ((uint)now != id) throw new RestoreException($"{name} in restored task {task.Pid} failed for id {id} (it is {now})");
    }
}
