using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.BatchNorm;

/// <summary>
/// Conv(X, W, b?) → BN   ⇒   Conv(X, W', b')
/// Conditions: W (and b) constant, floating point; W is [M, C/g, k…] (1-D/2-D/3-D, any group) with M = BN channels.
/// Algebra, per output channel m:  W'[m, …] = W[m, …]·s[m],   b'[m] = b[m]·s[m] + t[m]   (b = 0 when absent).
/// </summary>
internal sealed class IntoConv : FoldIntoProducer<IntoConv.ConvPlan>
{
    /// <summary>The new weight is computed when applied (streaming, see <see cref="ChannelScaling"/>); the bias now.</summary>
    public sealed record ConvPlan(NodeProto Anchor, NodeProto Target, TensorProto Weight, ChannelLayout Layout, double[] Scale,
        double[] Shift, int BiasType, double[] NewBias, long[] BiasDims) : Plan(Anchor, Target);

    public override string Name => "BatchNormIntoConv";
    protected override IReadOnlyCollection<string> ProducerOpTypes { get; } = ["Conv"];

    protected override Match MatchProducer(GraphIndex g, NodeProto bn, NodeProto conv, BatchNormParameters p)
    {
        if (ConstantWeight(g, conv, 1, "weight", out var w) is { } refused) return refused;
        if (w.Dims.Count < 3)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(conv)} weight '{w.Name}' has shape {Dims(w)}, expected [M, C/group, k…]");
        if (w.Dims[0] != p.Channels)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(conv)} has {w.Dims[0]} output channels, the BN has {p.Channels}");
        if (OptionalChannelBias(g, conv, p.Channels, out var bias) is { } biasRefused) return biasRefused;

        ChannelBias.TryFold(bias, bias is null ? null : g.Model.ReadDoubles(bias), 1.0, p.Scale, p.Shift, out var newBias, out var biasDims, out _);
        if (NonFinite(g, conv, w, new ChannelLayout.Rows(), p.Scale, bias?.DataType ?? w.DataType, newBias) is { } overflow) return overflow;
        return new Match.Planned(new ConvPlan(bn, conv, w, new ChannelLayout.Rows(), p.Scale, p.Shift, bias?.DataType ?? w.DataType, newBias, biasDims));
    }

    protected override Applied Apply(GraphEditor editor, ConvPlan plan) => Rewrite(editor, plan);

    /// <summary>Shared with ConvTranspose: new W' and b' tensors, producer takes the BN's output.</summary>
    internal static Applied Rewrite(GraphEditor editor, ConvPlan plan)
    {
        var node = plan.Target!;
        var w = ScaleWeight(editor, plan.Weight, plan.Layout, plan.Scale);
        string? oldBias = HasInput(node, 2) ? node.Input[2] : null;
        var b = AddBias(editor, oldBias, (oldBias ?? plan.Weight.Name + "_bias") + "_bnfold", plan.BiasType, plan.BiasDims, plan.NewBias,
            1.0, plan.Scale, plan.Shift);
        editor.SetInput(node, 1, w.Result);
        editor.SetInput(node, 2, b.Result);
        Bypass(editor, plan.Anchor, node);
        return new Applied([w.Result, b.Result], [w, b]);
    }
}
