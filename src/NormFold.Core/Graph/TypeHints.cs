using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Graph;

/// <summary>
/// Shapes (rank, and dims where they follow) and element types of tensors, propagated forward from what is binding —
/// the main graph's declared inputs (ORT enforces them at run time), initializers and constants — through ops whose
/// output shape follows from their inputs. Other declarations (value_info, graph outputs, body inputs) are hints:
/// used where propagation knows nothing, ignored where they contradict it (a value_info of rank 2 for a 4-D
/// activation must never steer a broadcast). Unknown stays unknown: rules that need a rank refuse rather than guess.
/// </summary>
internal sealed class TypeHints
{
    /// <summary>Propagated shapes; -1 for a dim that is not known.</summary>
    readonly Dictionary<string, long[]> _shape = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> _type = new(StringComparer.Ordinal);
    /// <summary>Shapes propagated from proof only (constants, the main graph's declared inputs); see <see cref="ProvenShapeOf"/>.</summary>
    readonly Dictionary<string, long[]> _proven = new(StringComparer.Ordinal);
    /// <summary>Names whose declaration contradicts the propagated shape.</summary>
    readonly HashSet<string> _contradicted = new(StringComparer.Ordinal);

    /// <summary>Output has input 0's shape and type.</summary>
    static readonly HashSet<string> SameShape = new(StringComparer.Ordinal)
    {
        "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu", "Celu", "Gelu", "Mish",
        "Softplus", "Softsign", "Clip", "Identity", "Dropout", "BatchNormalization", "InstanceNormalization",
        "LayerNormalization", "GroupNormalization", "Erf", "Exp", "Log", "Neg", "Abs", "Sqrt", "Reciprocal", "Floor",
        "Ceil", "Round", "Sign", "Sin", "Cos", "Softmax", "LogSoftmax", "LRN", "CumSum",
    };

    /// <summary>Output has input 0's rank and type (dims may change).</summary>
    static readonly HashSet<string> SameRank = new(StringComparer.Ordinal)
    {
        "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "Pad", "Resize", "Upsample", "DepthToSpace",
        "SpaceToDepth", "Slice", "Tile",
    };

    /// <summary>Numpy-style broadcasting: shape is the inputs' broadcast, type is input 0's.</summary>
    static readonly HashSet<string> Broadcasting = new(StringComparer.Ordinal)
    {
        "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean",
    };

    public TypeHints(GraphIndex index)
    {
        // Passes in list order until nothing new is learned: one pass for a sorted graph, more when rewrites appended
        // nodes that the final topological sort has not placed yet.
        for (int pass = 0; pass < 16 && Propagate(index); pass++) { }
        foreach (var (name, shape) in _shape)
            if (index.HintDeclaration(name) is { } declared && Shape(declared) is { } d && !Compatible(d, shape))
                _contradicted.Add(name);
    }

    bool Propagate(GraphIndex index)
    {
        bool learned = false;
        foreach (var n in index.Graph.Node) learned |= Learn(index, n);
        return learned;
    }

    /// <summary>A node a rewrite added (in the order added), or whose output it renamed: learn its output from its
    /// inputs and check the output's declaration against it, so a rewrite costs time independent of the graph's size.</summary>
    internal void LearnAdded(GraphIndex index, NodeProto n)
    {
        if (!Learn(index, n) || n.Output.Count == 0) return;
        string name = n.Output[0];
        if (_shape.TryGetValue(name, out var shape) && index.HintDeclaration(name) is { } declared && Shape(declared) is { } d && !Compatible(d, shape))
            _contradicted.Add(name);
    }

    /// <summary>What one node's output shape and type follow from its inputs' — once from everything known (hints
    /// included), once from proof only; true when something new was learned.</summary>
    bool Learn(GraphIndex index, NodeProto n)
    {
        if (n.Output.Count == 0 || n.Output[0].Length == 0 || !Attributes.IsDefaultDomain(n)) return false;
        var (shape, type) = Infer(index, n, name => ShapeOf(index, name));
        bool learned = false;
        if (shape != null && _shape.TryAdd(n.Output[0], shape)) learned = true;
        if (type is { } tp && tp > 0 && _type.TryAdd(n.Output[0], tp)) learned = true;
        if (!_proven.ContainsKey(n.Output[0]) && Infer(index, n, name => ProvenShapeOf(index, name)).Shape is { } proven)
        {
            _proven.Add(n.Output[0], proven);
            learned = true;
        }
        return learned;
    }

    /// <summary>A node's output shape and type from its inputs' shapes as <paramref name="shapeOf"/> gives them.</summary>
    (long[]? Shape, int? Type) Infer(GraphIndex index, NodeProto n, Func<string, long[]?> shapeOf)
    {
        long[]? shape = null;
        int? type = null;
        long[]? S(int i) => i < n.Input.Count && n.Input[i].Length > 0 ? shapeOf(n.Input[i]) : null;
        int? T(int i) => i < n.Input.Count && n.Input[i].Length > 0 ? ElemType(index, n.Input[i]) : null;
        if (SameShape.Contains(n.OpType)) { shape = S(0); type = T(0); }
        else if (SameRank.Contains(n.OpType))
        {
            shape = Unknown(S(0)?.Length); type = T(0);
            // ConvTranspose: N and the channels, W [C, M/g, k…] → M = W[1]·g (a BN after it must have M parameters).
            if (n.OpType == "ConvTranspose" && shape is { Length: >= 3 } ct && S(0) is { } x && S(1) is { Length: >= 3 } w
                && Attributes.Int(n, "group", 1) is > 0 and var group && w[1] >= 0)
            {
                ct[0] = x[0];
                ct[1] = w[1] * group;
            }
        }
        else if (Broadcasting.Contains(n.OpType))
        {
            type = T(0);
            shape = [];
            for (int i = 0; i < n.Input.Count && shape != null; i++) shape = S(i) is { } s ? Broadcast(shape, s) : null;
        }
        else switch (n.OpType)
        {
            case "Conv": shape = ConvShape(n, S(0), S(1)); type = T(0); break;
            case "Transpose":
                // Rank |perm| (a valid model's input has that rank), else the input's.
                type = T(0);
                if (Attributes.Ints(n, "perm")?.ToArray() is { } given)
                    shape = S(0) is { } px && given.Length == px.Length && given.All(p => p >= 0 && p < px.Length) ? given.Select(p => px[p]).ToArray() : Unknown(given.Length);
                else if (S(0) is { } x) shape = x.Reverse().ToArray();
                break;
            case "Concat": shape = ConcatShape(n, Enumerable.Range(0, n.Input.Count).Select(S).ToList()); type = T(0); break;
            case "Expand":
                // The broadcast of X's shape with the constant shape (rank max of the two).
                type = T(0);
                if (S(0) is { } ex && n.Input.Count > 1 && index.TryGetConstant(n.Input[1], out var to, out _) && to.Dims.Count == 1 && to.Dims[0] <= MaxRank)
                    shape = Broadcast(ex, index.Model.ReadInt64s(to));
                else if (S(0) is { } ex2 && S(1) is [var length and >= 0 and <= MaxRank]) shape = Unknown(Math.Max(ex2.Length, (int)length));
                break;
            case "Shape":
                // [rank of X], sliced by start/end (opset 15).
                if (S(0) is { } sx)
                {
                    long r = sx.Length, start = Attributes.Int(n, "start", 0), end = Attributes.Int(n, "end", r);
                    start = Math.Clamp(start < 0 ? start + r : start, 0, r);
                    end = Math.Clamp(end < 0 ? end + r : end, 0, r);
                    shape = [Math.Max(0, end - start)];
                }
                type = (int)TensorProto.Types.DataType.Int64;
                break;
            case "Gather":
                // data [d…] with the axis replaced by indices' shape.
                type = T(0);
                if (S(0) is { Length: > 0 } gd && S(1) is { } gi && Attributes.Int(n, "axis", 0) is var ga && ga >= -gd.Length && ga < gd.Length)
                {
                    int a = (int)(ga < 0 ? ga + gd.Length : ga);
                    shape = [.. gd[..a], .. gi, .. gd[(a + 1)..]];
                }
                break;
            case "GlobalAveragePool" or "GlobalMaxPool" or "GlobalLpPool":
                type = T(0);
                if (S(0) is { Length: >= 2 } g) shape = g.Select((d, i) => i < 2 ? d : 1).ToArray();
                break;
            case "Gemm":
                // [M, N]: A [M, K] (transposed when transA ≠ 0, as ORT reads it), B [K, N] (likewise transB).
                type = T(0);
                shape = [-1, -1];
                if (S(0) is [var a0, var a1]) shape[0] = Attributes.Int(n, "transA", 0) != 0 ? a1 : a0;
                if (S(1) is [var b0, var b1]) shape[1] = Attributes.Int(n, "transB", 0) != 0 ? b0 : b1;
                break;
            case "Flatten": shape = [-1, -1]; type = T(0); break;
            case "MatMul":
                type = T(0);
                if (S(0) is { Length: > 0 } ma && S(1) is { Length: > 0 } mb) // a scalar operand is invalid: nothing follows
                {
                    int ra = ma.Length, rb = mb.Length;
                    shape = Unknown(ra == 1 && rb == 1 ? 0 : ra == 1 ? rb - 1 : rb == 1 ? ra - 1 : Math.Max(ra, rb));
                    // The matrix dims: [.., M, N] from A [.., M, K] and B [.., K, N] (a 1-D operand drops its own).
                    if (shape!.Length >= 1 && rb >= 2) shape[^1] = mb[^1];
                    if (ra >= 2) shape[rb >= 2 ? ^2 : ^1] = ma[^2];
                }
                break;
            case "Cast": shape = S(0); type = (int)Attributes.Int(n, "to", 0); break;
            case "ReduceMean" or "ReduceSum" or "ReduceMax" or "ReduceMin" or "ReduceProd" or "ReduceL1" or "ReduceL2"
                or "ReduceLogSum" or "ReduceLogSumExp" or "ReduceSumSquare" or "ArgMax" or "ArgMin":
                type = n.OpType.StartsWith("Arg", StringComparison.Ordinal) ? (int)TensorProto.Types.DataType.Int64 : T(0);
                if (S(0) is { } rx) shape = Reduced(index, n, rx);
                break;
            case "Unsqueeze" or "Squeeze":
                type = T(0);
                if (S(0) is { } before && Axes(index, n) is { } axes) shape = n.OpType == "Unsqueeze" ? Unsqueezed(before, axes) : Squeezed(before, axes);
                else if (n.OpType == "Squeeze" && S(0) is { } all && all.All(d => d >= 0) && Axes(index, n) is null && !HasAxesInput(n))
                    shape = all.Where(d => d != 1).ToArray();
                break;
            case "Reshape":
                type = T(0);
                if (n.Input.Count > 1 && index.TryGetConstant(n.Input[1], out var target, out _) && target.Dims.Count == 1)
                    shape = ReshapeShape(index.Model.ReadInt64s(target), S(0), Attributes.Int(n, "allowzero", 0) != 0);
                else if (n.Input.Count > 1 && index.Producer(n.Input[1]) is { OpType: "Shape" } s && s.Attribute.Count == 0 && s.Input.Count == 1)
                    shape = shapeOf(s.Input[0]);
                else if (n.Input.Count > 1 && ConcatTarget(index, n.Input[1], shapeOf) is { } pieces)
                    shape = ReshapeShape(pieces, S(0), Attributes.Int(n, "allowzero", 0) != 0);
                else if (S(1) is [var length and >= 0 and <= MaxRank]) shape = Unknown((int)length); // rank = the shape input's length
                break;
        }
        return (shape, type);
    }

    static long[]? Unknown(int? rank) => rank is { } r ? Enumerable.Repeat(-1L, r).ToArray() : null;

    /// <summary>Concat: rank of any input whose rank is known; along the axis the sum when every input's dim is known, other
    /// dims from any input that knows them.</summary>
    static long[]? ConcatShape(NodeProto n, List<long[]?> inputs)
    {
        if (inputs.FirstOrDefault(i => i != null) is not { } first) return null;
        int rank = first.Length;
        long axis = Attributes.Int(n, "axis", 0);
        if (inputs.Any(i => i != null && i.Length != rank) || axis < -rank || axis >= rank) return Unknown(rank);
        int a = (int)(axis < 0 ? axis + rank : axis);
        var result = new long[rank];
        for (int d = 0; d < rank; d++)
            result[d] = d == a
                ? inputs.All(i => i != null && i[d] >= 0) ? inputs.Sum(i => i![d]) : -1
                : inputs.Select(i => i?[d] ?? -1).FirstOrDefault(v => v >= 0, -1);
        return result;
    }

    /// <summary>Ranks above this are not inferred from a tensor's length (no real model has them; a lying one costs memory).</summary>
    const long MaxRank = 64;

    /// <summary>Entry of a Reshape target whose value is not known (neither a dim nor 0 nor −1).</summary>
    const long UnknownEntry = long.MinValue;

    /// <summary>A Reshape target made by Concat of 1-D pieces: constants' values, <see cref="UnknownEntry"/> for the
    /// entries of a computed piece of known length (Shape → Gather → Unsqueeze); null when a length is not known.</summary>
    static long[]? ConcatTarget(GraphIndex index, string name, Func<string, long[]?> shapeOf)
    {
        if (index.Producer(name) is not { OpType: "Concat" } concat || !Attributes.IsDefaultDomain(concat)
            || Attributes.Int(concat, "axis", 0) is not (0 or -1)) return null;
        var target = new List<long>();
        foreach (var piece in concat.Input)
        {
            if (piece.Length == 0) return null;
            if (index.TryGetConstant(piece, out var t, out _))
            {
                if (t.Dims.Count != 1 || t.DataType != (int)TensorProto.Types.DataType.Int64) return null;
                target.AddRange(index.Model.ReadInt64s(t));
            }
            else if (shapeOf(piece) is [var length and >= 0 and <= MaxRank]) target.AddRange(Enumerable.Repeat(UnknownEntry, (int)length));
            else return null;
        }
        return target.ToArray();
    }

    /// <summary>Unsqueeze/Squeeze axes from the attribute (opset &lt; 13) or a constant input, or null.</summary>
    static long[]? Axes(GraphIndex index, NodeProto n) =>
        Attributes.Ints(n, "axes")?.ToArray()
        ?? (n.Input.Count > 1 && n.Input[1].Length > 0 && index.TryGetConstant(n.Input[1], out var t, out _) ? index.Model.ReadInt64s(t) : null);

    static bool HasAxesInput(NodeProto n) => n.Input.Count > 1 && n.Input[1].Length > 0;

    /// <summary>A reduction: the axes (ArgMax/ArgMin: `axis`, default 0; else `axes` or a constant input; none: all,
    /// or none with noop_with_empty_axes) become 1 (keepdims, the default) or go; null when they are not known.</summary>
    static long[]? Reduced(GraphIndex index, NodeProto n, long[] x)
    {
        bool keep = Attributes.Int(n, "keepdims", 1) != 0;
        long[]? axes = n.OpType.StartsWith("Arg", StringComparison.Ordinal) ? [Attributes.Int(n, "axis", 0)] : Axes(index, n);
        if (axes is null && HasAxesInput(n)) return keep ? Unknown(x.Length) : null;
        if (axes is null || axes.Length == 0)
        {
            if (Attributes.Int(n, "noop_with_empty_axes", 0) != 0) return x;
            axes = Enumerable.Range(0, x.Length).Select(a => (long)a).ToArray();
        }
        var at = axes.Select(a => a < 0 ? a + x.Length : a).ToHashSet();
        if (at.Any(a => a < 0 || a >= x.Length)) return null;
        return keep ? x.Select((d, i) => at.Contains(i) ? 1 : d).ToArray() : x.Where((_, i) => !at.Contains(i)).ToArray();
    }

    /// <summary>Unsqueeze: 1s inserted at the axes (counted in the output's rank); null for axes out of range or repeated.</summary>
    static long[]? Unsqueezed(long[] x, long[] axes)
    {
        int rank = x.Length + axes.Length;
        var at = axes.Select(a => a < 0 ? a + rank : a).ToHashSet();
        if (at.Count != axes.Length || at.Any(a => a < 0 || a >= rank)) return null;
        var result = new long[rank];
        for (int d = 0, k = 0; d < rank; d++) result[d] = at.Contains(d) ? 1 : x[k++];
        return result;
    }

    /// <summary>Squeeze: the axes removed; null for axes out of range, repeated, or of a known dim other than 1.</summary>
    static long[]? Squeezed(long[] x, long[] axes)
    {
        var at = axes.Select(a => a < 0 ? a + x.Length : a).ToHashSet();
        if (at.Count != axes.Length || at.Any(a => a < 0 || a >= x.Length || x[a] is >= 0 and not 1)) return null;
        return x.Where((_, d) => !at.Contains(d)).ToArray();
    }

    /// <summary>Numpy broadcast of two shapes; a dim is known where it follows (d and 1 → d; d and unknown → d when d ≠ 1).</summary>
    static long[] Broadcast(long[] a, long[] b)
    {
        int rank = Math.Max(a.Length, b.Length);
        var result = new long[rank];
        for (int i = 0; i < rank; i++)
        {
            long x = i < rank - a.Length ? 1 : a[i - (rank - a.Length)], y = i < rank - b.Length ? 1 : b[i - (rank - b.Length)];
            result[i] = x == y ? x : x == 1 ? y : y == 1 ? x : x < 0 ? y : y < 0 ? x : -1;
        }
        return result;
    }

    /// <summary>Conv: [N, M, spatial…] from X [N, C, in…] and W [M, C/g, k…]; each spatial dim where all it needs is known.</summary>
    static long[]? ConvShape(NodeProto n, long[]? x, long[]? w)
    {
        // X's rank is W's in a valid model.
        int rank = x?.Length ?? w?.Length ?? -1;
        if (rank < 0) return null;
        if (x is null && w is { Length: >= 3 }) return [-1, w[0], .. Enumerable.Repeat(-1L, rank - 2)];
        var result = Enumerable.Repeat(-1L, rank).ToArray();
        if (x is null || w is null || x.Length != w.Length || rank < 3) return result;
        result[0] = x[0];
        result[1] = w[0];
        int spatial = rank - 2;
        var strides = Attributes.Ints(n, "strides"); var dilations = Attributes.Ints(n, "dilations");
        var pads = Attributes.Ints(n, "pads"); var kernel = Attributes.Ints(n, "kernel_shape");
        string autoPad = Attributes.Find(n, "auto_pad") is { } a ? a.S.ToStringUtf8() : "NOTSET";
        for (int i = 0; i < spatial; i++)
        {
            long input = x[2 + i], k = kernel is { } ks && ks.Count == spatial ? ks[i] : w[2 + i];
            long s = strides is { Count: > 0 } ? (strides.Count == spatial ? strides[i] : -1) : 1;
            long d = dilations is { Count: > 0 } ? (dilations.Count == spatial ? dilations[i] : -1) : 1;
            long p = pads is { Count: > 0 } ? (pads.Count == 2 * spatial ? pads[i] + pads[i + spatial] : -1) : 0;
            if (input < 0 || k < 1 || s < 1 || d < 1 || p < 0) continue;
            long span = d * (k - 1) + 1;
            result[2 + i] = autoPad switch
            {
                "SAME_UPPER" or "SAME_LOWER" => (input + s - 1) / s,
                "VALID" => input >= span ? (input - span) / s + 1 : -1,
                "NOTSET" or "" => input + p >= span ? (input + p - span) / s + 1 : -1,
                _ => -1,
            };
        }
        return result;
    }

    /// <summary>Reshape to a target: positive entries as given, 0 copies the input's dim (unless allowzero), −1 is what
    /// remains when every other dim is known; an <see cref="UnknownEntry"/> is an unknown dim (and leaves −1 open).</summary>
    static long[] ReshapeShape(long[] target, long[]? input, bool allowZero)
    {
        var result = new long[target.Length];
        int inferred = -1;
        for (int i = 0; i < target.Length; i++)
        {
            long t = target[i];
            if (t > 0 || (t == 0 && allowZero)) result[i] = t;
            else if (t == 0) result[i] = input != null && i < input.Length ? input[i] : -1;
            else { result[i] = -1; inferred = t == -1 && inferred == -1 ? i : -2; }
        }
        if (inferred >= 0 && input != null && input.All(d => d >= 0) && result.Where((_, i) => i != inferred).All(d => d > 0))
        {
            long total = input.Aggregate(1L, (p, d) => p * d), rest = result.Where((_, i) => i != inferred).Aggregate(1L, (p, d) => p * d);
            if (total % rest == 0) result[inferred] = total / rest;
        }
        return result;
    }

    /// <summary>A declared shape as dims (-1 where symbolic or absent), or null when the rank is not declared.</summary>
    internal static long[]? Shape(TypeProto? t) =>
        t is { TensorType.Shape: { } shape } ? shape.Dim.Select(d => d.HasDimValue && d.DimValue >= 0 ? d.DimValue : -1).ToArray() : null;

    /// <summary>Same rank, and equal wherever both know a dim.</summary>
    internal static bool Compatible(long[] a, long[] b)
    {
        if (a.Length != b.Length) return false;
        for (int i = 0; i < a.Length; i++) if (a[i] >= 0 && b[i] >= 0 && a[i] != b[i]) return false;
        return true;
    }

    /// <summary>Whether the declaration of <paramref name="name"/> contradicts the propagated shape.</summary>
    public bool Contradicts(string name) => _contradicted.Contains(name);

    /// <summary>Best known shape: propagated, else constant or binding declaration, else a hint; null when the rank is unknown.</summary>
    public long[]? ShapeOf(GraphIndex index, string name)
    {
        if (_shape.TryGetValue(name, out var s)) return s;
        if (index.Defines(name) || index.Parent is null)
            return index.TryGetConstant(name, out var t, out _) ? t.Dims.ToArray() : Shape(index.RawDeclaredType(name));
        return index.Parent.Shape(name);
    }

    public int? Rank(GraphIndex index, string name) => ShapeOf(index, name)?.Length;

    /// <summary>The shape as the graph proves it: propagated from constants and the main graph's declared inputs (which
    /// ORT enforces) only, never from a value_info, output or body-input declaration; null when that leaves the rank open.</summary>
    public long[]? ProvenShapeOf(GraphIndex index, string name)
    {
        if (_proven.TryGetValue(name, out var s)) return s;
        if (index.Defines(name) || index.Parent is null)
            return index.TryGetConstant(name, out var t, out _) ? t.Dims.ToArray() : Shape(index.BindingDeclaredType(name));
        return index.Parent.ProvenShape(name);
    }

    public int? ElemType(GraphIndex index, string name) =>
        _type.TryGetValue(name, out int t) ? t : index.DeclaredElemType(name);
}
