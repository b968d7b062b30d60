using Crest.Engine.Tests.Dump;
using Crest.Images;
using Crest.Images.Protos;
using Crest.Kernel.Tests.Fixtures;
using static Crest.Engine.Tests.Restore.RestoreTestSupport;

namespace Crest.Engine.Tests.Restore;

// Credentials beyond the ids (capability sets, bounding and ambient sets, securebits, no_new_privs) and
// seccomp (a stack of filters, strict mode). The fixture sets them up, and after restore checks them itself.
[Collection("Children of the test process")]
public class CredentialsTests
{
    [Fact]
    public void CapabilitiesSecurebitsAndSeccompFiltersComeBack()
    {
        string dir = NewImagesDir();
        using var fixture = FixtureProcess.Start("restore_creds", "creds");
        try
        {
            DumpAndKill(fixture, dir);

            CoreEntry core;
            using (var reader = ImageReader.Open(Path.Combine(dir, $"core-{fixture.Pid}.img"), ImageKinds.Core))
                core = reader.ReadEntries(CoreEntry.Parser).Single();
            var thread = core.ThreadCore;
            Assert.Equal(SeccompMode.Filter, thread.SeccompMode);
            Assert.Equal((1000u, 1001u, 1002u, 2000u, 2001u, 2002u), (thread.Creds.Uid, thread.Creds.Euid, thread.Creds.Suid, thread.Creds.Gid, thread.Creds.Egid, thread.Creds.Sgid));
            Assert.Equal(1u, thread.Creds.NoNewPrivs);
            Assert.Equal(1u << 10 /* CAP_NET_BIND_SERVICE */, thread.Creds.CapAmb[0]);
            Assert.Equal(0x14u, thread.Creds.Secbits);

            SeccompEntry seccomp;
            using (var reader = ImageReader.Open(Path.Combine(dir, "seccomp.img"), ImageKinds.Seccomp))
                seccomp = reader.ReadEntries(SeccompEntry.Parser).Single();
            Assert.Equal(2, seccomp.SeccompFilters.Count);
            Assert.False(seccomp.SeccompFilters[0].HasPrev);
            Assert.Equal(0u, seccomp.SeccompFilters[1].Prev);
            Assert.Equal(2u /* SECCOMP_FILTER_FLAG_LOG */, seccomp.SeccompFilters[1].Flags);
            Assert.Equal(1u, thread.SeccompFilter);
            // Oldest first: getpgid (121) then getsid (124) in each program's comparison.
            Assert.Equal(121, seccomp.SeccompFilters[0].Filter[12]);
            Assert.Equal(124, seccomp.SeccompFilters[1].Filter[12]);
            foreach (string image in new[] { "seccomp.img", $"core-{fixture.Pid}.img" })
                using (Crit.Decode(Path.Combine(dir, image))) { }

            using var restored = RestoreDetached(dir);
            Assert.Equal(fixture.Pid, restored.Pid);
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void StrictModeComesBackAndStillAllowsReadWriteAndExit()
    {
        string dir = NewImagesDir();
        using var fixture = FixtureProcess.Start("restore_creds", "strict");
        try
        {
            // The fixture enters strict mode right after its READY line.
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (!File.ReadAllText($"/proc/{fixture.Pid}/status").Contains("Seccomp:\t1\n", StringComparison.Ordinal))
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), "the fixture did not enter strict mode");
                Thread.Sleep(2);
            }
            DumpAndKill(fixture, dir);
            using var restored = RestoreDetached(dir);
            Assert.Contains("Seccomp:\t1\n", File.ReadAllText($"/proc/{restored.Pid}/status"), StringComparison.Ordinal);
            AssertPass(Verify(restored, fixture));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
