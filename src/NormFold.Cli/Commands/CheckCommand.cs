using NormFold.Reports;
using NormFold.Verification;

namespace NormFold.Cli.Commands;

internal sealed class CheckCommand : Command
{
    public override string Name => "check";
    public override string Usage => "normfold check ORIGINAL.onnx REWRITTEN.onnx [options]";
    public override string Summary => "run both models in ONNX Runtime on the same inputs; compare every output and shared tensor";
    public override string Description =>
        "Runs both models in ONNX Runtime (CPU, graph optimisations disabled by default so that ORT does not fold BN in\n" +
        "the baseline) on the same seeded inputs, and compares each output of ORIGINAL with the same-named output of\n" +
        "REWRITTEN, and every intermediate tensor both models name (--outputs-only: outputs alone).\n" +
        "An element passes when |a − r| ≤ atol or ≤ rtol·|r|; NaN/Inf must match; integer outputs must be equal.\n" +
        "Default tolerance per output: rtol = k and atol = k·max|reference|, k = 1e-4 for float32, 1e-2 for float16,\n" +
        "5e-2 for bfloat16, 1e-10 for double.";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--json", "FILE.json", "write every statistic, the inputs' provenance and the ORT version as JSON (- for stdout: then all other text goes to stderr)", Writes: "JSON report"),
        .. Gates.DriftOptions,
        .. ReportSettings.Options,
        .. CheckSettings.Options,
    ];

    public override string ExitCodesHelp => "0 equivalent, 1 internal error, 2 not equivalent, 3 invalid model or arguments, 4 --max-drift or --min-cosine failed";

    protected override string QuietHelp => "print only errors and the verdict line (and the tables when the check fails)";

    protected override int Execute(ParsedArgs args, Io io)
    {
        var stdout = io.Out;
        if (args.Positionals.Count != 2)
            throw new InvalidUsageException($"check: expected two models, got {args.Positionals.Count} (usage: {Usage})");
        var request = CheckSettings.ParseRequest(Name, args);
        io.CheckReports(args.Positionals, []);
        CheckSettings.CheckSaveFolder(Name, request, args.Positionals, io.ReportFiles);
        var gates = Gates.Parse(Name, args);
        var histograms = new List<HistogramBuilder>();
        var report = CheckRun.Run(args.Positionals[0], args.Positionals[1], request, observe: (_, _, expected, actual) =>
        {
            for (int k = 0; k < expected.Count; k++)
            {
                if (histograms.Count <= k) histograms.Add(new HistogramBuilder());
                if (actual.TryGetValue(expected[k].Name, out var a)) histograms[k].Add(expected[k], a);
            }
        });
        var gate = gates.Results(null, report);
        int exit = !report.Passed ? ExitCodes.CheckFailed : gate is { Passed: false } ? ExitCodes.GateFailed : ExitCodes.Success;
        if (!io.Quiet || !report.Passed) stdout.Write(Printing.Check(report, request.Localize, io.Width));
        ReportSettings.Write(io, new CheckFileReport(ReportBuilder.Tool, ReportBuilder.Version, io.CommandLine, exit,
            args.Positionals[0], args.Positionals[1], ReportBuilder.Check(report, [.. histograms.Select(h => (ErrorHistogram?)h.Build())]), gate));
        var o = report.Options;
        stdout.WriteLine(report.Passed
            ? report.NothingToCheck ? "Equivalent: every output is computed by the same nodes from the same weights in both models (nothing to check; ONNX Runtime not run)."
            : $"Equivalent: {report.Outputs.Count(x => !x.Amplified)} of {report.Outputs.Count} output(s) within tolerance ({o.InputProvenance}, {o.Iterations} iteration(s), ONNX Runtime {report.OrtVersion}, {(o.Level == OrtLevel.Disable ? "optimisations disabled" : $"optimisation level {o.Level.ToString().ToLowerInvariant()}")}){Printing.AmplifiedClause(report)}."
            : $"NOT equivalent: {report.Outputs.Count(x => !x.Passed)} of {report.Outputs.Count} output(s) and {report.Intermediates.Count(x => !x.Passed)} of {report.Intermediates.Count} shared intermediate tensor(s) beyond tolerance" +
              (report.FirstReplayFailure != null ? $"; {report.Replays.Count(x => !x.Passed)} of {report.Replays.Count} tensor(s) of the rewritten nodes beyond their local tolerance" : "") +
              (report.Audit is { Passed: false } ? "; the weight audit failed." : "."));
        if (gate is { Passed: false } && report.Passed)
        {
            Console.Error.WriteLine($"normfold: check: {string.Join(", ", gate.Failures.Select(f => f.Gate).Distinct())}: {gate.Failures.Count} failure(s):");
            Console.Error.Write(Printing.GateFailures(gate, io.Width));
        }
        return exit;
    }
}
