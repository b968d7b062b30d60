namespace Crest.Engine.Dump;

/// <summary>
/// Figures of one dump, the same ones CRIU writes to stats-dump: times (CRIU keeps microseconds) and page
/// counts. PagesWritten counts the 4 KiB pages in pages-*.img.
/// </summary>
public sealed record DumpStatistics(
    TimeSpan FreezingTime,
    TimeSpan FrozenTime,
    TimeSpan MemdumpTime,
    TimeSpan MemwriteTime,
    ulong PagesScanned,
    ulong PagesSkippedParent,
    ulong PagesWritten,
    ulong PagesLazy,
    ulong ImageBytes);
