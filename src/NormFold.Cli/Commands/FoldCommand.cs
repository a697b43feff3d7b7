using NormFold.Onnx;
using NormFold.Rewriting;
using NormFold.Verification;

namespace NormFold.Cli.Commands;

public sealed class FoldCommand : Command
{
    public override string Name => "fold";
    public override string Usage => "normfold fold MODEL.onnx -o OUTPUT.onnx [options]";
    public override string Summary => "fold BatchNormalization into Conv/ConvTranspose/Gemm/MatMul and write the model";
    public override string Description =>
        "Folds every eval-mode BatchNormalization that its producer can absorb into that producer's weights and bias,\n" +
        "turns the other BNs into Mul + Add (unless --keep-standalone-bn), and prints one row per BatchNormalization:\n" +
        "folded into which node, or left and why. The input model is never modified. If/Loop/Scan bodies are folded too.\n" +
        $"Rules: {string.Join(", ", Pipeline.RuleNames)}.";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--output", "FILE", "where to write the folded model (required; never the input)", Alias: "-o"),
        new("--report", "FILE.json", "write every decision, op counts (and check results) as JSON"),
        .. PipelineSettings.Options,
        new("--external-data", null, "store every tensor of ≥ 1 KB in a data file beside the output (needed past 2 GB)"),
        new("--external-data-file", "NAME", "name of that data file, relative to the output (default OUTPUT.data)"),
        new("--check", null, "run original and folded model in ONNX Runtime and compare; on failure write nothing, exit 2"),
        new("--quiet", null, "print only errors and the summary line", Alias: "-q"),
        .. CheckSettings.Options,
    ];

    protected override int Execute(ParsedArgs args, TextWriter stdout)
    {
        string input = SinglePositional(args, "input model");
        string output = args.Value("--output") ?? throw new UsageException($"fold: missing -o OUTPUT.onnx (usage: {Usage})");
        bool check = args.Has("--check");
        var checkRequest = CheckSettings.ParseRequest(Name, args);
        if (!check && CheckSettings.Options.Any(o => args.Has(o.Name)))
            throw new UsageException("fold: check options (--seed, --shape, …) need --check");
        var options = PipelineSettings.Parse(Name, args);
        var save = new SaveOptions
        {
            ExternalData = args.Has("--external-data") ? ExternalDataMode.All : ExternalDataMode.Keep,
            ExternalFileName = args.Value("--external-data-file"),
        };
        if (save.ExternalFileName != null && (Path.IsPathRooted(save.ExternalFileName) || save.ExternalFileName.Contains("..")))
            throw new UsageException("fold: --external-data-file must be a file name relative to the output's folder");
        if (Path.GetFullPath(input) == Path.GetFullPath(output))
            throw new UsageException($"fold: {output}: refusing to overwrite the input model; choose another output path");

        var model = OnnxModel.Load(input);
        var result = Folding.Fold(model, options);
        CheckReport? report = null;
        if (check)
        {
            report = Staging.SaveChecked(model, input, output, save, checkRequest);
        }
        else
        {
            ModelWriter.Save(model, output, save);
        }

        bool quiet = args.Has("--quiet");
        if (!quiet)
        {
            stdout.Write(Printing.Decisions(result.Log));
            stdout.WriteLine();
        }
        if (report != null && (!quiet || !report.Passed))
        {
            stdout.Write(Printing.Check(report, checkRequest.Localize));
            stdout.WriteLine();
        }
        if (args.Value("--report") is { } reportPath) Printing.WriteJson(reportPath, Printing.FoldJson(input, report is { Passed: false } ? null : output, result, report));
        stdout.WriteLine(Printing.Summary(result));
        if (report is { Passed: false })
        {
            var f = report.FirstFailure!;
            Console.Error.WriteLine($"normfold: fold: {input}: equivalence check failed on {(report.Outputs.Contains(f) ? "output" : "intermediate tensor")} '{f.Name}' ({f.Problem ?? $"max abs error {Printing.Num(f.MaxAbs)} > tolerance"}); {output} was not written");
            return ExitCodes.CheckFailed;
        }
        stdout.WriteLine(report is null ? $"Wrote {output}." : $"Wrote {output}; equivalence check passed.");
        return ExitCodes.Success;
    }
}
