using NormFold.Onnx;
using NormFold.Rewriting;

namespace NormFold;

public sealed record FoldResult(RewriteLog Log, SortedDictionary<string, int> OpsBefore, SortedDictionary<string, int> OpsAfter)
{
    public bool Changed => Log.Decisions.Any(d => d.Outcome != Outcome.Left);
}

/// <summary>The library entry point: fold a loaded model in place and say what was done.</summary>
public static class Folding
{
    public static FoldResult Fold(OnnxModel model, PipelineOptions? options = null)
    {
        Graph.ModelValidator.Validate(model); // again: the model may have been built or changed in memory
        var before = OpCounts.Of(model);
        var log = new Pipeline(options).Run(model);
        return new FoldResult(log, before, OpCounts.Of(model));
    }

    /// <summary>Load, fold, save. The input file is never written.</summary>
    public static FoldResult FoldFile(string input, string output, PipelineOptions? options = null, SaveOptions? save = null)
    {
        using var model = OnnxModel.Load(input);
        var result = Fold(model, (options ?? new PipelineOptions()) with { DeferWeightArithmetic = true }); // saved next
        ModelWriter.Save(model, output, save);
        return result;
    }
}
