// CRIU-shaped logging: every line stamped with seconds since start, "(00.012345) text".
// Levels as CRIU's -v0..-v4: 0 messages, 1 errors, 2 warnings (default), 3 info, 4 debug.
// Errors also go to stderr. Info and Debug take interpolated-string handlers, so a disabled
// line formats nothing: a debug line in a per-page loop costs a level comparison.
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text;

namespace Crest.Diagnostics;

public enum LogLevel { Message = 0, Error = 1, Warning = 2, Info = 3, Debug = 4 }

public static class Log
{
    public const LogLevel DefaultLevel = LogLevel.Warning;

    private static readonly long Start = Stopwatch.GetTimestamp();
    private static readonly Lock Gate = new();
    private static TextWriter? _file;
    private static bool _errorsToStderr = true;

    /// <summary>Lines above this level are dropped.</summary>
    public static LogLevel Level { get; set; } = DefaultLevel;

    /// <summary>Whether errors are also written to stderr (true unless a caller owns stderr).</summary>
    public static bool ErrorsToStderr { get => _errorsToStderr; set => _errorsToStderr = value; }

    /// <summary>Send log lines to a file (appending, line-flushed). Null: to stderr only.</summary>
    public static void Open(string? path)
    {
        lock (Gate)
        {
            _file?.Dispose();
            _file = null;
            if (path is null) return;
            var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite);
            _file = new StreamWriter(stream, new UTF8Encoding(false)) { AutoFlush = true };
        }
    }

    /// <summary>
    /// Send log lines to a fresh file, as CRIU's log_init does: created with mode 0600 or
    /// truncated, line-flushed.
    /// </summary>
    public static void Create(string path)
    {
        var options = new FileStreamOptions
        {
            Mode = FileMode.Create,
            Access = FileAccess.Write,
            Share = FileShare.ReadWrite,
        };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        var stream = new FileStream(path, options);
        Use(new StreamWriter(stream, new UTF8Encoding(false)) { AutoFlush = true });
    }

    /// <summary>Send log lines to stdout (CRIU's `-o -`).</summary>
    public static void OpenStandardOutput()
    {
        var stream = Console.OpenStandardOutput();
        Use(new StreamWriter(stream, new UTF8Encoding(false)) { AutoFlush = true });
    }

    private static void Use(TextWriter writer)
    {
        lock (Gate)
        {
            _file?.Dispose();
            _file = writer;
        }
    }

    public static void Close() => Open(null);

    public static bool IsEnabled(LogLevel level) => level <= Level;

    /// <summary>Seconds since the process started, as stamped on every line.</summary>
    public static double Elapsed => Stopwatch.GetElapsedTime(Start).TotalSeconds;

    public static void Message(string text) => Write(LogLevel.Message, text);
    public static void Error(string text) => Write(LogLevel.Error, text);
    public static void Warning(string text) => Write(LogLevel.Warning, text);

    public static void Info([InterpolatedStringHandlerArgument] InfoHandler text)
    {
        if (text.Enabled) Write(LogLevel.Info, text.ToStringAndClear());
    }

    public static void Debug([InterpolatedStringHandlerArgument] DebugHandler text)
    {
        if (text.Enabled) Write(LogLevel.Debug, text.ToStringAndClear());
    }

    public static void Write(LogLevel level, string text)
    {
        if (level > Level && level != LogLevel.Error) return;
        string stamp = $"({Elapsed:00.000000}) ";
        string line = level switch
        {
            LogLevel.Error => $"{stamp}Error: {text}",
            LogLevel.Warning => $"{stamp}Warn: {text}",
            _ => stamp + text,
        };
        lock (Gate)
        {
            if (level <= Level) (_file ?? Console.Error).WriteLine(line);
            if (level == LogLevel.Error && _errorsToStderr && _file is not null)
                Console.Error.WriteLine($"Error: {text}");
        }
    }

    [InterpolatedStringHandler]
    public ref struct InfoHandler
    {
        private DefaultInterpolatedStringHandler _inner;
        public readonly bool Enabled;

        public InfoHandler(int literalLength, int formattedCount, out bool enabled)
        {
            Enabled = enabled = IsEnabled(LogLevel.Info);
            _inner = enabled ? new DefaultInterpolatedStringHandler(literalLength, formattedCount) : default;
        }

        public void AppendLiteral(string s) => _inner.AppendLiteral(s);
        public void AppendFormatted<T>(T value) => _inner.AppendFormatted(value);
        public void AppendFormatted<T>(T value, string? format) => _inner.AppendFormatted(value, format);
        public void AppendFormatted(ReadOnlySpan<char> value) => _inner.AppendFormatted(value);
        public void AppendFormatted(string? value) => _inner.AppendFormatted(value);
        internal string ToStringAndClear() => _inner.ToStringAndClear();
    }

    [InterpolatedStringHandler]
    public ref struct DebugHandler
    {
        private DefaultInterpolatedStringHandler _inner;
        public readonly bool Enabled;

        public DebugHandler(int literalLength, int formattedCount, out bool enabled)
        {
            Enabled = enabled = IsEnabled(LogLevel.Debug);
            _inner = enabled ? new DefaultInterpolatedStringHandler(literalLength, formattedCount) : default;
        }

        public void AppendLiteral(string s) => _inner.AppendLiteral(s);
        public void AppendFormatted<T>(T value) => _inner.AppendFormatted(value);
        public void AppendFormatted<T>(T value, string? format) => _inner.AppendFormatted(value, format);
        public void AppendFormatted(ReadOnlySpan<char> value) => _inner.AppendFormatted(value);
        public void AppendFormatted(string? value) => _inner.AppendFormatted(value);
        internal string ToStringAndClear() => _inner.ToStringAndClear();
    }
}
