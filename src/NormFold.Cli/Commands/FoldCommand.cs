using NormFold.Onnx;
using NormFold.Reports;
using NormFold.Rewriting;
using NormFold.Verification;

namespace NormFold.Cli.Commands;

internal sealed class FoldCommand : Command
{
    public override string Name => "fold";
    public override string Usage => "normfold fold MODEL.onnx -o OUTPUT.onnx [options]   |   normfold fold FOLDER -o OUTFOLDER [options]";
    public override string Summary => "fold BatchNormalization into Conv/ConvTranspose/Gemm/MatMul and write the model";
    public override string Description =>
        "Folds every eval-mode BatchNormalization that its producer can absorb into that producer's weights and bias,\n" +
        "turns the other BNs into Mul + Add (unless --keep-standalone-bn), and prints one row per BatchNormalization:\n" +
        "folded into which node, or left and why. The input model is never modified. If/Loop/Scan bodies are folded too.\n" +
        "Given a folder, folds every .onnx below it into the same relative path under OUTFOLDER, several at once; one bad\n" +
        "model does not stop the others, and the exit code is that of the worst failure (1, then 3, then 2, then 4).\n" +
        $"Rules: {string.Join(", ", Pipeline.RuleNames)}.";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--output", "FILE", "where to write the folded model (required; never the input)", Alias: "-o"),
        new("--report", "FILE.json", "write every decision, op counts (and check results) as JSON (- for stdout: then all other text goes to stderr)", Alias: "--json", Writes: "JSON report"),
        .. PipelineSettings.Options,
        new("--external-data", null, "store every tensor of ≥ 1 KB in a data file beside the output (needed past 2 GB)"),
        new("--external-data-file", "NAME", "name of that data file, relative to the output's folder (default: the output's file name + .data); implies --external-data"),
        new("--check", null, "run original and folded model in ONNX Runtime and compare; on failure write nothing, exit 2"),
        new("--jobs", "N", "with a folder of models: how many to fold at once (default: the number of cores)"),
        Gates.RequireAllFoldedOption,
        .. Gates.DriftOptions,
        .. ReportSettings.Options,
        .. CheckSettings.Options,
    ];

    /// <summary>Everything one fold needs besides its paths.</summary>
    public sealed record Settings(PipelineOptions Pipeline, SaveOptions Save, bool Check, CheckSettings.Request CheckRequest, Gates Gates);

    /// <summary>What one fold did: its log, the check (if asked) with the outputs' error histograms, the gates, and the
    /// failure, if any, as exit code and one line (<paramref name="Written"/>: whether the model was written).</summary>
    public sealed record Outcome(string Input, string Output, FoldResult? Result, CheckReport? Check, int ExitCode, string? Error, TimeSpan Elapsed,
        IReadOnlyList<ErrorHistogram?>? Histograms = null, GateResults? Gates = null)
    {
        public bool Written => ExitCode == ExitCodes.Success;

        /// <summary>This fold as a report record (<paramref name="commandLine"/> for a top-level report).</summary>
        public FoldReport Report(IReadOnlyList<string>? commandLine = null) =>
            ReportBuilder.Fold(Input, Written ? Output : null, Result!, Check, Histograms, Gates, commandLine, commandLine is null ? null : ExitCode);
    }

    public override string ExitCodesHelp => "0 success, 1 internal error, 2 equivalence check failed, 3 invalid model or arguments, 4 a gate failed (--require-all-folded, --max-drift, --min-cosine); nothing is written unless 0";
    protected override string QuietHelp => "print only errors, the summary line and what was written";

    protected override int Execute(ParsedArgs args, Io io)
    {
        var stdout = io.Out;
        string input = SinglePositional(args, "input model or folder");
        string output = args.Value("--output") ?? throw new InvalidUsageException($"fold: missing -o OUTPUT (usage: {Usage})");
        bool check = args.Has("--check");
        var checkRequest = CheckSettings.ParseRequest(Name, args);
        if (!check && CheckSettings.Options.Any(o => args.Has(o.Name)))
            throw new InvalidUsageException("fold: check options (--seed, --shape, …) need --check");
        var save = new SaveOptions
        {
            // Naming the data file asks for one.
            ExternalData = args.Has("--external-data") || args.Has("--external-data-file") ? ExternalDataMode.All : ExternalDataMode.Keep,
            ExternalFileName = args.Value("--external-data-file"),
        };
        if (save.ExternalFileName != null && (save.ExternalFileName.Length == 0 || Path.IsPathRooted(save.ExternalFileName) || save.ExternalFileName.Contains("..")))
            throw new InvalidUsageException("fold: --external-data-file must be a file name relative to the output's folder");
        var gates = Gates.Parse(Name, args);
        if (!check && gates.OnCheck) throw new InvalidUsageException("fold: --max-drift and --min-cosine need --check");
        var settings = new Settings(PipelineSettings.Parse(Name, args), save, check, checkRequest, gates);
        if (Directory.Exists(input))
            // Checks run side by side there: no per-check progress (the folder's own progress lines say what finished).
            return BatchFold.Run(input, output, settings with { CheckRequest = checkRequest with { Quiet = true } }, args.Int(Name, "--jobs", Environment.ProcessorCount, min: 1), io);
        if (args.Has("--jobs")) throw new InvalidUsageException("fold: --jobs applies to a folder of models");
        ModelWriter.CheckOutputPath(output);
        if (PathGuard.Same(input, output))
            throw new InvalidUsageException($"fold: {output}: refusing to overwrite the input model; choose another output path");
        string dataFile = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(output))!, save.ExternalFileName ?? Path.GetFileName(output) + ".data");
        io.CheckReports([input], [(output, "the output model"), (dataFile, "the output's data file")]);
        CheckSettings.CheckSaveFolder(Name, checkRequest, [input], [output, dataFile, .. io.ReportFiles]);
        if (save.ExternalFileName != null)
        {
            if (Directory.Exists(dataFile)) throw new InvalidUsageException($"fold: --external-data-file {save.ExternalFileName}: is a folder");
            if (!Directory.Exists(Path.GetDirectoryName(dataFile)))
                throw new InvalidUsageException($"fold: --external-data-file {save.ExternalFileName}: folder '{Path.GetDirectoryName(dataFile)}' does not exist");
        }
        // Every output is probed before any work: the model's folder, the data file's, the reports' (above).
        OutputProbe.CheckFolderWritable($"fold: {output}", Path.GetDirectoryName(PathGuard.Resolve(output))!, "the output model");
        if (save.ExternalFileName != null)
            OutputProbe.CheckFolderWritable($"fold: --external-data-file {save.ExternalFileName}", Path.GetDirectoryName(PathGuard.Resolve(dataFile))!, "the output's data file");

        var outcome = FoldOne(input, output, settings, rethrow: true);
        var result = outcome.Result!;
        var report = outcome.Check;
        bool quiet = io.Quiet;
        if (!quiet)
        {
            stdout.Write(Printing.Decisions(result.Log, io.Width));
            stdout.WriteLine();
        }
        if (report != null && (!quiet || !report.Passed))
        {
            stdout.Write(Printing.Check(report, checkRequest.Localize, io.Width));
            stdout.WriteLine();
        }
        ReportSettings.Write(io, () => outcome.Report(io.CommandLine));
        stdout.WriteLine(Printing.Summary(result));
        if (outcome.Error != null)
        {
            Console.Error.WriteLine($"normfold: fold: {outcome.Error}");
            if (outcome.Gates is { Passed: false } g) Console.Error.Write(Printing.GateFailures(g, io.Width));
            return outcome.ExitCode;
        }
        string data = File.Exists(output + ".data") || save.ExternalFileName != null
            ? $" and its data file {save.ExternalFileName ?? Path.GetFileName(output) + ".data"} (keep them together)" : "";
        stdout.WriteLine(report is null ? $"Wrote {output}{data}." : report.NothingToCheck
            ? $"Wrote {output}{data}; nothing to check: the fold changed nothing." : $"Wrote {output}{data}; equivalence check passed{Printing.AmplifiedClause(report)}.");
        return ExitCodes.Success;
    }

    /// <summary>Load, fold, (check,) gate, save one model. With <paramref name="rethrow"/> false, errors become the outcome
    /// (batch mode: one bad model does not stop the others). A failed check or gate writes nothing.</summary>
    public static Outcome FoldOne(string input, string output, Settings settings, bool rethrow)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        FoldResult? result = null;
        try
        {
            // Folded weights are checked for overflow as they are written (Folding.Optimistically).
            return Folding.Optimistically(optimistic =>
            {
                Timeline.Mark("args");
                using var model = OnnxModel.Load(input);
                result = Folding.Fold(model, settings.Pipeline with { CheckFiniteWhenComputed = optimistic }, justLoaded: true);
                Timeline.Mark("opcounts");
                var foldGates = settings.Gates.Check(result, null).ToList();
                if (foldGates.Count > 0) model.CheckDeferredFinite(); // not saved: decide the deferred pre-checks now
                CheckReport? report = null;
                // The weight audit replays this fold's log against the saved model.
                var request = settings.CheckRequest with { Options = settings.CheckRequest.Options with { FoldLog = result.Log } };
                List<HistogramBuilder>? histograms = null;
                if (settings.Check)
                {
                    var collect = new List<HistogramBuilder>();
                    report = Folding.SaveIfEquivalent(model, output, settings.Save,
                        (staged, label) => CheckRun.Run(input, staged, request, label, observe: (_, _, expected, actual) =>
                        {
                            lock (collect)
                                for (int k = 0; k < expected.Count; k++)
                                {
                                    if (collect.Count <= k) collect.Add(new HistogramBuilder());
                                    if (actual.TryGetValue(expected[k].Name, out var a)) collect[k].Add(expected[k], a);
                                }
                        }),
                        accept: r => r.Passed && foldGates.Count == 0 && !settings.Gates.Check(null, r).Any());
                    histograms = collect;
                }
                else if (foldGates.Count == 0) ModelWriter.Save(model, output, settings.Save);
                var gates = settings.Gates.Results(result, report);
                var built = histograms?.Select(h => (ErrorHistogram?)h.Build()).ToList();
                if (report is { Passed: false })
                {
                    string why = report.FirstFailure is { } f
                        ? $"{(report.Outputs.Contains(f) ? "output" : report.Replays.Contains(f) ? "the rewritten nodes' tensor (recomputed from the original's inputs)" : "intermediate tensor")} '{f.Name}' ({f.Problem ?? $"max abs error {Printing.Num(f.MaxAbs)} > tolerance"})"
                        : report.Audit!.Skipped.Count > 0
                            ? $"the weight audit ({report.Audit.Skipped.Count} folded weight tensor(s) could not be replayed)"
                            : $"the weight audit ({report.Audit.Inexact} elements differ from the exact fold)";
                    return new Outcome(input, output, result, report, ExitCodes.CheckFailed,
                        $"{input}: equivalence check failed on {why}; {output} was not written", clock.Elapsed, built, gates);
                }
                if (gates is { Passed: false })
                    return new Outcome(input, output, result, report, ExitCodes.GateFailed,
                        $"{input}: {string.Join(", ", gates.Failures.Select(f => f.Gate).Distinct())}: {gates.Failures.Count} failure(s); {output} was not written",
                        clock.Elapsed, built, gates);
                return new Outcome(input, output, result, report, ExitCodes.Success, null, clock.Elapsed, built, gates);
            });
        }
        catch (Exception e) when (!rethrow && Cli.IsInputError(e))
        {
            return new Outcome(input, output, result, null, ExitCodes.InvalidInput, e.Message, clock.Elapsed);
        }
        catch (Exception e) when (!rethrow)
        {
            return new Outcome(input, output, result, null, ExitCodes.InternalError, $"{input}: internal error: {e.Message}", clock.Elapsed);
        }
    }
}
