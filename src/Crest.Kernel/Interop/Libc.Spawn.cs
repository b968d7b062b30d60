// posix_spawn(3) with file actions and attributes, glibc ≥ 2.26 for POSIX_SPAWN_SETSID and ≥ 2.29 for
// posix_spawn_file_actions_addchdir_np. glibc spawns with clone(CLONE_VM|CLONE_VFORK) and reports exec
// failures as the return value; the functions return an error number instead of setting errno.
// The opaque types are allocated by the caller: their sizes here are upper bounds of glibc's
// (posix_spawnattr_t is 336 bytes, posix_spawn_file_actions_t 80 bytes on x86_64).
using System.Runtime.InteropServices;

namespace Crest.Kernel.Interop;

internal static unsafe partial class Libc
{
    internal const int PosixSpawnAttrSize = 512, PosixSpawnFileActionsSize = 256, SigsetSize = 128;

    internal const short POSIX_SPAWN_RESETIDS = 0x01, POSIX_SPAWN_SETPGROUP = 0x02, POSIX_SPAWN_SETSIGDEF = 0x04,
        POSIX_SPAWN_SETSIGMASK = 0x08, POSIX_SPAWN_SETSCHEDPARAM = 0x10, POSIX_SPAWN_SETSCHEDULER = 0x20,
        POSIX_SPAWN_USEVFORK = 0x40, POSIX_SPAWN_SETSID = 0x80;

    /// <summary>posix_spawn(3). Returns 0 or an error number.</summary>
    [LibraryImport("libc")]
    internal static partial int posix_spawn(int* pid, byte* path, void* file_actions, void* attrp, byte** argv, byte** envp);

    /// <summary>posix_spawnp(3): like posix_spawn, the file searched in PATH when it has no slash.</summary>
    [LibraryImport("libc")]
    internal static partial int posix_spawnp(int* pid, byte* file, void* file_actions, void* attrp, byte** argv, byte** envp);

    /// <summary>posix_spawnattr_init(3).</summary>
    [LibraryImport("libc")]
    internal static partial int posix_spawnattr_init(void* attr);

    /// <summary>posix_spawnattr_destroy(3).</summary>
    [LibraryImport("libc")]
    internal static partial int posix_spawnattr_destroy(void* attr);

    /// <summary>posix_spawnattr_setflags(3).</summary>
    [LibraryImport("libc")]
    internal static partial int posix_spawnattr_setflags(void* attr, short flags);

    /// <summary>posix_spawnattr_setsigdefault(3).</summary>
    [LibraryImport("libc")]
    internal static partial int posix_spawnattr_setsigdefault(void* attr, void* sigdefault);

    /// <summary>posix_spawnattr_setsigmask(3).</summary>
    [LibraryImport("libc")]
    internal static partial int posix_spawnattr_setsigmask(void* attr, void* sigmask);

    /// <summary>posix_spawnattr_setpgroup(3).</summary>
    [LibraryImport("libc")]
    internal static partial int posix_spawnattr_setpgroup(void* attr, int pgroup);

    /// <summary>posix_spawn_file_actions_init(3).</summary>
    [LibraryImport("libc")]
    internal static partial int posix_spawn_file_actions_init(void* file_actions);

    /// <summary>posix_spawn_file_actions_destroy(3).</summary>
    [LibraryImport("libc")]
    internal static partial int posix_spawn_file_actions_destroy(void* file_actions);

    /// <summary>posix_spawn_file_actions_addopen(3). glibc copies the path.</summary>
    [LibraryImport("libc")]
    internal static partial int posix_spawn_file_actions_addopen(void* file_actions, int fd, byte* path, int oflag, uint mode);

    /// <summary>posix_spawn_file_actions_adddup2(3).</summary>
    [LibraryImport("libc")]
    internal static partial int posix_spawn_file_actions_adddup2(void* file_actions, int fd, int newfd);

    /// <summary>posix_spawn_file_actions_addclose(3).</summary>
    [LibraryImport("libc")]
    internal static partial int posix_spawn_file_actions_addclose(void* file_actions, int fd);

    /// <summary>posix_spawn_file_actions_addchdir_np(3), glibc 2.29. glibc copies the path.</summary>
    [LibraryImport("libc")]
    internal static partial int posix_spawn_file_actions_addchdir_np(void* file_actions, byte* path);

    /// <summary>sigemptyset(3).</summary>
    [LibraryImport("libc")]
    internal static partial int sigemptyset(void* set);
}
