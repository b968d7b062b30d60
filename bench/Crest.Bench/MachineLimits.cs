// What this machine can do with N bytes, measured in the same run as Crest so that Crest's
// figures can be read against them:
//   - write(2) of N bytes already in memory to a file on the images' tmpfs (what dump must
//     approach: its output is that file);
//   - process_vm_readv(2) of the target's N bytes into present memory (dump's input side);
//   - one thread touching N bytes of fresh anonymous memory, one write per page (the page-fault
//     rate a restore that fills memory page by page cannot beat).
using System.Diagnostics;
using System.Text;

namespace Crest.Bench;

internal sealed record MachineLimits(double TmpfsWriteSeconds, double VmReadvSeconds, double FaultInSeconds)
{
    /// <summary>Chunk of each write(2): large, as a dump writing pages sequentially would use.</summary>
    private const int WriteChunk = 64 << 20;
    private const int PageSize = 4096;

    /// <summary>
    /// Reads the target's mapping at <paramref name="address"/> with process_vm_readv, writes those
    /// bytes to a file in <paramref name="directory"/>, then faults in as much fresh memory; each
    /// <paramref name="repeats"/> times, keeping the fastest (the limit, not the noise of a shared machine).
    /// </summary>
    public static unsafe MachineLimits Measure(int pid, ulong address, long length, string directory, int repeats)
    {
        double readv = double.MaxValue, write = double.MaxValue, fault = double.MaxValue;
        byte* buffer = Map(length, populate: true);
        string file = Path.Combine(directory, "tmpfs-write-baseline");
        try
        {
            for (int i = 0; i < repeats; i++)
            {
                long start = Stopwatch.GetTimestamp();
                ReadRemote(pid, address, buffer, length);
                readv = Math.Min(readv, Stopwatch.GetElapsedTime(start).TotalSeconds);
                start = Stopwatch.GetTimestamp();
                WriteFile(file, buffer, length);
                write = Math.Min(write, Stopwatch.GetElapsedTime(start).TotalSeconds);
                File.Delete(file);
            }
        }
        finally
        {
            Native.munmap(buffer, (nuint)length);
            File.Delete(file);
        }
        // After the buffer and the file are gone: the 4 GiB case must not hold three copies at once.
        for (int i = 0; i < repeats; i++) fault = Math.Min(fault, FaultIn(length));
        return new MachineLimits(write, readv, fault);
    }

    private static unsafe byte* Map(long length, bool populate)
    {
        void* p = Native.mmap(null, (nuint)length, Native.PROT_READ | Native.PROT_WRITE,
            Native.MAP_PRIVATE | Native.MAP_ANONYMOUS | (populate ? Native.MAP_POPULATE : 0), -1, 0);
        if (p == (void*)-1) throw Native.Failure($"mmap({length})");
        return (byte*)p;
    }

    private static unsafe void ReadRemote(int pid, ulong address, byte* buffer, long length)
    {
        long done = 0;
        while (done < length)
        {
            var local = new Native.IoVec { Base = buffer + done, Length = (nuint)(length - done) };
            var remote = new Native.IoVec { Base = (void*)(address + (ulong)done), Length = (nuint)(length - done) };
            nint n = Native.process_vm_readv(pid, &local, 1, &remote, 1, 0);
            if (n <= 0) throw Native.Failure($"process_vm_readv({pid}, {address + (ulong)done:x})");
            done += n;
        }
    }

    private static unsafe void WriteFile(string path, byte* buffer, long length)
    {
        byte[] name = Encoding.UTF8.GetBytes(path + "\0");
        int fd;
        fixed (byte* p = name) fd = Native.open(p, Native.O_WRONLY | Native.O_CREAT | Native.O_TRUNC | Native.O_CLOEXEC, 0x180);
        if (fd < 0) throw Native.Failure($"open({path})");
        try
        {
            long done = 0;
            while (done < length)
            {
                nint n = Native.write(fd, buffer + done, (nuint)Math.Min(WriteChunk, length - done));
                if (n <= 0) throw Native.Failure($"write({path})");
                done += n;
            }
        }
        finally
        {
            Native.close(fd);
        }
    }

    /// <summary>mmap, one store per page, munmap not counted.</summary>
    private static unsafe double FaultIn(long length)
    {
        long start = Stopwatch.GetTimestamp();
        byte* p = Map(length, populate: false);
        for (long offset = 0; offset < length; offset += PageSize) p[offset] = 1;
        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        Native.munmap(p, (nuint)length);
        return seconds;
    }
}
