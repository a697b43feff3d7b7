using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Rewriting.Affine;
using NormFold.Tensors;

namespace NormFold.Rewriting.BatchNorm;

/// <summary>
/// Conv(X, W, b?) → BN   ⇒   Conv(X, W', b')
/// Conditions: W (and b) constant, floating point; W is [M, C/g, k…] (1-D/2-D/3-D, any group) with M = BN channels.
/// Algebra, per output channel m:  W'[m, …] = W[m, …]·s[m],   b'[m] = b[m]·s[m] + t[m]   (b = 0 when absent).
/// </summary>
internal sealed class IntoConv : FoldIntoProducer<IntoConv.ConvPlan>
{
    /// <summary>The new weight is computed when applied (streaming, see <see cref="ChannelScaling"/>); the bias now.
    /// <paramref name="State"/>: the producer's weights after the fold, relative to the original's.</summary>
    public sealed record ConvPlan(NodeProto Anchor, NodeProto Target, LinearState State, int BiasType, double[] NewBias, long[] BiasDims)
        : Plan(Anchor, Target);

    public override string Name => "BatchNormIntoConv";
    protected override IReadOnlyCollection<string> ProducerOpTypes { get; } = ["Conv"];

    protected override Match MatchProducer(RewriteContext context, NodeProto bn, NodeProto conv, BatchNormParameters p)
    {
        var g = context.Graph;
        if (ConstantWeight(g, conv, 1, "weight", out var w) is { } refused) return refused;
        if (w.Dims.Count < 3)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(conv)} weight '{w.Name}' has shape {Dims(w)}, expected [M, C/group, k…]");
        if (w.Dims[0] != p.Channels)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(conv)} has {w.Dims[0]} output channels, the BN has {p.Channels}");
        if (OptionalChannelBias(g, conv, p.Channels, out var bias) is { } biasRefused) return biasRefused;
        if (Compose(context, conv, w, bias, 1.0, new ChannelLayout.Rows(), p.Channels, p, out var state, out var newBias, out var biasDims) is { } bad) return bad;
        return new Match.Planned(new ConvPlan(bn, conv, state, bias?.DataType ?? w.DataType, newBias, biasDims));
    }

    protected override Applied Apply(GraphEditor editor, ConvPlan plan) => Rewrite(editor, plan);

    /// <summary>Shared with ConvTranspose: new W' and b' tensors, producer takes the BN's output.</summary>
    internal static Applied Rewrite(GraphEditor editor, ConvPlan plan)
    {
        var node = plan.Target!;
        var created = new List<string>();
        var records = new List<WeightRecord>();
        string bias = Write(editor, node, plan.State, plan.NewBias, plan.BiasDims, plan.BiasType, created, records, out var state);
        editor.SetInput(node, 2, bias);
        Bypass(editor, plan.Anchor, node);
        return new Applied(created, records, state);
    }
}
