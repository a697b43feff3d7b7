using NormFold.Onnx;

namespace NormFold.Cli;

/// <summary>
/// Where a command's text goes. Reports (options declared with <see cref="OptionSpec.Writes"/>) go to their files, or
/// to stdout when given as "-" (or /dev/stdout); then stdout carries that report alone and every human line goes to
/// stderr, so the report can be piped and parsed.
/// </summary>
internal sealed class Io
{
    readonly ParsedArgs _args;
    readonly IReadOnlyList<OptionSpec> _reports;
    readonly string _command;

    /// <summary>Tables, summaries, "Wrote …": stdout, or stderr when a report takes stdout.</summary>
    public TextWriter Out { get; }
    /// <summary>The process's stdout, for a report given as "-".</summary>
    public TextWriter Stdout { get; }
    public bool Quiet { get; }
    /// <summary>Columns the human text may use: the terminal's width, or 100 when it is not a terminal.</summary>
    public int Width { get; }

    /// <summary>The command line as given (for the reports).</summary>
    public IReadOnlyList<string> CommandLine { get; }

    public Io(string command, ParsedArgs args, IReadOnlyList<OptionSpec> options, TextWriter stdout, IReadOnlyList<string>? rawArgs = null)
    {
        _command = command;
        CommandLine = ["normfold", command, .. rawArgs ?? []];
        _args = args;
        _reports = options.Where(o => o.Writes != null).ToList();
        var toStdout = _reports.Where(o => args.Value(o.Name) is { } v && IsStdout(v)).ToList();
        if (toStdout.Count > 1)
            throw new InvalidUsageException($"{command}: {string.Join(" and ", toStdout.Select(o => o.Name))} both name stdout; only one report can go there");
        Stdout = stdout;
        bool reportOnStdout = toStdout.Count == 1;
        Out = reportOnStdout ? Console.Error : stdout;
        Quiet = args.Has("--quiet");
        Width = TerminalWidth(reportOnStdout ? Console.IsErrorRedirected : Console.IsOutputRedirected || stdout != Console.Out);
    }

    static int TerminalWidth(bool redirected)
    {
        if (redirected) return 100;
        try { return Console.WindowWidth is >= 40 and var w ? w : 100; }
        catch (IOException) { return 100; }
    }

    /// <summary>"-" and the names of the process's own stdout mean stdout.</summary>
    public static bool IsStdout(string path) => path is "-" or "/dev/stdout" or "/dev/fd/1" or "/proc/self/fd/1";

    /// <summary>The report files given (not stdout), for checks that no other output lands on them.</summary>
    public IEnumerable<string> ReportFiles => _reports.Select(o => _args.Value(o.Name)).OfType<string>().Where(p => !IsStdout(p));

    /// <summary>The path given to a report option, or null.</summary>
    public string? ReportPath(string option) => _args.Value(option);

    /// <summary>Fails now, before any work, if a report could not be written later: each report path given is checked
    /// (folder exists and takes a new file) and may not replace a file the command reads (<paramref name="models"/>
    /// and their data files), one of its <paramref name="outputs"/>, or another report.</summary>
    public void CheckReports(IEnumerable<string> models, IEnumerable<(string Path, string What)> outputs)
    {
        var given = _reports.Where(o => _args.Has(o.Name) && !IsStdout(_args.Value(o.Name)!)).ToList();
        if (given.Count == 0) return;
        var read = models.Select(Printing.FilesRead).ToList();
        var targets = outputs.ToList();
        foreach (var o in given)
        {
            string path = _args.Value(o.Name)!;
            string label = $"{_command}: {o.Name} {path}";
            OutputProbe.CheckWritable(label, path, "the " + o.Writes);
            string target = PathGuard.Resolve(path);
            foreach (var (file, what) in targets)
                if (PathGuard.Resolve(file) == target) throw new InvalidUsageException($"{label}: would overwrite {what}");
            foreach (var files in read)
                if (files.TryGetValue(target, out var what))
                    throw new InvalidUsageException($"{label}: would overwrite {what.Replace("the input", "an input")}");
            targets.Add((path, $"the {o.Writes} ({o.Name})"));
        }
    }

    /// <summary>Whether this report option was given.</summary>
    public bool Wants(string option) => _args.Has(option);

    /// <summary>Writes a report to stdout ("-") or its file (atomically; a device or pipe is written into).</summary>
    public void WriteReport(string option, string content)
    {
        if (_args.Value(option) is not { } path) return;
        if (IsStdout(path))
        {
            Stdout.Write(content);
            Stdout.Flush();
        }
        else OutputProbe.WriteFile(path, content);
    }
}

/// <summary>Checks that an output can be written before any work, and writes report files atomically.</summary>
internal static class OutputProbe
{
    /// <summary>Refuses a path whose folder is missing or does not take a new file (probed by creating one), a folder,
    /// or an over-long name. A device or a pipe is accepted (written into). <paramref name="what"/> names the output
    /// in the message ("the JSON report").</summary>
    public static void CheckWritable(string label, string path, string what)
    {
        string full = Path.GetFullPath(path);
        if (System.Text.Encoding.UTF8.GetByteCount(Path.GetFileName(full)) > 255)
            throw new InvalidUsageException($"{label}: the file name of {what} is longer than 255 bytes");
        if (Directory.Exists(full) || path.EndsWith('/')) throw new InvalidUsageException($"{label}: is a folder; give {what} a file name");
        if (PathGuard.IsSpecial(path)) return;
        string dir = Path.GetDirectoryName(PathGuard.Resolve(path))!;
        if (!Directory.Exists(dir)) throw new InvalidUsageException($"{label}: cannot write {what}: folder '{dir}' does not exist");
        CheckFolderWritable(label, dir, what);
    }

    /// <summary>Creates (and at once deletes) a file in <paramref name="dir"/>: the only sure test that a file can be made there.</summary>
    public static void CheckFolderWritable(string label, string dir, string what)
    {
        string probe = Path.Combine(dir, $".normfold-probe-{Guid.NewGuid().ToString("N")[..12]}");
        try
        {
            using (File.Create(probe, 1, FileOptions.DeleteOnClose)) { }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidUsageException($"{label}: cannot write {what}: folder '{dir}' does not take new files ({NormFoldIOException.Describe(e)})", e);
        }
    }

    /// <summary>Writes text atomically (temporary file, then rename); a device or a pipe is written into, not replaced.</summary>
    public static void WriteFile(string path, string content)
    {
        if (PathGuard.IsSpecial(path))
        {
            NormFoldIOException.Guard(path, () => File.AppendAllText(path, content));
            return;
        }
        string full = PathGuard.Resolve(path); // a link is written through
        string dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir)) throw new InvalidUsageException($"{path}: folder '{dir}' does not exist");
        string tmp = Path.Combine(dir, $".normfold-{Guid.NewGuid().ToString("N")[..12]}.tmp");
        TempFiles.Track(tmp);
        try
        {
            NormFoldIOException.Guard(path, () =>
            {
                File.WriteAllText(tmp, content);
                File.Move(tmp, full, overwrite: true);
            });
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
            TempFiles.Untrack(tmp);
        }
    }
}
