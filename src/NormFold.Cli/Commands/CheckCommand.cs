using NormFold.Verification;

namespace NormFold.Cli.Commands;

public sealed class CheckCommand : Command
{
    public override string Name => "check";
    public override string Usage => "normfold check ORIGINAL.onnx REWRITTEN.onnx [options]";
    public override string Summary => "run both models in ONNX Runtime on the same inputs and compare every output";
    public override string Description =>
        "Runs both models in ONNX Runtime (CPU, graph optimisations disabled by default so that ORT does not fold BN in\n" +
        "the baseline) on the same seeded inputs, and compares each output of ORIGINAL with the same-named output of\n" +
        "REWRITTEN. An element passes when |a − r| ≤ atol or ≤ rtol·|r|; NaN/Inf must match; integer outputs must be equal.\n" +
        "Default tolerance per output: rtol = k and atol = k·max|reference|, k = 1e-4 for float32, 1e-2 for float16,\n" +
        "5e-2 for bfloat16, 1e-10 for double.";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--json", "FILE.json", "write every statistic, the inputs' provenance and the ORT version as JSON"),
        .. CheckSettings.Options,
    ];

    protected override int Execute(ParsedArgs args, TextWriter stdout)
    {
        if (args.Positionals.Count != 2)
            throw new UsageException($"check: expected two models, got {args.Positionals.Count} (usage: {Usage})");
        var options = CheckSettings.Parse(Name, args);
        CheckReport report;
        using (var reference = new OrtRunner(args.Positionals[0], options.Level))
        using (var candidate = new OrtRunner(args.Positionals[1], options.Level))
            report = EquivalenceChecker.Check(reference, candidate, options);
        stdout.Write(Printing.Check(report));
        if (args.Value("--json") is { } json) Printing.WriteJson(json, Printing.CheckJson(report));
        stdout.WriteLine(report.Passed
            ? $"Equivalent: {report.Outputs.Count} output(s) within tolerance ({options.InputProvenance}, {options.Iterations} iteration(s), ONNX Runtime {report.OrtVersion}, optimisations {options.Level.ToString().ToLowerInvariant()})."
            : $"NOT equivalent: {report.Outputs.Count(o => !o.Passed)} of {report.Outputs.Count} output(s) beyond tolerance.");
        return report.Passed ? ExitCodes.Success : ExitCodes.CheckFailed;
    }
}
