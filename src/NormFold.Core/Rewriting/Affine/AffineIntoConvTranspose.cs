using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.Affine;

/// <summary>
/// ConvTranspose(X, W, b?) → Mul/Div/Add/Sub by per-channel constants (or BN → those)   ⇒   ConvTranspose(X, W', b')
/// Conditions: W (and b) constant, floating point; W is [Cin, M/g, k…] with Cin divisible by g (any group; the output
/// has W's rank); constants
/// vary along axis 1 only (M values) or are scalars.
/// Algebra: see <see cref="AffineIntoProducer"/>; W[i, j, …] feeds output channel (i / (Cin/g))·(M/g) + j.
/// </summary>
internal sealed class AffineIntoConvTranspose : AffineIntoProducer
{
    public override string Name => "AffineIntoConvTranspose";
    protected override IReadOnlyCollection<string> ProducerOpTypes { get; } = ["ConvTranspose"];

    protected override Match.Refused? ReadProducer(GraphIndex g, NodeProto convT, string output, out Linear linear)
    {
        linear = null!;
        if (LinearWeights.Constant(g, convT, 1, "weight", out var w) is { } refused) return refused;
        long group = Attributes.Int(convT, "group", 1);
        if (w.Dims.Count < 3 || group < 1 || w.Dims[0] % group != 0)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(convT)} weight '{w.Name}' has shape {LinearWeights.Dims(w)} with group={group}, expected [Cin, M/group, k…] with Cin divisible by group");
        long channels = w.Dims[1] * group;
        if (LinearWeights.OptionalBias(g, convT, channels, out var bias) is { } biasRefused) return biasRefused;
        // Y has W's rank (ORT requires X's to be W's): proven, where a value_info on Y or X is not.
        linear = new Linear(convT, w, new ChannelLayout.TransposedConv(w.Dims[0], w.Dims[1], group), channels, w.Dims.Count, 1, 2, bias, 1.0);
        return null;
    }
}
