using Crest.Engine.Dump;
using Crest.Engine.Tests.Dump;
using Crest.Kernel.Tests.Fixtures;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Tree;

// Two checkpoints of the same quiet tree (--leave-running, nothing in it moves between them) must give the
// same images: every image decodes (crit) to the same JSON and the pages are byte for byte the same. Only
// stats-dump (timings) may differ, and each thread's struct rseq, where the kernel writes the CPU the task
// last ran on (cpu_id_start, cpu_id, mm_cid: it moves between the two CPUs here). A dump that depended on anything but the tree's state (iteration order
// of a hash, a clock, Crest's own fds) would show here.
[Collection("Children of the test process")]
public class ConsecutiveDumpTests
{
    [Theory]
    [InlineData("tree_fork")]
    [InlineData("tree_groups")]
    [InlineData("tree_zombie")]
    public void TwoCheckpointsOfAQuietTreeGiveEqualImages(string fixtureName)
    {
        using var fixture = FixtureProcess.Start(fixtureName);
        string first = NewImagesDir(), second = NewImagesDir();
        try
        {
            WaitUntilAsleep(fixture.Pid);
            DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = first, LeaveRunning = true });
            WaitUntilAsleep(fixture.Pid);
            DumpEngine.Dump(new DumpOptions { Pid = fixture.Pid, ImagesDir = second, LeaveRunning = true });
            var names = Directory.GetFiles(first).Select(f => Path.GetFileName(f)).Order().ToList();
            Assert.Equal(names, Directory.GetFiles(second).Select(f => Path.GetFileName(f)).Order().ToList());
            foreach (string name in names)
            {
                if (name is "stats-dump") continue;
                string a = Path.Combine(first, name), b = Path.Combine(second, name);
                if (name.StartsWith("pages-", StringComparison.Ordinal))
                {
                    byte[] pa = File.ReadAllBytes(a), pb = File.ReadAllBytes(b);
                    Assert.Equal(pa.Length, pb.Length);
                    MaskRseq(first, name, pa);
                    MaskRseq(first, name, pb);
                    Assert.True(pa.AsSpan().SequenceEqual(pb), $"{name} differs: {DescribeDifference(first, name, pa, pb)}");
                    continue;
                }
                using var ja = Crit.Decode(a);
                using var jb = Crit.Decode(b);
                Assert.Equal(ja.RootElement.GetRawText(), jb.RootElement.GetRawText());
            }
            // Both dumps left the tree running as it was: it checks itself.
            Assert.Equal("PASS", fixture.Verify(SIGUSR1, TimeSpan.FromSeconds(20)));
        }
        finally
        {
            Directory.Delete(first, true);
            Directory.Delete(second, true);
        }
    }

    /// <summary>
    /// Zero each thread's struct rseq (32 bytes) in <paramref name="pages"/>. Every core image's address is
    /// masked wherever it falls in a present range (forked processes share addresses; masking a few bytes
    /// more is harmless).
    /// </summary>
    private static void MaskRseq(string dir, string pagesName, byte[] pages)
    {
        var addresses = new List<ulong>();
        foreach (string coreImage in Directory.GetFiles(dir, "core-*.img"))
        {
            using var coreReader = Crest.Images.ImageReader.Open(coreImage, Crest.Images.ImageKinds.Core);
            foreach (var core in coreReader.ReadEntries(Crest.Images.Protos.CoreEntry.Parser))
                if (core.ThreadCore?.RseqEntry is { RseqAbiPointer: not 0 } rseq) addresses.Add(rseq.RseqAbiPointer);
        }
        foreach (string pagemap in Directory.GetFiles(dir, "pagemap-*.img"))
        {
            using var reader = Crest.Images.Pages.PagemapReader.Open(pagemap);
            if ($"pages-{reader.PagesId}.img" != pagesName) continue;
            while (reader.TryRead(out var record))
            {
                foreach (ulong address in addresses)
                {
                    if (!record.IsPresent || address < record.Vaddr || address + 32 > record.Vaddr + (ulong)record.Length) continue;
                    pages.AsSpan((int)(record.PagesOffset + (long)(address - record.Vaddr)), 32).Clear();
                }
            }
        }
    }

    /// <summary>Where two pages images first differ: the page's address (from the pagemap that names it) and the bytes.</summary>
    private static string DescribeDifference(string dir, string pagesName, byte[] a, byte[] b)
    {
        int at = 0;
        while (at < Math.Min(a.Length, b.Length) && a[at] == b[at]) at++;
        if (at == Math.Min(a.Length, b.Length)) return $"lengths {a.Length} and {b.Length}";
        foreach (string pagemap in Directory.GetFiles(dir, "pagemap-*.img"))
        {
            using var reader = Crest.Images.Pages.PagemapReader.Open(pagemap);
            if ($"pages-{reader.PagesId}.img" != pagesName) continue;
            while (reader.TryRead(out var record))
            {
                if (record.IsPresent && at >= record.PagesOffset && at < record.PagesOffset + record.Length)
                    return $"byte {at}: address 0x{record.Vaddr + (ulong)(at - record.PagesOffset):x} ({Path.GetFileName(pagemap)}), {a[at]:x2} against {b[at]:x2}";
            }
        }
        return $"byte {at}";
    }

    /// <summary>
    /// READY is printed a little before each process blocks: wait until every process of the tree sleeps in a
    /// syscall (or is a zombie), so that nothing, not even a stack frame, moves between the two dumps.
    /// </summary>
    private static void WaitUntilAsleep(int root)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            var pending = new Stack<int>([root]);
            bool asleep = true;
            while (pending.Count > 0 && asleep)
            {
                int pid = pending.Pop();
                string stat = File.ReadAllText($"/proc/{pid}/stat");
                char state = stat[stat.LastIndexOf(')') + 2];
                if (state == 'Z') continue;
                string syscall = File.ReadAllText($"/proc/{pid}/syscall");
                asleep = state == 'S' && syscall.Length > 0 && char.IsDigit(syscall[0]);
                foreach (string child in File.ReadAllText($"/proc/{pid}/task/{pid}/children").Split(' ', StringSplitOptions.RemoveEmptyEntries))
                    pending.Push(int.Parse(child, System.Globalization.CultureInfo.InvariantCulture));
            }
            if (asleep) return;
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"the tree of {root} does not settle");
            Thread.Sleep(5);
        }
    }
}
