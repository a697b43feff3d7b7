using NormFold.Graph;
using NormFold.Onnx;
using NormFold.Onnx.Proto;

namespace NormFold.Rewriting.Normalization;

/// <summary>
/// Raising a model's default-domain opset, allowed only when every node keeps its meaning at the new version.
/// The table lists, per operator, the versions at which an existing node would mean something else or stop being
/// valid (from the ONNX changelog). Operators whose later versions only added types or optional attributes/inputs
/// with meaning-preserving defaults are listed as unchanged; an operator in neither list blocks the raise, since
/// NormFold cannot vouch for it.
/// </summary>
public static class OpsetUpgrade
{
    /// <summary>The newest default-domain opset this table covers.</summary>
    public const long HighestKnown = 23;

    /// <summary>op → (version, what changes, whether it applies to this node).</summary>
    static readonly Dictionary<string, (int Version, string What, Func<NodeProto, bool> Applies)> Breaking = new()
    {
        ["ReduceMean"] = (18, "axes became an input", UsesAxesAttribute),
        ["ReduceMax"] = (18, "axes became an input", UsesAxesAttribute),
        ["ReduceMin"] = (18, "axes became an input", UsesAxesAttribute),
        ["ReduceProd"] = (18, "axes became an input", UsesAxesAttribute),
        ["ReduceL1"] = (18, "axes became an input", UsesAxesAttribute),
        ["ReduceL2"] = (18, "axes became an input", UsesAxesAttribute),
        ["ReduceLogSum"] = (18, "axes became an input", UsesAxesAttribute),
        ["ReduceLogSumExp"] = (18, "axes became an input", UsesAxesAttribute),
        ["ReduceSumSquare"] = (18, "axes became an input", UsesAxesAttribute),
        ["GroupNormalization"] = (21, "scale and bias became per channel", _ => true),
        ["GridSample"] = (20, "mode values were renamed", _ => true),
        ["DFT"] = (20, "dft_length and axis became inputs", _ => true),
        ["BatchNormalization"] = (14, "the training-mode outputs changed", n => n.Output.Count(o => o.Length > 0) > 1),
        ["Upsample"] = (10, "it was removed", _ => true),
        ["Scatter"] = (11, "it was removed", _ => true),
    };

    static bool UsesAxesAttribute(NodeProto n) => Attributes.Find(n, "axes") != null;

    static readonly HashSet<string> Unchanged = new(StringComparer.Ordinal)
    {
        "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh", "AveragePool",
        "BatchNormalization", "BitShift", "Cast", "CastLike", "Ceil", "Celu", "Clip", "Compress", "Concat", "Constant",
        "ConstantOfShape", "Conv", "ConvInteger", "ConvTranspose", "Cos", "Cosh", "CumSum", "DepthToSpace",
        "DequantizeLinear", "Div", "Dropout", "DynamicQuantizeLinear", "Einsum", "Elu", "Equal", "Erf", "Exp", "Expand",
        "EyeLike", "Flatten", "Floor", "GRU", "Gather", "GatherElements", "GatherND", "Gemm", "GlobalAveragePool",
        "GlobalLpPool", "GlobalMaxPool", "Greater", "GreaterOrEqual", "HardSigmoid", "HardSwish", "Hardmax", "Identity",
        "If", "InstanceNormalization", "IsInf", "IsNaN", "LRN", "LSTM", "LayerNormalization", "LeakyRelu", "Less",
        "LessOrEqual", "Log", "LogSoftmax", "Loop", "LpNormalization", "LpPool", "MatMul", "MatMulInteger", "Max",
        "MaxPool", "MaxRoiPool", "MaxUnpool", "Mean", "MeanVarianceNormalization", "Min", "Mod", "Mul", "Neg",
        "NonMaxSuppression", "NonZero", "Not", "OneHot", "Or", "PRelu", "Pad", "Pow", "QLinearConv", "QLinearMatMul",
        "QuantizeLinear", "RNN", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Range",
        "Reciprocal", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceL1", "ReduceL2",
        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "Relu", "Reshape", "Resize", "ReverseSequence",
        "RoiAlign", "Round", "Scan", "ScatterElements", "ScatterND", "Selu", "Shape", "Shrink", "Sigmoid", "Sign", "Sin",
        "Sinh", "Size", "Slice", "Softmax", "Softplus", "Softsign", "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub",
        "Sum", "Tan", "Tanh", "ThresholdedRelu", "Tile", "TopK", "Transpose", "Trilu", "Unique", "Unsqueeze", "Where",
        "Xor", "Mish", "Gelu", "GroupNormalization", "GridSample", "DFT",
    };

    /// <summary>Nodes (in every graph) that would change meaning if the default opset went from its current version to
    /// <paramref name="target"/>; empty when raising is safe. Nodes the rewrite will remove can be excused.</summary>
    public static List<string> Blockers(OnnxModel model, long target, IReadOnlySet<NodeProto>? excused = null)
    {
        long from = model.DefaultOpset;
        var blockers = new List<string>();
        foreach (var g in model.AllGraphs())
            foreach (var n in g.Node)
            {
                if (!Attributes.IsDefaultDomain(n) || (excused?.Contains(n) ?? false)) continue;
                if (Breaking.TryGetValue(n.OpType, out var b) && b.Version > from && b.Version <= target && b.Applies(n))
                    blockers.Add($"{Attributes.Describe(n)} ({b.What} in opset {b.Version})");
                else if (!Unchanged.Contains(n.OpType) && !Breaking.ContainsKey(n.OpType))
                    blockers.Add($"{Attributes.Describe(n)} (not in NormFold's table of operators that keep their meaning)");
            }
        return blockers;
    }

    /// <summary>Sets the default-domain opset import to <paramref name="target"/> and the IR version to one that allows it.</summary>
    public static void Raise(OnnxModel model, long target)
    {
        foreach (var o in model.Proto.OpsetImport)
            if (o.Domain is "" or "ai.onnx") o.Version = target;
        long ir = target switch { <= 18 => 8, <= 20 => 9, <= 22 => 10, _ => 11 };
        if (model.Proto.IrVersion < ir) model.Proto.IrVersion = ir;
    }
}
