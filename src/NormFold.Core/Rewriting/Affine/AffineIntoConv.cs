using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.Affine;

/// <summary>
/// Conv(X, W, b?) → Mul/Div/Add/Sub by per-channel constants (or BN → those)   ⇒   Conv(X, W', b')
/// Conditions: W (and b) constant, floating point; W is [M, C/g, k…] (the output has W's rank); constants vary along
/// axis 1 only (M values) or are scalars. Algebra: see <see cref="AffineIntoProducer"/>; W' scales W's rows.
/// </summary>
internal sealed class AffineIntoConv : AffineIntoProducer
{
    public override string Name => "AffineIntoConv";
    protected override IReadOnlyCollection<string> ProducerOpTypes { get; } = ["Conv"];

    protected override Match.Refused? ReadProducer(GraphIndex g, NodeProto conv, string output, out Linear linear)
    {
        linear = null!;
        if (LinearWeights.Constant(g, conv, 1, "weight", out var w) is { } refused) return refused;
        if (w.Dims.Count < 3)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(conv)} weight '{w.Name}' has shape {LinearWeights.Dims(w)}, expected [M, C/group, k…]");
        if (LinearWeights.OptionalBias(g, conv, w.Dims[0], out var bias) is { } biasRefused) return biasRefused;
        // Y has W's rank (ORT requires X's to be W's): proven, where a value_info on Y or X is not.
        linear = new Linear(conv, w, new ChannelLayout.Rows(), w.Dims[0], w.Dims.Count, 1, 2, bias, 1.0);
        return null;
    }
}
