namespace NormFold.Cli.Commands;

/// <summary>
/// Progress of a check on stderr, once it has run longer than <see cref="Delay"/>: on a terminal one status line
/// rewritten in place (cleared at the end), otherwise one line per stage ("normfold: check: STAGE (T s)"), so that
/// CI logs stay readable. Shorter checks print nothing. Never on stdout (a JSON report may be going there).
/// </summary>
internal sealed class CheckProgress : IDisposable
{
    /// <summary>How long a check runs before its progress shows (tests set it).</summary>
    internal static TimeSpan Delay = TimeSpan.FromSeconds(1);

    readonly TextWriter _err;
    readonly bool _terminal;
    readonly string _prefix;
    readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();
    readonly Timer? _timer;
    readonly object _gate = new();
    string? _stage;      // the latest stage, not yet shown when _shown is false
    bool _shown, _live, _done;

    CheckProgress(string command, TextWriter err, bool terminal)
    {
        _err = err;
        _terminal = terminal;
        _prefix = $"normfold: {command}: ";
        // A stage that starts before the delay and lasts past it shows when the delay ends.
        if (Delay > TimeSpan.Zero && Delay != Timeout.InfiniteTimeSpan) _timer = new Timer(_ => Show(), null, Delay, Timeout.InfiniteTimeSpan);
    }

    /// <summary>A reporter on the process's stderr; null when quiet.</summary>
    public static CheckProgress? For(string command, bool quiet) =>
        quiet || Delay == Timeout.InfiniteTimeSpan ? null : new CheckProgress(command, Console.Error, !Console.IsErrorRedirected);

    /// <summary>A new stage (the checker's words: "iteration 1 of 2: batch 3 of 9: comparing 4 tensors").</summary>
    public void Report(string stage)
    {
        lock (_gate)
        {
            _stage = stage;
            _shown = false;
        }
        if (_clock.Elapsed >= Delay) Show();
    }

    void Show()
    {
        lock (_gate)
        {
            if (_done || _shown || _stage is null) return;
            _shown = true;
            string line = $"{_prefix}{_stage} ({_clock.Elapsed.TotalSeconds.ToString("F1", System.Globalization.CultureInfo.InvariantCulture)} s)";
            if (_terminal) { _err.Write($"\r\u001b[K{line}"); _live = true; }
            else _err.WriteLine(line);
            _err.Flush();
        }
    }

    public void Dispose()
    {
        _timer?.Dispose();
        lock (_gate)
        {
            _done = true;
            if (_live) { _err.Write("\r\u001b[K"); _err.Flush(); } // the verdict takes the line
        }
    }
}
