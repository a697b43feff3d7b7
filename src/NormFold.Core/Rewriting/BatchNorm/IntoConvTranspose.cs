using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.BatchNorm;

/// <summary>
/// ConvTranspose(X, W, b?) → BN   ⇒   ConvTranspose(X, W', b')
/// Conditions: W (and b) constant, floating point; W is [Cin, M/g, k…] with Cin divisible by g and M = BN channels.
/// Algebra: W[i, j, …] feeds output channel m = (i / (Cin/g))·(M/g) + j, so W'[i, j, …] = W[i, j, …]·s[m];
///          b'[m] = b[m]·s[m] + t[m]   (b = 0 when absent).
/// </summary>
internal sealed class IntoConvTranspose : FoldIntoProducer<IntoConv.ConvPlan>
{
    public override string Name => "BatchNormIntoConvTranspose";
    protected override IReadOnlyCollection<string> ProducerOpTypes { get; } = ["ConvTranspose"];

    protected override Match MatchProducer(RewriteContext context, NodeProto bn, NodeProto convT, BatchNormParameters p)
    {
        var g = context.Graph;
        if (ConstantWeight(g, convT, 1, "weight", out var w) is { } refused) return refused;
        long group = Attributes.Int(convT, "group", 1);
        if (w.Dims.Count < 3 || group < 1 || w.Dims[0] % group != 0)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(convT)} weight '{w.Name}' has shape {Dims(w)} with group={group}, expected [Cin, M/group, k…] with Cin divisible by group");
        long outPerGroup = w.Dims[1];
        if (outPerGroup * group != p.Channels)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(convT)} has {outPerGroup}×{group} output channels, the BN has {p.Channels}");
        if (OptionalChannelBias(g, convT, p.Channels, out var bias) is { } biasRefused) return biasRefused;

        var layout = new ChannelLayout.TransposedConv(w.Dims[0], outPerGroup, group);
        if (Compose(context, convT, w, bias, 1.0, layout, p.Channels, p, out var state, out var newBias, out var biasDims) is { } bad) return bad;
        return new Match.Planned(new IntoConv.ConvPlan(bn, convT, state, bias?.DataType ?? w.DataType, newBias, biasDims));
    }

    protected override Applied Apply(GraphEditor editor, IntoConv.ConvPlan plan) => IntoConv.Rewrite(editor, plan);
}
