using Crest.Engine.Restore;
using Crest.Kernel.Tests.Fixtures;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Restore;

// Anonymous pages are restored with UFFDIO_COPY through a userfaultfd made in the task: the task must come
// out as if its pages had been written any other way, with no registration, no fd and no VMA change left.
[Collection("Children of the test process")]
public class UserfaultfdFillTests
{
    [Fact]
    public void PagesFilledByUserfaultfdLeaveTheVmasAsDumped()
    {
        string dir = NewImagesDir();
        using var fixture = FixtureProcess.Start("restore_memory", "64");
        try
        {
            var before = VmaFlags(fixture.Pid);
            DumpAndKill(fixture, dir);
            using var restored = RestoreDetached(dir);
            var after = VmaFlags(restored.Pid);
            Assert.Equal(before.Keys, after.Keys);
            foreach (var (range, flags) in before)
            {
                Assert.DoesNotContain(" um", after[range], StringComparison.Ordinal);
                Assert.True(flags == after[range], $"VMA {range}: VmFlags{flags} before the dump, VmFlags{after[range]} after the restore");
            }
            Assert.DoesNotContain(Directory.GetFiles($"/proc/{restored.Pid}/fd"),
                fd => File.ResolveLinkTarget(fd, false)?.ToString().Contains("userfaultfd", StringComparison.Ordinal) == true);
            Assert.True(RestoreEngine.LastStatistics!.PagesRestored >= 64 * 256);
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void FaultingWritersAndUserfaultfdRestoreTheSameMemory()
    {
        string dir = NewImagesDir();
        using var fixture = FixtureProcess.Start("restore_memory", "16");
        try
        {
            DumpAndKill(fixture, dir);
            RestoreMemory.UseUserfaultfd = false;
            SortedDictionary<string, string> written;
            using (var restored = RestoreDetached(dir)) written = VmaFlags(restored.Pid);
            RestoreMemory.UseUserfaultfd = true;
            using var copied = RestoreDetached(dir);
            Assert.Equal(written, VmaFlags(copied.Pid));
            AssertPass(Verify(copied, fixture));
        }
        finally
        {
            RestoreMemory.UseUserfaultfd = true;
            Directory.Delete(dir, true);
        }
    }

    /// <summary>The VmFlags line of each VMA of /proc/PID/smaps, by its address range.</summary>
    private static SortedDictionary<string, string> VmaFlags(int pid)
    {
        var result = new SortedDictionary<string, string>(StringComparer.Ordinal);
        string? range = null;
        foreach (string line in File.ReadAllLines($"/proc/{pid}/smaps"))
        {
            string first = line.Split(' ')[0];
            if (first.Contains('-', StringComparison.Ordinal) && first.All(c => c == '-' || char.IsAsciiHexDigit(c)))
                range = first;
            else if (line.StartsWith("VmFlags:", StringComparison.Ordinal) && range is not null)
                result[range] = line["VmFlags:".Length..];
        }
        return result;
    }
}
