using System.Runtime.InteropServices;
using Crest.Engine.Dump;
using Crest.Engine.Restore;
using Crest.Images;
using Crest.Images.Protos;
using Crest.Kernel.Processes;
using Crest.Kernel.Tests.Fixtures;

namespace Crest.Engine.Tests.Restore;

/// <summary>Dump a running fixture, kill it, restore it, let it verify itself.</summary>
internal static partial class RestoreTestSupport
{
    public const int SIGKILL = 9, SIGUSR1 = 10, SIGTERM = 15;

    public static string NewImagesDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"crest-restore-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>A fresh directory under /tmp (images, or the files a fixture works on), removed with all it holds.</summary>
    public sealed class ScratchDirectory : IDisposable
    {
        public string Path { get; } = NewImagesDir();

        /// <summary>A subdirectory, created.</summary>
        public string Sub(string name) => Directory.CreateDirectory(System.IO.Path.Combine(Path, name)).FullName;

        public void Dispose() => Directory.Delete(Path, recursive: true);
    }

    /// <summary>Dump with DumpEngine (which kills the task, as CRIU does without -R), and reap the original.</summary>
    public static void DumpAndKill(FixtureProcess fixture, string dir)
    {
        DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = dir });
        fixture.Child.WaitForExit(TimeSpan.FromSeconds(10));
    }

    /// <summary>Dump with <paramref name="options"/> (naming the fixture's pid) and reap the original.</summary>
    public static void DumpAndKill(FixtureProcess fixture, DumpOptions options)
    {
        DumpEngine.Dump(options);
        fixture.Child.WaitForExit(TimeSpan.FromSeconds(10));
    }

    /// <summary>Dump a task that is not a FixtureProcess child (a restored one) and wait until it is gone.</summary>
    public static void DumpAndKill(ChildProcess task, string dir)
    {
        DumpEngine.Dump(new DumpOptions { Pid = task.Pid, ImagesDir = dir });
        task.WaitForExit(TimeSpan.FromSeconds(10));
    }

    /// <summary>Restore detached; the restored task is our child: returns a handle that reaps (and kills on Dispose).</summary>
    public static ChildProcess RestoreDetached(string dir, params InheritedFd[] inherit)
    {
        string pidFile = Path.Combine(dir, $"restored-{Guid.NewGuid():N}.pid");
        int rc = RestoreEngine.Run(new RestoreOptions { ImagesDir = dir, Detached = true, PidFile = pidFile, InheritFds = inherit });
        Assert.Equal(0, rc);
        return ChildProcess.Adopt(int.Parse(File.ReadAllText(pidFile), System.Globalization.CultureInfo.InvariantCulture));
    }

    /// <summary>Restore detached, signal the fixture to check itself, assert PASS; returns the restored pid.</summary>
    public static int RestoreAndVerify(string dir, FixtureProcess fixture, params InheritedFd[] inherit)
    {
        using var restored = RestoreDetached(dir, inherit);
        AssertPass(Verify(restored, fixture));
        return restored.Pid;
    }

    /// <summary>The entries of files.img.</summary>
    public static List<FileEntry> FileEntries(string dir)
    {
        using var reader = ImageReader.Open(Path.Combine(dir, "files.img"), ImageKinds.Files);
        return reader.ReadEntries(FileEntry.Parser).ToList();
    }

    /// <summary>Signal the restored fixture and return its verdict line from the fixture's output.</summary>
    public static string Verify(ChildProcess restored, FixtureProcess fixture, int signal = SIGUSR1)
    {
        // The dump rewinds an interrupted syscall (as CRIU does): until the task has re-entered it, a signal
        // would run its handler first and the re-issued pause() would miss it. Wait for it to block again.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(20))
        {
            string syscall = File.Exists($"/proc/{restored.Pid}/syscall") ? File.ReadAllText($"/proc/{restored.Pid}/syscall") : "";
            if (syscall.Length > 0 && char.IsDigit(syscall[0])) break;
            Thread.Sleep(2);
        }
        restored.Signal(signal);
        var status = restored.WaitForExit(TimeSpan.FromSeconds(20));
        string output = fixture.Output;
        string? verdict = output.Split('\n').FirstOrDefault(l => l.StartsWith("PASS", StringComparison.Ordinal) || l.StartsWith("FAIL", StringComparison.Ordinal));
        return verdict is "PASS" && status.Exited ? verdict : $"{verdict} ({status}):\n{output}";
    }

    public static void AssertPass(string verdict) => Assert.True(verdict == "PASS", verdict);

    public static bool Exists(int pid) => Kill(pid, 0) == 0;

    /// <summary>The children of every thread of the test process, as /proc lists them.</summary>
    public static string Children() =>
        string.Concat(Directory.GetDirectories("/proc/self/task").Select(t => File.ReadAllText(Path.Combine(t, "children"))));

    /// <summary>A restore that must fail: it throws, the task is gone, and the test process has the children it had.</summary>
    /// <summary>
    /// Dumps <paramref name="fixture"/> into <paramref name="dir"/> and kills it; <paramref name="change"/> then alters what
    /// the restore will find (an image, a file the images name); the restore must fail and leave no task: its exception.
    /// </summary>
    public static RestoreException FailsCleanlyAfter(FixtureProcess fixture, string dir, Action change)
    {
        DumpAndKill(fixture, dir);
        string children = Children();
        change();
        return FailsCleanly(dir, fixture.Pid, children);
    }

    public static RestoreException FailsCleanly(string dir, int pid, string childrenBefore)
    {
        var e = Assert.Throws<RestoreException>(() => RestoreEngine.Run(new RestoreOptions { ImagesDir = dir, Detached = true }));
        Assert.False(Exists(pid), $"task {pid} was left behind");
        Assert.Equal(childrenBefore, Children());
        return e;
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    internal static partial int Kill(int pid, int sig);
}
