using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.Affine;

/// <summary>Reading a linear op's constant weight and bias, with the refusals every affine rule gives.</summary>
internal static class LinearWeights
{
    /// <summary>A constant, floating-point input of <paramref name="node"/>, or a refusal naming it.</summary>
    public static Match.Refused? Constant(GraphIndex g, NodeProto node, int slot, string role, out TensorProto tensor)
    {
        tensor = null!;
        if (!HasInput(node, slot))
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(node)} has no {role}");
        if (!g.TryGetConstant(node.Input[slot], out tensor, out string whyNot))
            return Match.Refuse(SkipReason.ParameterNotConstant, $"{Attributes.Describe(node)} {role}: {whyNot}");
        if (!ElementType.IsFoldable(tensor.DataType))
            return Match.Refuse(SkipReason.UnsupportedDataType, $"{Attributes.Describe(node)} {role} '{node.Input[slot]}' is {ElementType.Name(tensor.DataType)}");
        return null;
    }

    /// <summary>Conv/ConvTranspose bias (input 2): absent, or constant with shape [channels].</summary>
    public static Match.Refused? OptionalBias(GraphIndex g, NodeProto node, long channels, out TensorProto? bias)
    {
        bias = null;
        if (!HasInput(node, 2)) return null;
        if (Constant(g, node, 2, "bias", out var b) is { } refused) return refused;
        if (b.Dims.Count != 1 || b.Dims[0] != channels)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(node)} bias '{b.Name}' has shape {Dims(b)}, expected [{channels}]");
        bias = b;
        return null;
    }

    /// <summary>A Gemm's constant B (2-D) and optional constant C, or a refusal (also for Gemm before opset 7, whose
    /// `broadcast` attribute is not rewritten).</summary>
    public static Match.Refused? Gemm(GraphIndex g, NodeProto gemm, out TensorProto b, out TensorProto? c)
    {
        b = null!;
        c = null;
        if (g.Opset < 7)
            return Match.Refuse(SkipReason.UnsupportedOpsetVersion, $"{Attributes.Describe(gemm)} is Gemm-{(g.Opset < 6 ? 1 : 6)}, whose `broadcast` attribute NormFold does not rewrite");
        if (Constant(g, gemm, 1, "B", out b) is { } refused) return refused;
        if (b.Dims.Count != 2)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(gemm)} B '{b.Name}' has shape {Dims(b)}, expected 2-D");
        if (!HasInput(gemm, 2)) return null;
        if (Constant(g, gemm, 2, "C", out var constantC) is { } cRefused) return cRefused;
        c = constantC;
        return null;
    }

    public static bool HasInput(NodeProto n, int slot) => n.Input.Count > slot && n.Input[slot].Length > 0;

    public static string Dims(TensorProto t) => "[" + string.Join(",", t.Dims) + "]";
}
