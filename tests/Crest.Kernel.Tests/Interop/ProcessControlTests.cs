using Crest.Kernel.Arch.X64;
using Crest.Kernel.Interop;

namespace Crest.Kernel.Tests.Interop;

public class ProcessControlTests
{
    [Fact]
    public void TaskNameRoundTripsThroughTheKernel()
    {
        // PR_SET_NAME names the calling thread: run on a thread of our own so the runtime's stay as they are.
        string? seen = null, comm = null;
        var thread = new Thread(() =>
        {
            ProcessControl.SetName("crest-test-名");
            seen = ProcessControl.GetName();
            comm = File.ReadAllText($"/proc/self/task/{Libc.syscall(SyscallNumbers.gettid)}/comm").TrimEnd('\n');
        });
        thread.Start();
        Assert.True(thread.Join(TimeSpan.FromSeconds(10)));
        Assert.Equal("crest-test-名", seen);
        Assert.Equal("crest-test-名", comm);
    }

    [Fact]
    public void NamesLongerThanTheCommBufferAreRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => ProcessControl.SetName("0123456789abcdef"));
        Assert.Contains("15 bytes", e.Message);
    }

    [Fact]
    public unsafe void TheKernelReportsTheSizeOfItsPrctlMmMap()
    {
        Assert.Equal(sizeof(prctl_mm_map), ProcessControl.GetMmMapSize());
    }

    [Fact]
    public void DumpableSecureBitsAndPersonalityMatchProc()
    {
        Assert.Equal(1, ProcessControl.GetDumpable());
        string status = File.ReadAllText("/proc/self/status");
        Assert.Contains("\nNoNewPrivs:\t0", status);
        Assert.Equal(0u, ProcessControl.GetSecureBits());
        uint personality = Convert.ToUInt32(File.ReadAllText("/proc/self/personality").Trim(), 16);
        Assert.Equal(personality, ProcessControl.GetPersonality());
        Assert.Equal(personality, ProcessControl.SetPersonality(personality));
    }

    [Fact]
    public void UnknownPrctlOptionsNameTheOptionAndErrno()
    {
        var e = Assert.Throws<KernelException>(() => ProcessControl.Prctl(0x7fff_0000));
        Assert.Equal(Errno.EINVAL, e.Errno.Value);
        Assert.StartsWith("prctl(2147418112): EINVAL", e.Message);
    }
}
