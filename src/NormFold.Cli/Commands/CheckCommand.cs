using NormFold.Verification;

namespace NormFold.Cli.Commands;

public sealed class CheckCommand : Command
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
        .. CheckSettings.Options,
    ];

    protected override string QuietHelp => "print only errors and the verdict line (and the tables when the check fails)";

    protected override int Execute(ParsedArgs args, Io io)
    {
        var stdout = io.Out;
        if (args.Positionals.Count != 2)
            throw new InvalidUsageException($"check: expected two models, got {args.Positionals.Count} (usage: {Usage})");
        var request = CheckSettings.ParseRequest(Name, args);
        io.CheckReports(args.Positionals, []);
        CheckSettings.CheckSaveFolder(Name, request, args.Positionals, io.ReportFiles);
        var report = CheckRun.Run(args.Positionals[0], args.Positionals[1], request);
        if (!io.Quiet || !report.Passed) stdout.Write(Printing.Check(report, request.Localize));
        io.WriteReport("--json", Printing.ToJson(Printing.CheckJson(report)));
        var o = report.Options;
        stdout.WriteLine(report.Passed
            ? $"Equivalent: {report.Outputs.Count} output(s) within tolerance ({o.InputProvenance}, {o.Iterations} iteration(s), ONNX Runtime {report.OrtVersion}, {(o.Level == OrtLevel.Disable ? "optimisations disabled" : $"optimisation level {o.Level.ToString().ToLowerInvariant()}")})."
            : $"NOT equivalent: {report.Outputs.Count(x => !x.Passed)} of {report.Outputs.Count} output(s) and {report.Intermediates.Count(x => !x.Passed)} of {report.Intermediates.Count} shared intermediate tensor(s) beyond tolerance" +
              (report.Audit is { Passed: false } ? "; the weight audit failed." : "."));
        return report.Passed ? ExitCodes.Success : ExitCodes.CheckFailed;
    }
}
