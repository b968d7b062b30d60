using Crest.Kernel.Ptrace;

namespace Crest.Kernel.Tests.Ptrace;

public class TracerTests
{
    [Fact]
    public void WorkRunsOnOneDedicatedThread()
    {
        using var tracer = new Tracer();
        int first = tracer.Run(() => Environment.CurrentManagedThreadId);
        int second = tracer.Run(() => Environment.CurrentManagedThreadId);
        Assert.Equal(first, second);
        Assert.NotEqual(Environment.CurrentManagedThreadId, first);
        Assert.False(tracer.IsCurrentThread);
        Assert.True(tracer.Run(() => tracer.IsCurrentThread));
        // Work submitted from the tracer thread runs inline instead of deadlocking.
        Assert.Equal(first, tracer.Run(() => tracer.Run(() => Environment.CurrentManagedThreadId)));
    }

    [Fact]
    public void ExceptionsReachTheCaller()
    {
        using var tracer = new Tracer();
        var e = Assert.Throws<KernelException>(() => tracer.Run<int>(() => throw new KernelException("ptrace(PTRACE_CONT)", 7, new Errno(Errno.ESRCH))));
        Assert.Equal("ptrace(PTRACE_CONT, 7): ESRCH (No such process)", e.Message);
        Assert.Equal(4, tracer.Run(() => 4));
    }

    [Fact]
    public void DisposedTracerRefusesWork()
    {
        var tracer = new Tracer();
        tracer.Dispose();
        Assert.Throws<ObjectDisposedException>(() => tracer.Run(() => 1));
    }
}
