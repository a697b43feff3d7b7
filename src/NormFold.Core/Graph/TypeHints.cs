using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Graph;

/// <summary>
/// Ranks and element types of tensors the model does not declare (exporters often store no value_info),
/// propagated forward in one pass from declared inputs, initializers and constants through ops whose output rank
/// and type follow from their inputs. Unknown stays unknown: rules that need a rank refuse rather than guess.
/// </summary>
public sealed class TypeHints
{
    readonly Dictionary<string, int> _rank = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> _type = new(StringComparer.Ordinal);

    /// <summary>Output has input 0's rank and type.</summary>
    static readonly HashSet<string> SameAsFirst = new(StringComparer.Ordinal)
    {
        "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu", "Celu", "Gelu", "Mish",
        "Softplus", "Softsign", "Clip", "Identity", "Dropout", "BatchNormalization", "InstanceNormalization",
        "LayerNormalization", "GroupNormalization", "Erf", "Exp", "Log", "Neg", "Abs", "Sqrt", "Reciprocal", "Floor",
        "Ceil", "Round", "Sign", "Sin", "Cos", "Softmax", "LogSoftmax", "Conv", "ConvTranspose", "MaxPool",
        "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "LRN", "Transpose",
        "Concat", "Pad", "Resize", "Upsample", "DepthToSpace", "SpaceToDepth", "Slice", "Tile", "CumSum",
    };

    /// <summary>Numpy-style broadcasting: rank is the largest input rank, type is input 0's.</summary>
    static readonly HashSet<string> Broadcasting = new(StringComparer.Ordinal)
    {
        "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean",
    };

    public TypeHints(GraphIndex index)
    {
        // Passes in list order until nothing new is learned: one pass for a sorted graph, more when rewrites appended
        // nodes that the final topological sort has not placed yet.
        for (int pass = 0; pass < 16 && Propagate(index); pass++) { }
    }

    bool Propagate(GraphIndex index)
    {
        bool learned = false;
        foreach (var n in index.Graph.Node)
        {
            if (n.Output.Count == 0 || n.Output[0].Length == 0 || !Attributes.IsDefaultDomain(n)) continue;
            int? rank = null, type = null;
            int? R(int i) => i < n.Input.Count && n.Input[i].Length > 0 ? Rank(index, n.Input[i]) : null;
            int? T(int i) => i < n.Input.Count && n.Input[i].Length > 0 ? ElemType(index, n.Input[i]) : null;
            int? R2(string name) => Rank(index, name);
            if (SameAsFirst.Contains(n.OpType)) { rank = R(0); type = T(0); }
            else if (Broadcasting.Contains(n.OpType))
            {
                type = T(0);
                int best = 0;
                for (int i = 0; i < n.Input.Count; i++) { if (R(i) is not { } r) { best = -1; break; } best = Math.Max(best, r); }
                rank = best >= 0 ? best : null;
            }
            else switch (n.OpType)
            {
                case "Gemm": rank = 2; type = T(0); break;
                case "Flatten": rank = 2; type = T(0); break;
                case "MatMul":
                    type = T(0);
                    if (R(0) is { } ra && R(1) is { } rb)
                        rank = ra == 1 && rb == 1 ? 0 : ra == 1 ? rb - 1 : rb == 1 ? ra - 1 : Math.Max(ra, rb);
                    break;
                case "Cast": rank = R(0); type = (int)Attributes.Int(n, "to", 0); break;
                case "Unsqueeze":
                    type = T(0);
                    long? added = Attributes.Ints(n, "axes") is { } attr ? attr.Count
                        : n.Input.Count > 1 && index.TryGetConstant(n.Input[1], out var axes, out _) ? TensorData.ElementCount(axes) : null;
                    if (R(0) is { } before && added is { } k) rank = before + (int)k;
                    break;
                case "Reshape":
                    type = T(0);
                    if (n.Input.Count > 1 && index.TryGetConstant(n.Input[1], out var shape, out _) && shape.Dims.Count == 1) rank = (int)shape.Dims[0];
                    else if (n.Input.Count > 1 && index.Producer(n.Input[1]) is { OpType: "Shape" } s && s.Attribute.Count == 0) rank = R2(s.Input[0]);
                    break;
            }
            if (rank is { } rk && _rank.TryAdd(n.Output[0], rk)) learned = true;
            if (type is { } tp && tp > 0 && _type.TryAdd(n.Output[0], tp)) learned = true;
        }
        return learned;
    }

    public int? Rank(GraphIndex index, string name) =>
        index.DeclaredRank(name) ?? (_rank.TryGetValue(name, out int r) ? r : null);

    public int? ElemType(GraphIndex index, string name) =>
        index.DeclaredElemType(name) ?? (_type.TryGetValue(name, out int t) ? t : null);
}
