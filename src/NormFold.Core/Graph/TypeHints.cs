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
        "SpaceToDepth", "Tile",
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
            case "Slice": shape = SliceShape(index, n, S(0)); type = T(0); break;
            case "Concat": shape = ConcatShape(n, Enumerable.Range(0, n.Input.Count).Select(S).ToList()); type = T(0); break;
            case "Expand":
                // The broadcast of X's shape with the constant shape (rank max of the two).
                type = T(0);
                if (S(0) is { } ex && n.Input.Count > 1 && index.TryGetConstant(n.Input[1], out var to) && to.Dims.Count == 1 && to.Dims[0] <= MaxRank)
                    shape = Broadcast(ex, index.Model.ReadInt64s(to));
                else if (S(0) is { } ex2 && S(1) is [var length and >= 0 and <= MaxRank]) shape = Unknown(Math.Max(ex2.Length, (int)length));
                break;
            case "Shape":
                // [rank of X], sliced by start/end (opset 15).
                if (S(0) is { } sx) shape = [ShapeRange(n, sx.Length).Count];
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
                // The target's values as far as they follow (constants, Shape dims through Slice/Gather/Concat/Cast).
                type = T(0);
                if (n.Input.Count > 1 && n.Input[1].Length > 0 && shapeOf(n.Input[1]) is null or [_] && ValuesOf(index, n.Input[1], shapeOf, new int[] { MaxValueNodes }) is { } target && target.Length <= MaxRank)
                    shape = ReshapeShape(target, S(0), Attributes.Int(n, "allowzero", 0) != 0);
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

    /// <summary>How many producers one <see cref="ValuesOf"/> follows (a shape computation is a few nodes; a cycle in an
    /// invalid model, or a chain of Concats each reading the one before twice, ends).</summary>
    const int MaxValueNodes = 64;

    /// <summary>
    /// The values of a small integer tensor (flattened), as far as they follow, like ONNX's partial data propagation:
    /// a constant's; Shape(X)'s dims where X's are known; carried through Slice and Gather (constant indices), Concat
    /// (axis 0), Cast between int32/int64, Unsqueeze, Squeeze and Identity; <see cref="UnknownEntry"/> for each value
    /// not known (every value of a tensor of known shape computed otherwise). Null when the element count is not known.
    /// </summary>
    long[]? ValuesOf(GraphIndex index, string name, Func<string, long[]?> shapeOf, int[] budget)
    {
        if (index.TryGetConstant(name, out var t))
            return IsInteger(t) && t.Dims.Count <= 1 && (t.Dims.Count == 0 || t.Dims[0] <= MaxRank) ? index.Model.ReadInt64s(t) : null;
        if (budget[0]-- > 0 && index.Producer(name) is { } n && Attributes.IsDefaultDomain(n) && n.Input.Count > 0 && n.Input[0].Length > 0
            && Computed(index, n, shapeOf, budget) is { } values)
            return values;
        if (shapeOf(name) is not { } shape) return null;
        long count = 1;
        foreach (long d in shape)
            if (d is < 0 or > MaxRank || (count *= d) > MaxRank) return null;
        return Enumerable.Repeat(UnknownEntry, (int)count).ToArray();
    }

    /// <summary><see cref="ValuesOf"/> for the output of <paramref name="n"/>, or null when its op carries no values.</summary>
    long[]? Computed(GraphIndex index, NodeProto n, Func<string, long[]?> shapeOf, int[] budget)
    {
        long[]? Input(int i) => i < n.Input.Count && n.Input[i].Length > 0 ? ValuesOf(index, n.Input[i], shapeOf, budget) : null;
        bool OneD(int i) => i < n.Input.Count && shapeOf(n.Input[i]) is [_];
        switch (n.OpType)
        {
            case "Shape":
                if (shapeOf(n.Input[0]) is not { } x) return null;
                var (start, count) = ShapeRange(n, x.Length);
                return x.Skip((int)start).Take((int)count).Select(d => d >= 0 ? d : UnknownEntry).ToArray();
            case "Identity" or "Unsqueeze" or "Squeeze":
                return Input(0);
            case "Cast":
                // Between int32 and int64: a value outside the target's range is not known (it wraps).
                long to = Attributes.Int(n, "to", 0);
                if (to is not ((long)TensorProto.Types.DataType.Int64 or (long)TensorProto.Types.DataType.Int32)
                    || ElemType(index, n.Input[0]) is not ((int)TensorProto.Types.DataType.Int64 or (int)TensorProto.Types.DataType.Int32)
                    || Input(0) is not { } cast) return null;
                return to == (long)TensorProto.Types.DataType.Int64 ? cast
                    : cast.Select(v => v is >= int.MinValue and <= int.MaxValue ? v : UnknownEntry).ToArray();
            case "Slice":
                if (!OneD(0) || Input(0) is not { } data || SliceParameters(index, n) is not { } p || p.Axes.Any(a => a is not (0 or -1))) return null;
                if (p.Starts.Length == 0) return data;
                if (p.Starts.Length > 1) return null; // a repeated axis: invalid
                return SliceRange(data.Length, p.Starts[0], p.Ends[0], p.Steps[0]) is { } r
                    ? Enumerable.Range(0, (int)r.Count).Select(j => data[r.First + j * p.Steps[0]]).ToArray() : null;
            case "Gather":
                if (!OneD(0) || Attributes.Int(n, "axis", 0) is not (0 or -1) || Input(0) is not { } from
                    || n.Input.Count < 2 || !index.TryGetConstant(n.Input[1], out var it) || it.Dims.Count > 1 || !IsInteger(it) || TensorData.ElementCount(it) > MaxRank) return null;
                var picked = new List<long>();
                foreach (long i in index.Model.ReadInt64s(it))
                {
                    if (i < -from.Length || i >= from.Length) return null; // invalid: ORT rejects it
                    picked.Add(from[i < 0 ? i + from.Length : i]);
                }
                return picked.ToArray();
            case "Concat":
                if (Attributes.Int(n, "axis", 0) is not (0 or -1)) return null;
                var all = new List<long>();
                for (int i = 0; i < n.Input.Count; i++)
                {
                    if (!OneD(i) || Input(i) is not { } piece) return null;
                    all.AddRange(piece);
                }
                return all.Count <= MaxRank ? all.ToArray() : null;
            default:
                return null;
        }
    }

    static bool IsInteger(TensorProto t) => t.DataType is (int)TensorProto.Types.DataType.Int64 or (int)TensorProto.Types.DataType.Int32;

    /// <summary>Shape's first dim and count from start/end (opset 15; clamped to the rank).</summary>
    static (long Start, long Count) ShapeRange(NodeProto n, long rank)
    {
        long start = Attributes.Int(n, "start", 0), end = Attributes.Int(n, "end", rank);
        start = Math.Clamp(start < 0 ? start + rank : start, 0, rank);
        end = Math.Clamp(end < 0 ? end + rank : end, 0, rank);
        return (start, Math.Max(0, end - start));
    }

    /// <summary>Slice's starts, ends, axes (normalized later) and steps: attributes before opset 10, constant inputs
    /// after (axes absent: 0, 1, …; steps absent: 1); null when one is not constant or their lengths differ.</summary>
    static (long[] Starts, long[] Ends, long[] Axes, long[] Steps)? SliceParameters(GraphIndex index, NodeProto n)
    {
        long[]? Read(int i)
        {
            if (i >= n.Input.Count || n.Input[i].Length == 0) return [];
            return index.TryGetConstant(n.Input[i], out var t) && t.Dims.Count == 1 && t.Dims[0] <= MaxRank && IsInteger(t) ? index.Model.ReadInt64s(t) : null;
        }
        long[]? starts, ends, axes, steps;
        if (index.Opset < 10)
        {
            starts = Attributes.Ints(n, "starts")?.ToArray(); ends = Attributes.Ints(n, "ends")?.ToArray();
            axes = Attributes.Ints(n, "axes")?.ToArray() ?? []; steps = [];
        }
        else
        {
            starts = Read(1); ends = Read(2); axes = Read(3); steps = Read(4);
            if (n.Input.Count < 3 || n.Input[1].Length == 0 || n.Input[2].Length == 0) return null;
        }
        if (starts is null || ends is null || axes is null || steps is null || ends.Length != starts.Length
            || axes.Length is var na && na != 0 && na != starts.Length || steps.Length is var ns && ns != 0 && ns != starts.Length) return null;
        if (axes.Length == 0) axes = Enumerable.Range(0, starts.Length).Select(a => (long)a).ToArray();
        if (steps.Length == 0) steps = Enumerable.Repeat(1L, starts.Length).ToArray();
        return (starts, ends, axes, steps);
    }

    /// <summary>The elements a Slice takes from a dim of <paramref name="dim"/>: the first index and how many (step
    /// apart), with ONNX's clamping (step &gt; 0: start and end to [0, dim]; step &lt; 0: start to [0, dim − 1], end to
    /// [−1, dim − 1]); null for a step of 0.</summary>
    static (long First, long Count)? SliceRange(long dim, long start, long end, long step)
    {
        if (step is 0 or long.MinValue) return null;
        if (dim == 0) return (0, 0);
        if (start < 0) start += dim;
        if (end < 0) end += dim;
        if (step > 0)
        {
            start = Math.Clamp(start, 0, dim); end = Math.Clamp(end, 0, dim);
            return (start, end > start ? (end - start - 1) / step + 1 : 0);
        }
        start = Math.Clamp(start, 0, dim - 1); end = Math.Clamp(end, -1, dim - 1);
        return (start, start > end ? (start - end - 1) / -step + 1 : 0);
    }

    /// <summary>Slice: X's shape with each sliced dim's length where the dim and the parameters are known; X's rank otherwise.</summary>
    static long[]? SliceShape(GraphIndex index, NodeProto n, long[]? x)
    {
        if (x is null) return null;
        var result = x.ToArray();
        if (SliceParameters(index, n) is not { } p) return Unknown(x.Length);
        var seen = new HashSet<long>();
        for (int i = 0; i < p.Starts.Length; i++)
        {
            long a = p.Axes[i] < 0 ? p.Axes[i] + x.Length : p.Axes[i];
            if (a < 0 || a >= x.Length || !seen.Add(a)) return Unknown(x.Length); // invalid: ORT rejects it
            result[a] = x[a] >= 0 && SliceRange(x[a], p.Starts[i], p.Ends[i], p.Steps[i]) is { } r ? r.Count : -1;
        }
        return result;
    }

    /// <summary>Unsqueeze/Squeeze axes from the attribute (opset &lt; 13) or a constant input, or null.</summary>
    static long[]? Axes(GraphIndex index, NodeProto n) =>
        Attributes.Ints(n, "axes")?.ToArray()
        ?? (n.Input.Count > 1 && n.Input[1].Length > 0 && index.TryGetConstant(n.Input[1], out var t) ? index.Model.ReadInt64s(t) : null);

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
            return index.TryGetConstant(name, out var t) ? t.Dims.ToArray() : Shape(index.RawDeclaredType(name));
        return index.Parent.Shape(name);
    }

    public int? Rank(GraphIndex index, string name) => ShapeOf(index, name)?.Length;

    /// <summary>The shape as the graph proves it: propagated from constants and the main graph's declared inputs (which
    /// ORT enforces) only, never from a value_info, output or body-input declaration; null when that leaves the rank open.</summary>
    public long[]? ProvenShapeOf(GraphIndex index, string name)
    {
        if (_proven.TryGetValue(name, out var s)) return s;
        if (index.Defines(name) || index.Parent is null)
            return index.TryGetConstant(name, out var t) ? t.Dims.ToArray() : Shape(index.BindingDeclaredType(name));
        return index.Parent.ProvenShape(name);
    }

    /// <summary>For a tensor whose rank is not proven: where the proof stops, walking back through the first input of each
    /// producer whose rank is not proven either, to a node whose inputs' ranks all are (its op, or its parameters, give
    /// no rank: Add with an unproven operand leads on to that operand), a graph input, or an enclosing graph's tensor.</summary>
    internal string RankLostAt(GraphIndex index, string name)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (string current = name; seen.Add(current);)
        {
            if (!index.Defines(current) && index.Parent != null) return $"the proof stops at '{current}', from an enclosing graph";
            if (index.Producer(current) is not { } p)
                return index.Parent is null ? $"the proof stops at graph input '{current}', which declares no shape"
                    : $"the proof stops at '{current}', an input of subgraph '{index.Path}' (its declared shape is no proof)";
            if (!Attributes.IsDefaultDomain(p))
                return $"the proof stops at {Attributes.Describe(p)} of domain '{p.Domain}', whose shapes NormFold does not infer";
            if (p.Input.FirstOrDefault(i => i.Length > 0 && ProvenShapeOf(index, i) is null) is not { } unproven)
                return $"the proof stops at {Attributes.Describe(p)}: its inputs' ranks are proven, but its output's rank does not follow from them and its constant parameters";
            current = unproven;
        }
        return $"the proof stops in a cycle through '{name}'";
    }

    public int? ElemType(GraphIndex index, string name) =>
        _type.TryGetValue(name, out int t) ? t : index.DeclaredElemType(name);
}
