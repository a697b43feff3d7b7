using NormFold.Graph;
using NormFold.Onnx.Proto;

namespace NormFold.Rewriting.Normalization;

/// <summary>Placeholder until the LayerNorm rule lands: every candidate is reported as not matched.</summary>
public sealed class LayerNormSwap(long targetOpset) : IRewriteRule
{
    public string Name => "LayerNormSwap";
    public string AnchorOpType => "ReduceMean";
    public long TargetOpset { get; } = targetOpset;
    public Match TryMatch(GraphIndex graph, NodeProto anchor) => Match.Refuse(SkipReason.PatternMismatch, "not implemented yet");
    public IReadOnlyList<string> Apply(GraphEditor editor, Plan plan) => throw new NotSupportedException();
}
