// /proc/PID/timers (proc(5), fs/proc/base.c show_timer, since Linux 3.10; needs CONFIG_CHECKPOINT_RESTORE):
// one block of four lines per POSIX timer, newest first:
//
//   ID: 0
//   signal: 35/0000000000000055        signo / sigev_value as hex pointer
//   notify: signal/pid.11382           {signal,none,thread}/{pid,tid}.N (tid = SIGEV_THREAD_ID)
//   ClockID: 1
namespace Crest.Kernel.Proc;

/// <summary>sigev_notify without the SIGEV_THREAD_ID bit; values as in &lt;signal.h&gt;.</summary>
public enum SigevNotify
{
    Signal = 0,
    None = 1,
    Thread = 2,
}

/// <summary>One POSIX timer of /proc/PID/timers.</summary>
/// <param name="ToThread">notify target is "tid.N": SIGEV_THREAD_ID was set.</param>
/// <param name="NotifyTarget">The pid or tid of the notify target.</param>
public sealed record PosixTimerInfo(int Id, int Signal, ulong SigevValue, SigevNotify Notify, bool ToThread,
    int NotifyTarget, int ClockId)
{
    public const int SIGEV_THREAD_ID = 4;

    /// <summary>The sigev_notify value to pass to timer_create when restoring.</summary>
    public int SigevNotifyValue => (int)Notify | (ToThread ? SIGEV_THREAD_ID : 0);
}

/// <summary>Parser for /proc/PID/timers.</summary>
public static class ProcTimers
{
    private const ProcFileKind K = ProcFileKind.Timers;

    public static IReadOnlyList<PosixTimerInfo> Parse(ReadOnlySpan<byte> text)
    {
        var result = new List<PosixTimerInfo>();
        int? id = null, signal = null, target = null, clock = null;
        ulong value = 0;
        SigevNotify notify = default;
        bool toThread = false;
        int blockLine = 0;

        void Finish()
        {
            if (id is null)
                return;
            if (signal is null || target is null || clock is null)
                throw new ProcParseException(K, blockLine, $"timer {id} lacks signal:, notify: or ClockID:");
            result.Add(new PosixTimerInfo(id.Value, signal.Value, value, notify, toThread, target.Value, clock.Value));
            id = signal = target = clock = null;
        }

        var lines = new ProcLines(text);
        while (lines.Next(out var line))
        {
            if (ProcText.IsBlank(line))
                continue;
            int ln = lines.Number;
            int colon = line.IndexOf((byte)':');
            if (colon <= 0)
                throw new ProcParseException(K, ln, "no \"Key:\"", line);
            ReadOnlySpan<byte> key = line[..colon];
            ReadOnlySpan<byte> v = ProcText.Trim(line[(colon + 1)..]);
            if (key.SequenceEqual("ID"u8))
            {
                Finish();
                id = ProcText.ParseInt32(v, K, ln, "ID");
                blockLine = ln;
                continue;
            }
            if (id is null)
                throw new ProcParseException(K, ln, "line before the first ID:", line);
            if (key.SequenceEqual("signal"u8))
            {
                int slash = v.IndexOf((byte)'/');
                if (slash < 0)
                    throw new ProcParseException(K, ln, "signal is not signo/value", line);
                signal = ProcText.ParseInt32(v[..slash], K, ln, "signal");
                value = ProcText.ParseUInt64(v[(slash + 1)..], 16, K, ln, "sigev_value");
            }
            else if (key.SequenceEqual("notify"u8))
            {
                int slash = v.IndexOf((byte)'/');
                int dot = v.IndexOf((byte)'.');
                if (slash < 0 || dot < slash)
                    throw new ProcParseException(K, ln, "notify is not how/pid.N", line);
                ReadOnlySpan<byte> how = v[..slash], who = v[(slash + 1)..dot];
                notify = how.SequenceEqual("signal"u8) ? SigevNotify.Signal
                    : how.SequenceEqual("none"u8) ? SigevNotify.None
                    : how.SequenceEqual("thread"u8) ? SigevNotify.Thread
                    : throw new ProcParseException(K, ln, "unknown notify kind", line);
                toThread = who.SequenceEqual("tid"u8) ? true
                    : who.SequenceEqual("pid"u8) ? false
                    : throw new ProcParseException(K, ln, "notify target is neither pid nor tid", line);
                target = ProcText.ParseInt32(v[(dot + 1)..], K, ln, "notify target");
            }
            else if (key.SequenceEqual("ClockID"u8))
            {
                clock = ProcText.ParseInt32(v, K, ln, "ClockID");
            }
            // Lines a later kernel may add to a block are skipped.
        }
        Finish();
        return result;
    }
}
