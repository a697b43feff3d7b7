// Fold a model, check it against the original in ONNX Runtime, and write it only if they agree.
// dotnet run --project samples/FoldModel -c Release -- tests/models/resnet_tiny.onnx resnet_tiny.folded.onnx
using NormFold;
using NormFold.Rewriting;
using NormFold.Verification;

if (args.Length != 2)
{
    Console.Error.WriteLine("usage: FoldModel INPUT.onnx OUTPUT.onnx");
    return 3;
}
try
{
    // Load, fold, write beside the output under a temporary name, check in ONNX Runtime (optimisations disabled,
    // every shared intermediate compared, every folded weight replayed bit for bit), then move into place only if
    // equivalent: a failed check leaves no file.
    FoldResult result = Folding.FoldFile(args[0], args[1], new PipelineOptions { KeepStandaloneBatchNorm = true },
        check: new CheckOptions { Iterations = 2, AuditWeights = true });
    foreach (var d in result.Log.Decisions)
        Console.WriteLine($"{d.Anchor}: {(d.Outcome == Outcome.Folded ? "" : $"{d.Outcome} ({d.Reason}) ")}{d.Detail}{(d.Rule is { } rule ? $" [{rule}]" : "")}");
    CheckReport report = result.Check!;
    if (!result.Written)
    {
        Console.Error.WriteLine($"not equivalent (first difference: {report.FirstFailure?.Name ?? "the weight audit"}); nothing written");
        return 2;
    }
    Console.WriteLine($"{result.Log.Count(Outcome.Folded)} folded; equivalent; wrote {args[1]}");
    return 0;
}
catch (NormFoldException e) // bad input: one line naming the file, node or tensor
{
    Console.Error.WriteLine(e.Message);
    return 3;
}
