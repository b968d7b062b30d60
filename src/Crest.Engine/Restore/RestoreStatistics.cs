namespace Crest.Engine.Restore;

/// <summary>Figures of one restore (times in CRIU's stats-restore are microseconds).</summary>
public sealed record RestoreStatistics(TimeSpan ForkingTime, TimeSpan MemoryTime, TimeSpan RestoreTime, long PagesRestored)
{
    /// <summary>Time spent writing page contents (process_vm_writev), part of MemoryTime.</summary>
    public TimeSpan PagesWriteTime { get; init; }

    /// <summary>Page contents written per second, in bytes.</summary>
    public double PagesWriteRate => PagesWriteTime > TimeSpan.Zero ? PagesRestored * 4096.0 / PagesWriteTime.TotalSeconds : 0;
}
