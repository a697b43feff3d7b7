using NormFold.Cli.Reports;
using NormFold.Reports;

namespace NormFold.Cli;

/// <summary>The report options every command takes besides its JSON report, and writing them all: views of one
/// report record.</summary>
internal static class ReportSettings
{
    public static readonly OptionSpec[] Options =
    [
        new("--junit", "FILE.xml", "write a JUnit XML report for CI test reporters (- for stdout)", Writes: "JUnit report"),
        new("--summary", "FILE.md", "write a Markdown summary, e.g. for a CI job summary page (- for stdout)", Writes: "Markdown summary"),
        new("--html", "FILE.html", "write a self-contained HTML report with drift charts (- for stdout)", Writes: "HTML report"),
    ];

    static readonly string[] JsonOptions = ["--report", "--json"];
    static readonly string[] All = [.. JsonOptions, .. Options.Select(o => o.Name)];

    /// <summary>The JSON report's option: fold's --report (alias --json), or --json.</summary>
    static void Json(Io io, Func<string> json)
    {
        foreach (var option in JsonOptions)
            if (io.Wants(option)) io.WriteReport(option, json());
    }

    static void Views(Io io, Func<string> junit, Func<string> markdown, Func<string> html)
    {
        if (io.Wants("--junit")) io.WriteReport("--junit", junit());
        if (io.Wants("--summary")) io.WriteReport("--summary", markdown());
        if (io.Wants("--html")) io.WriteReport("--html", html());
    }

    /// <summary>Built only when a report was asked for: most runs (and every quiet one in a pipeline) ask for none.</summary>
    public static void Write(Io io, Func<FoldReport> build)
    {
        if (!All.Any(io.Wants)) return;
        var report = build();
        Json(io, report.ToJson);
        Views(io, () => JUnit.Of(report), () => Markdown.Of(report), () => Html.Of(report));
    }

    public static void Write(Io io, CheckFileReport report)
    {
        Json(io, report.ToJson);
        Views(io, () => JUnit.Of(report), () => Markdown.Of(report), () => Html.Of(report));
    }

    /// <summary>A run that failed before it had a result: JUnit gets one test case in error, the summary the line.</summary>
    public static void WriteError(Io io, string command, int exitCode, string message)
    {
        if (io.Wants("--junit")) io.WriteReport("--junit", JUnit.Error(command, exitCode, message));
        if (io.Wants("--summary")) io.WriteReport("--summary", Markdown.Error(command, exitCode, message));
    }

    public static void Write(Io io, FolderReport report)
    {
        Json(io, report.ToJson);
        Views(io, () => JUnit.Of(report), () => Markdown.Of(report), () => Html.Of(report));
    }
}
