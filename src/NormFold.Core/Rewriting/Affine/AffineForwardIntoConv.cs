using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.Affine;

/// <summary>
/// X → (BN | Mul/Div/Add/Sub by per-channel constants)… → Conv(·, W, b?)   ⇒   Conv(X, W', b')
/// Conditions: W (and b) constant, floating point, W [M, C/g, k…] with M divisible by g (the Conv reads W's rank; X has
/// it, see <see cref="AffineForward"/>); constants vary
/// along axis 1 only (C values) or are scalars; a shift only when the Conv pads nothing (pads all 0; auto_pad NOTSET or
/// VALID, or SAME with a 1×…×1 kernel).
/// Algebra: see <see cref="AffineForward"/>; input channel k of W[m, k, …] is (m / (M/g))·(C/g) + k.
/// </summary>
internal sealed class AffineForwardIntoConv : AffineForward
{
    public override string Name => "AffineForwardIntoConv";
    protected override IReadOnlyCollection<string> ConsumerOpTypes { get; } = ["Conv"];

    protected override Match.Refused? ReadConsumer(GraphIndex g, NodeProto conv, string input, out Linear linear)
    {
        linear = null!;
        if (LinearWeights.Constant(g, conv, 1, "weight", out var w) is { } refused) return refused;
        long group = Attributes.Int(conv, "group", 1);
        if (w.Dims.Count < 3 || group < 1 || w.Dims[0] % group != 0)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(conv)} weight '{w.Name}' has shape {LinearWeights.Dims(w)} with group={group}, expected [M, C/group, k…] with M divisible by group");
        if (LinearWeights.OptionalBias(g, conv, w.Dims[0], out var bias) is { } biasRefused) return biasRefused;
        // The Conv reads W's rank (ORT requires it): proven, where a value_info on its input is not.
        linear = new Linear(conv, w, new ChannelLayout.Rows(), new ChannelLayout.ConvInputs(w.Dims[0], w.Dims[1], group),
            w.Dims[0], w.Dims[1] * group, w.Dims.Count, 1, 2, bias, 1.0, 1.0);
        return null;
    }

    protected override Match.Refused? ShiftRefusal(GraphIndex g, NodeProto conv, TensorProto weight)
    {
        var pads = Attributes.Ints(conv, "pads");
        string autoPad = Attributes.Find(conv, "auto_pad") is { } a ? a.S.ToStringUtf8() : "NOTSET";
        bool unitKernel = weight.Dims.Skip(2).All(k => k == 1);
        bool padsNothing = autoPad switch
        {
            "NOTSET" or "" => pads is null || pads.All(p => p == 0),
            "VALID" => true,
            _ => unitKernel,
        };
        if (padsNothing) return null;
        string how = autoPad is "NOTSET" or "" ? $"pads=[{string.Join(",", pads!)}]" : $"auto_pad={autoPad}";
        return Match.Refuse(SkipReason.PaddedConvolution,
            $"{Attributes.Describe(conv)} has {how}: its zero padding would apply after the shift in the original and before it in the folded model");
    }
}
