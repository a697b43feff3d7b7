// Fold a model, check it against the original in ONNX Runtime, and write it only if they agree.
// dotnet run --project samples/FoldModel -c Release -- tests/models/resnet_tiny.onnx resnet_tiny.folded.onnx
using NormFold;
using NormFold.Onnx;
using NormFold.Rewriting;
using NormFold.Verification;

if (args.Length != 2)
{
    Console.Error.WriteLine("usage: FoldModel INPUT.onnx OUTPUT.onnx");
    return 3;
}
try
{
    using var original = OnnxModel.Load(args[0]);
    using var model = OnnxModel.Load(args[0]);
    FoldResult result = Folding.Fold(model, new PipelineOptions { KeepStandaloneBatchNorm = true });
    foreach (var d in result.Log.Decisions)
        Console.WriteLine($"{d.Anchor}: {d.Outcome}{(d.Reason is { } r ? $" ({r})" : "")} {d.Detail}");

    CheckReport report = EquivalenceChecker.Check(original, model, new CheckOptions { Iterations = 2, AuditWeights = true, FoldLog = result.Log });
    if (!report.Passed)
    {
        Console.Error.WriteLine($"not equivalent (first difference: {report.FirstFailure?.Name ?? "the weight audit"}); nothing written");
        return 2;
    }
    ModelWriter.Save(model, args[1]);
    Console.WriteLine($"{result.Log.Count(Outcome.Folded)} folded; equivalent; wrote {args[1]}");
    return 0;
}
catch (NormFoldException e) // bad input: one line naming the file, node or tensor
{
    Console.Error.WriteLine(e.Message);
    return 3;
}
