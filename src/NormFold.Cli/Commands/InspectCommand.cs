using NormFold.Onnx;
using NormFold.Rewriting;

namespace NormFold.Cli.Commands;

internal sealed class InspectCommand : Command
{
    public override string Name => "inspect";
    public override string Usage => "normfold inspect MODEL.onnx [options]";
    public override string Summary => "show what fold would do, and the op counts, without writing anything";
    public override string Description =>
        "Plans the fold in memory and prints the decision for every BatchNormalization and the op counts before and\n" +
        "after. Nothing is written except the --json report.";

    public override string ExitCodesHelp => "0 success, 1 internal error, 3 invalid model or arguments, 4 --require-all-folded failed";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--json", "FILE.json", "write the plan and op counts as JSON (- for stdout: then all other text goes to stderr)", Writes: "JSON report"),
        .. PipelineSettings.Options,
        Gates.RequireAllFoldedOption,
        .. ReportSettings.Options,
    ];

    protected override string QuietHelp => "print only errors and the summary line";

    protected override int Execute(ParsedArgs args, Io io)
    {
        string input = SinglePositional(args, "model");
        var options = PipelineSettings.Parse(Name, args);
        var gates = Gates.Parse(Name, args);
        io.CheckReports([input], []);
        using var model = OnnxModel.Load(input);
        var m = model.Proto;
        var stdout = io.Out;
        if (!io.Quiet) stdout.WriteLine($"{input}: IR {m.IrVersion}, opset {string.Join(", ", m.OpsetImport.Select(o => $"{(o.Domain.Length == 0 ? "ai.onnx" : o.Domain)} {o.Version}"))}, producer {(m.ProducerName.Length == 0 ? "?" : $"{m.ProducerName} {m.ProducerVersion}".Trim())}{(model.HasExternalData ? ", external data" : "")}");
        var result = Folding.Fold(model, options, justLoaded: true);
        if (!io.Quiet)
        {
            stdout.WriteLine();
            stdout.Write(Printing.Decisions(result.Log, io.Width));
            stdout.WriteLine();
            stdout.Write(Printing.OpChanges(result, io.Width));
            stdout.WriteLine();
        }
        stdout.WriteLine(Printing.Summary(result));
        var gate = gates.Results(result, null);
        int exit = gate is { Passed: false } ? ExitCodes.GateFailed : ExitCodes.Success;
        ReportSettings.Write(io, () => NormFold.Reports.ReportBuilder.Fold(input, null, result, null, null, gate, io.CommandLine, exit));
        if (gate is { Passed: false })
        {
            Console.Error.WriteLine($"normfold: inspect: {input}: --require-all-folded: {gate.Failures.Count} not folded:");
            Console.Error.Write(Printing.GateFailures(gate, io.Width));
        }
        return exit;
    }
}
