using System.Collections.Concurrent;
using NormFold.Reports;
using NormFold.Rewriting;

namespace NormFold.Cli.Commands;

/// <summary>
/// `normfold fold FOLDER -o OUTFOLDER`: every .onnx below FOLDER, folded into the same relative path under OUTFOLDER,
/// <c>jobs</c> at a time. Progress goes to stderr as models finish; a summary table to stdout.
/// </summary>
internal static class BatchFold
{
    /// <summary>Every .onnx file below the folder; links to folders are not followed (a link to a parent would loop).</summary>
    static IEnumerable<string> Models(string root) =>
        new System.IO.Enumeration.FileSystemEnumerable<string>(root, (ref System.IO.Enumeration.FileSystemEntry e) => e.ToFullPath(),
            new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true })
        {
            ShouldIncludePredicate = (ref System.IO.Enumeration.FileSystemEntry e) => !e.IsDirectory && e.FileName.EndsWith(".onnx", StringComparison.Ordinal),
            ShouldRecursePredicate = (ref System.IO.Enumeration.FileSystemEntry e) => (e.Attributes & FileAttributes.ReparsePoint) == 0,
        };

    public static int Run(string inputDir, string outputDir, FoldCommand.Settings settings, int jobs, Io io)
    {
        var stdout = io.Out;
        bool quiet = io.Quiet;
        // Compared as the folders they finally are (links followed, trailing slashes gone).
        string inRoot = NormFold.Onnx.PathGuard.Resolve(inputDir), outRoot = NormFold.Onnx.PathGuard.Resolve(outputDir);
        if (inRoot == outRoot) throw new InvalidUsageException($"fold: {outputDir}: the output folder must differ from the input folder");
        if (File.Exists(outRoot)) throw new InvalidUsageException($"fold: {outputDir}: is a file; a folder of models needs an output folder");
        if (settings.Save.ExternalFileName != null)
            throw new InvalidUsageException("fold: --external-data-file names one file, and a folder holds many models; use --external-data (each model gets MODEL.onnx.data)");
        // An output folder inside the input folder must start empty: anything in it would be both an input and a target.
        if (NormFold.Onnx.PathGuard.IsWithin(outRoot, inRoot) && Directory.Exists(outRoot) && Directory.EnumerateFileSystemEntries(outRoot).Any())
            throw new InvalidUsageException($"fold: {outputDir}: lies inside the input folder and is not empty; empty it or choose another output folder");
        var inputs = Models(inRoot).Order(StringComparer.Ordinal).ToList();
        if (inputs.Count == 0) throw new InvalidUsageException($"fold: {inputDir}: no .onnx files in this folder");
        foreach (var reportPath in io.ReportFiles)
        {
            string report = NormFold.Onnx.PathGuard.Resolve(reportPath);
            if (NormFold.Onnx.PathGuard.IsWithin(report, inRoot) && !NormFold.Onnx.PathGuard.IsWithin(report, outRoot))
                throw new InvalidUsageException($"fold: {reportPath}: a report inside the input folder; write it elsewhere");
        }
        io.CheckReports([], inputs.SelectMany(i =>
        {
            string o = Path.Combine(outRoot, Path.GetRelativePath(inRoot, i));
            return new[] { (o, $"the output model {o}"), (o + ".data", $"the data file {o}.data") };
        }));
        // The output folder (or the nearest folder above it that exists, where it will be made) must take new files.
        string existing = outRoot;
        while (!Directory.Exists(existing) && Path.GetDirectoryName(existing) is { } parent) existing = parent;
        OutputProbe.CheckFolderWritable($"fold: {outputDir}", existing, "the output models");

        var outcomes = new ConcurrentDictionary<string, FoldCommand.Outcome>();
        var created = new ConcurrentBag<string>();
        int done = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Parallel.ForEach(inputs, new ParallelOptions { MaxDegreeOfParallelism = jobs }, input =>
        {
            string relative = Path.GetRelativePath(inRoot, input);
            string output = Path.Combine(outRoot, relative);
            string folder = Path.GetDirectoryName(output)!;
            FoldCommand.Outcome o;
            try
            {
                if (!Directory.Exists(folder)) { Directory.CreateDirectory(folder); created.Add(folder); }
                o = FoldCommand.FoldOne(input, output, settings, rethrow: false);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                o = new FoldCommand.Outcome(input, output, null, null, ExitCodes.InvalidInput, $"{output}: cannot create its folder: {e.Message}", TimeSpan.Zero);
            }
            outcomes[input] = o;
            int n = Interlocked.Increment(ref done);
            string status = o.Error is null ? Printing.Summary(o.Result!) : "FAILED: " + o.Error;
            if (!quiet || o.Error != null) lock (outcomes) Console.Error.WriteLine($"[{n}/{inputs.Count}] {relative}: {status}");
        });

        // Folders made for models that all failed stay empty: remove them, deepest first, once every job is done.
        foreach (var folder in created.Distinct().OrderByDescending(f => f.Length))
            if (folder != outRoot && Directory.Exists(folder) && !Directory.EnumerateFileSystemEntries(folder).Any())
                Directory.Delete(folder);
        var ordered = inputs.Select(i => outcomes[i]).ToList();
        if (!quiet)
        {
            var rows = ordered.Select(o => (IReadOnlyList<string>)[
                Path.GetRelativePath(inRoot, o.Input),
                ResultText(o.ExitCode),
                o.Result?.Log.Count(Outcome.Folded).ToString() ?? "-",
                o.Result?.Log.Count(Outcome.Replaced).ToString() ?? "-",
                o.Result?.Log.Count(Outcome.Left).ToString() ?? "-",
                o.Result is { } r ? $"{r.OpsBefore.Values.Sum()} → {r.OpsAfter.Values.Sum()}" : "-",
                $"{o.Elapsed.TotalSeconds:F2}s",
                o.Error ?? ""]);
            stdout.Write(Printing.Table(["Model", "Result", "Folded", "Replaced", "Left", "Nodes", "Time", "Error"], rows, io.Width));
            stdout.WriteLine();
        }
        int failed = ordered.Count(o => o.Error != null);
        stdout.WriteLine($"{inputs.Count} model(s) in {clock.Elapsed.TotalSeconds:F1}s with {jobs} job(s): {inputs.Count - failed} written to {outputDir}, {failed} failed.");
        int exit = WorstExit(ordered.Select(o => o.ExitCode));
        ReportSettings.Write(io, Report(inputDir, outputDir, jobs, clock.Elapsed.TotalSeconds, ordered, io.CommandLine, exit));
        foreach (var o in ordered.Where(o => o.Gates is { Passed: false }))
        {
            Console.Error.WriteLine($"normfold: fold: {o.Error}");
            Console.Error.Write(Printing.GateFailures(o.Gates!, io.Width));
        }
        return exit;
    }

    public static string ResultText(int exitCode) => exitCode switch
    {
        ExitCodes.Success => "ok",
        ExitCodes.CheckFailed => "check failed",
        ExitCodes.GateFailed => "gate failed",
        _ => "error",
    };

    /// <summary>The worst failure decides: an internal error, then invalid input, then a failed check, then a gate.</summary>
    public static int WorstExit(IEnumerable<int> codes)
    {
        var all = codes.ToHashSet();
        foreach (int code in new[] { ExitCodes.InternalError, ExitCodes.InvalidInput, ExitCodes.CheckFailed, ExitCodes.GateFailed })
            if (all.Contains(code)) return code;
        return ExitCodes.Success;
    }

    static FolderReport Report(string inputDir, string outputDir, int jobs, double seconds, List<FoldCommand.Outcome> ordered, IReadOnlyList<string> commandLine, int exit)
    {
        var models = ordered.Select(o =>
        {
            var fold = o.Result is null ? null : o.Report();
            return new ModelEntry(o.Input, o.Written ? o.Output : null, o.ExitCode, o.Error, o.Elapsed.TotalSeconds,
                fold?.Check is { } c ? ReportBuilder.Figures(c) : null, fold);
        }).ToList();
        var folds = models.Select(m => m.Fold).OfType<FoldReport>().ToList();
        var totals = new FolderTotals(ordered.Count, ordered.Count(o => o.Written), ordered.Count(o => !o.Written),
            ordered.Count(o => o.ExitCode == ExitCodes.InternalError), ordered.Count(o => o.ExitCode == ExitCodes.InvalidInput),
            ordered.Count(o => o.ExitCode == ExitCodes.CheckFailed), ordered.Count(o => o.ExitCode == ExitCodes.GateFailed),
            folds.Sum(f => f.Summary.BatchNormalizations), folds.Sum(f => f.Summary.Folded), folds.Sum(f => f.Summary.Replaced),
            folds.Sum(f => f.Summary.Left), folds.Sum(f => f.Summary.NodesBefore), folds.Sum(f => f.Summary.NodesAfter));
        return new FolderReport(ReportBuilder.Tool, ReportBuilder.Version, commandLine, exit, inputDir, outputDir, jobs, seconds, totals, models);
    }
}
