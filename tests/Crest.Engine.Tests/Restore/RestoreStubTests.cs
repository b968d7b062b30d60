using System.Diagnostics;
using Crest.Engine.Restore;

namespace Crest.Engine.Tests.Restore;

// Shares a collection with KernelCheckTests: that one asserts the test process has no children left.
[Collection("Children of the test process")]
public class RestoreStubTests
{
    [Fact]
    public void TheStubRunsStopsItselfAndSleepsAtItsBase()
    {
        const ulong Base = 0x5000_0000;
        string path = Path.Combine(Path.GetTempPath(), $"crest-stub-{Guid.NewGuid():N}");
        File.WriteAllBytes(path, RestoreStub.Build(Base));
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        // Our own posix_spawn, not System.Diagnostics.Process: once that runs, the runtime's SIGCHLD handling is back
        // in this assembly, which traces (and waits for) its children itself (ENGINE.md §8).
        var stub = Crest.Kernel.Processes.ChildProcess.Spawn(path, [path]);
        try
        {
            string state = "";
            var deadline = Stopwatch.StartNew();
            while (deadline.Elapsed < TimeSpan.FromSeconds(10))
            {
                string stat = File.ReadAllText($"/proc/{stub.Pid}/stat");
                state = stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[0];
                if (state == "T") break;
                Thread.Sleep(10);
            }
            Assert.Equal("T", state); // stopped by its own SIGSTOP

            string maps = File.ReadAllText($"/proc/{stub.Pid}/maps");
            Assert.Contains($"{Base:x8}-{Base + 0x1000:x8} r-xp 00000000", maps);
            Assert.DoesNotContain("libc", maps);

            // Continued, it goes to sleep in pause(), not anywhere else.
            Assert.Equal(0, Kill(stub.Pid, 18 /* SIGCONT */));
            deadline.Restart();
            string wchan = "";
            while (deadline.Elapsed < TimeSpan.FromSeconds(10))
            {
                string syscall = File.ReadAllText($"/proc/{stub.Pid}/syscall");
                wchan = syscall.Split(' ')[0];
                if (wchan == "34") break;
                Thread.Sleep(10);
            }
            Assert.Equal("34", wchan); // __NR_pause
        }
        finally
        {
            stub.Dispose(); // SIGKILL and reap
            File.Delete(path);
        }
    }

    [Fact]
    public void TheGadgetIsSyscallThenInt3()
    {
        var image = RestoreStub.Build(0x10000);
        Assert.Equal(new byte[] { 0x0f, 0x05, 0xcc }, image[RestoreStub.GadgetOffset..(RestoreStub.GadgetOffset + 3)]);
        Assert.Equal(RestoreStub.Size, image.Length);
        Assert.True(image.Length <= 4096);
    }

    [Theory]
    [InlineData(0x1234UL)]
    [InlineData(0x1000UL)]
    [InlineData(0x8000_0000_0000UL)]
    public void BadBaseAddressesAreRefused(ulong address) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => RestoreStub.Build(address));

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int sig);
}
