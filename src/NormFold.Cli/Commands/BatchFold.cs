using System.Collections.Concurrent;
using NormFold.Rewriting;

namespace NormFold.Cli.Commands;

/// <summary>
/// `normfold fold FOLDER -o OUTFOLDER`: every .onnx below FOLDER, folded into the same relative path under OUTFOLDER,
/// <c>jobs</c> at a time. Progress goes to stderr as models finish; a summary table to stdout.
/// </summary>
public static class BatchFold
{
    public static int Run(string inputDir, string outputDir, FoldCommand.Settings settings, int jobs, string? reportPath, bool quiet, TextWriter stdout)
    {
        string inRoot = Path.GetFullPath(inputDir), outRoot = Path.GetFullPath(outputDir);
        if (inRoot == outRoot) throw new UsageException($"fold: {outputDir}: the output folder must differ from the input folder");
        if (File.Exists(outRoot)) throw new UsageException($"fold: {outputDir}: is a file; a folder of models needs an output folder");
        var all = Directory.EnumerateFiles(inRoot, "*.onnx", SearchOption.AllDirectories).ToList();
        // Skip earlier outputs when OUTFOLDER lies inside FOLDER, and say so.
        bool nested = outRoot.StartsWith(inRoot + Path.DirectorySeparatorChar, StringComparison.Ordinal);
        var inputs = all.Where(p => !nested || !Path.GetFullPath(p).StartsWith(outRoot + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            .Order(StringComparer.Ordinal).ToList();
        if (inputs.Count < all.Count)
            Console.Error.WriteLine($"normfold: fold: skipping {all.Count - inputs.Count} model(s) inside the output folder {outputDir}");
        if (inputs.Count == 0) throw new UsageException($"fold: {inputDir}: no .onnx files in this folder");
        if (reportPath != null)
        {
            string report = NormFold.Onnx.PathGuard.Resolve(reportPath);
            if (report.StartsWith(inRoot + Path.DirectorySeparatorChar, StringComparison.Ordinal)
                && !report.StartsWith(outRoot + Path.DirectorySeparatorChar, StringComparison.Ordinal))
                throw new UsageException($"fold: --report {reportPath}: is inside the input folder; write it elsewhere");
            Printing.CheckReportTarget("fold: --report", reportPath, [], inputs.SelectMany(i =>
            {
                string o = Path.Combine(outRoot, Path.GetRelativePath(inRoot, i));
                return new[] { (o, $"the output model {o}"), (o + ".data", $"the data file {o}.data") };
            }));
        }

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
                o.Error is null ? "ok" : o.ExitCode == ExitCodes.CheckFailed ? "check failed" : "error",
                o.Result?.Log.Count(Outcome.Folded).ToString() ?? "-",
                o.Result?.Log.Count(Outcome.Replaced).ToString() ?? "-",
                o.Result?.Log.Count(Outcome.Left).ToString() ?? "-",
                o.Result is { } r ? $"{r.OpsBefore.Values.Sum()} → {r.OpsAfter.Values.Sum()}" : "-",
                $"{o.Elapsed.TotalSeconds:F2}s",
                o.Error ?? ""]);
            stdout.Write(Printing.Table(["Model", "Result", "Folded", "Replaced", "Left", "Nodes", "Time", "Error"], rows, 120));
            stdout.WriteLine();
        }
        int failed = ordered.Count(o => o.Error != null);
        stdout.WriteLine($"{inputs.Count} model(s) in {clock.Elapsed.TotalSeconds:F1}s with {jobs} job(s): {inputs.Count - failed} written to {outputDir}, {failed} failed.");
        if (reportPath != null)
            Printing.WriteJson(reportPath, new
            {
                tool = "normfold",
                input = inputDir,
                output = outputDir,
                jobs,
                models = ordered.Select(o => new
                {
                    input = o.Input, output = o.Error is null ? o.Output : null, exitCode = o.ExitCode, error = o.Error,
                    seconds = o.Elapsed.TotalSeconds,
                    fold = o.Result is null ? null : Printing.FoldJson(o.Input, o.Error is null ? o.Output : null, o.Result, o.Check),
                }),
            });
        // The worst failure decides: an internal error, then invalid input, then a failed check.
        foreach (int code in new[] { ExitCodes.InternalError, ExitCodes.InvalidInput, ExitCodes.CheckFailed })
            if (ordered.Any(o => o.ExitCode == code)) return code;
        return ExitCodes.Success;
    }
}
