// The golden /proc samples in Proc/samples: *.awkward.* were captured from tests/fixtures/proc_awkward
// on Linux 6.18; *.pseudo.*, *.escaped.*, *.newline-comm.* and mountinfo.awkward.txt are written by
// hand in the kernel's exact layout for cases this machine cannot produce.
namespace Crest.Kernel.Tests.Proc;

internal static class ProcSamples
{
    public static string Directory => Path.Combine(AppContext.BaseDirectory, "Proc", "samples");

    public static byte[] Read(string name) => File.ReadAllBytes(Path.Combine(Directory, name));

    public static IEnumerable<string> All => System.IO.Directory.GetFiles(Directory).Select(Path.GetFileName).OfType<string>().Order();
}
