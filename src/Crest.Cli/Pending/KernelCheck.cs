// Stand-in until the kernel-check branch is merged; see Pending/README.md.
namespace Crest.Engine.Check;

public static class KernelCheck
{
    public static int Run(bool all, IReadOnlyList<string> features, TextWriter output) => throw new InvalidOperationException("pending merge");
}
