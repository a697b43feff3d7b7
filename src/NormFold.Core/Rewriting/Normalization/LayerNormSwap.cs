using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.Normalization;

/// <summary>
/// X → ReduceMean(A) = m → Sub(X, m) = d → Pow(d, 2) → ReduceMean(A) → Add(ε) → Sqrt → Div(d, ·) [→ Mul(γ)] [→ Add(β)]
///   ⇒   LayerNormalization(X, γ, β; axis = first of A, epsilon = ε)
/// Variants: d computed by one Sub or two; Cast to float/double on d (before Pow and/or Div) with a Cast back to X's
/// type after Sqrt, Div, Mul or Add; axes as attribute or (opset ≥ 18) constant input; constants seen through
/// Unsqueeze; Mul/Add operands in either order.
/// Conditions: X's rank follows from the graph's inputs and constants (never from a value_info); A is the trailing
/// contiguous axes, keepdims = 1 on both reductions; the exponent is a constant 2 and ε a
/// constant scalar; every intermediate is read only inside the pattern; γ, β are constants broadcasting to the
/// normalized shape, or tensors (graph inputs, computed) whose proven shape is the normalized shape, of X's type,
/// not computed from the pattern (absent ones are 1 and 0; a Mul/Add on a computed tensor of unknown shape stays after
/// the new node, one on a graph input of unknown shape is refused); X's normalized dims are known where γ/β are wider
/// than 1 (else they might widen a dim of 1); X is not double (LayerNormalization's stash_type, the precision of its mean
/// and variance, is float or bfloat16, and ε a float; ONNX Runtime happens to compute double in double); opset ≥ 17 or
/// may be raised to it.
/// Algebra: LayerNormalization computes (X − E[X]) / √(E[(X − E[X])²] + ε) · γ + β over A, exactly the decomposition.
/// </summary>
internal sealed class LayerNormSwap : RewriteRule<LayerNormSwap.LayerNormPlan>
{
    const long Version = 17;

    public sealed record LayerNormPlan(NodeProto Anchor, string X, string Output, IReadOnlyList<NodeProto> Removed, long Axis,
        float Epsilon, int DataType, long[] NormalizedShape, double[]? Scale, double[]? Bias, string? ScaleTensor = null, string? BiasTensor = null)
        : Plan(Anchor, null)
    {
        public override string Describe() =>
            $"replaced {Removed.Count} nodes by LayerNormalization-{Version} (axis={Axis}, epsilon={Epsilon:G9}, normalized shape [{string.Join(", ", NormalizedShape)}])";
    }

    public override string Name => "LayerNormSwap";
    public override IReadOnlyCollection<string> AnchorOpTypes { get; } = ["ReduceMean"];

    public override Match TryMatch(RewriteContext context, NodeProto mean)
    {
        var g = context.Graph;
        if (mean.Input.Count == 0 || mean.Output.Count == 0 || !ReferenceEquals(g.Producer(mean.Output[0]), mean))
            return Match.Refuse(SkipReason.PatternMismatch, $"{Attributes.Describe(mean)} is no longer in the graph (removed by an earlier rewrite)");
        string x = mean.Input[0], m = mean.Output[0];
        var subs = g.Consumers(m).Where(n => n.OpType == "Sub" && Attributes.IsDefaultDomain(n) && n.Input.Count == 2
            && n.Input[0] == x && n.Input[1] == m).Distinct().ToList();
        if (subs.Count == 0)
            return new Match.NoCandidate(VarianceOf(g, mean) is { } owner
                ? $"the variance reduction of the LayerNorm pattern at {Attributes.Describe(owner)}, decided there"
                : $"'{m}' is not subtracted from the ReduceMean's input '{x}': a plain reduction, not a LayerNorm");
        if (g.IsGraphOutput(m) || g.Consumers(m).Count != subs.Count)
            return Outside(m);

        // LayerNormalization's axis counts from X's rank: it must follow from the graph (its inputs and constants), not
        // from a value_info, which may lie (an axis −1 on an X of rank 0 is a model ORT rejects).
        if (g.ProvenShape(x) is not { } xShape)
            return Match.UnprovenRank(g, x);
        int rank = xShape.Length;
        if (TrailingAxes(g, mean, rank, out int k) is { } badAxes) return badAxes;

        // d and its Casts: read only by one Pow (or Mul(d, d)) and one Div.
        var removed = new List<NodeProto> { mean };
        removed.AddRange(subs);
        var dLike = subs.Select(s => s.Output[0]).ToList();
        var castTo = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var s in subs)
            foreach (var r in g.Consumers(s.Output[0]).Distinct())
                if (r.OpType == "Cast" && Attributes.IsDefaultDomain(r) && Attributes.Int(r, "to", 0) is ElementType.Float or ElementType.Double)
                {
                    removed.Add(r); dLike.Add(r.Output[0]); castTo[r.Output[0]] = (int)Attributes.Int(r, "to", 0);
                }
        NodeProto? square = null, div = null;
        bool outside = false;
        foreach (var name in dLike)
        {
            if (g.IsGraphOutput(name)) return Outside(name);
            foreach (var r in g.Consumers(name).Distinct())
            {
                if (removed.Any(n => ReferenceEquals(n, r))) continue;
                bool isDefault = Attributes.IsDefaultDomain(r) && r.Input.Count == 2 && r.Input[0] == name;
                if (isDefault && square is null && (r.OpType == "Pow" || (r.OpType == "Mul" && r.Input[1] == name))) square = r;
                else if (isDefault && div is null && r.OpType == "Div") div = r;
                else outside = true;
            }
        }
        if (square is null) return Match.Refuse(SkipReason.PatternMismatch, $"'{subs[0].Output[0]}' = X − mean is not squared by a Pow: not a LayerNorm");
        if (div is null) return Match.Refuse(SkipReason.PatternMismatch, $"'{subs[0].Output[0]}' = X − mean is not divided by a Div: not a LayerNorm");
        if (outside) return Match.Refuse(SkipReason.IntermediateUsedOutside, $"'{subs[0].Output[0]}' = X − mean (or its Cast) is also read outside the pattern");
        if (square.OpType == "Pow")
        {
            if (!Patterns.TryConstant(g, square.Input[1], out var e, out var eDims))
                return Match.Refuse(SkipReason.PatternMismatch, $"{Attributes.Describe(square)}'s exponent is not a constant");
            if (e.Length != 1 || e[0] != 2 || eDims.Length > rank)
                return Match.Refuse(SkipReason.PatternMismatch, $"{Attributes.Describe(square)}'s exponent is [{string.Join(", ", e.Take(4))}], not the scalar 2");
        }
        removed.Add(square);

        // Variance: ReduceMean(A) → Add(ε) → Sqrt [→ Cast] → the same Div.
        if (Follow(g, square.Output[0], "ReduceMean") is not { } varMean) return NotFollowed(g, square.Output[0], "ReduceMean");
        if (TrailingAxes(g, varMean, rank, out int k2) is { } badVarAxes) return badVarAxes;
        if (k2 != k) return Match.Refuse(SkipReason.PatternMismatch, $"{Attributes.Describe(varMean)} reduces {k2} axes, the mean {k}");
        removed.Add(varMean);
        if (Follow(g, varMean.Output[0], "Add") is not { Input.Count: 2 } addEps) return NotFollowed(g, varMean.Output[0], "Add (ε)");
        string epsName = addEps.Input[0] == varMean.Output[0] ? addEps.Input[1] : addEps.Input[0];
        if (!Patterns.TryConstant(g, epsName, out var eps, out var epsDims))
            return Match.Refuse(SkipReason.ParameterNotConstant, $"ε ('{epsName}', added to the variance by {Attributes.Describe(addEps)}) is not a constant");
        if (eps.Length != 1 || epsDims.Length > rank)
            return Match.Refuse(SkipReason.PatternMismatch, $"ε ('{epsName}') is not a scalar");
        removed.Add(addEps);
        if (Follow(g, addEps.Output[0], "Sqrt") is not { } sqrt) return NotFollowed(g, addEps.Output[0], "Sqrt");
        removed.Add(sqrt);
        string std = sqrt.Output[0];
        if (Follow(g, std, "Cast") is { } stdCast && ElementType.IsFoldable((int)Attributes.Int(stdCast, "to", 0)))
        {
            removed.Add(stdCast); std = stdCast.Output[0];
        }
        if (Patterns.SoleReader(g, std) != div || div.Input[1] != std)
            return g.IsGraphOutput(std) || g.Consumers(std).Count > 1 ? Outside(std)
                : Match.Refuse(SkipReason.PatternMismatch, $"'{std}' = √(var + ε) does not divide X − mean");
        removed.Add(div);

        if (g.ElemType(x) is not { } type || !ElementType.IsFoldable(type))
            return Match.Refuse(SkipReason.UnsupportedDataType, $"the element type of '{x}' is not known or not floating point");
        // LayerNormalization computes mean and variance in stash_type, float or bfloat16 (no double), with a float ε.
        if (type == ElementType.Double)
            return Match.Refuse(SkipReason.UnsupportedDataType, $"'{x}' is double: LayerNormalization computes its mean and variance in float (stash_type allows no double), with a float epsilon");

        // Tail: [Cast back] [Mul(γ)] [Cast back] [Add(β)] [Cast back].
        string output = div.Output[0];
        int current = castTo.GetValueOrDefault(div.Input[0], type);
        void CastBack()
        {
            if (current != type && Follow(g, output, "Cast") is { } c && Attributes.Int(c, "to", 0) == type)
            {
                removed.Add(c); output = c.Output[0]; current = type;
            }
        }
        var affine = new List<(double[] Values, long[] Dims, NodeProto Node)>();
        var tensors = new List<(string Name, long[] Dims, NodeProto Node)>();
        double[]? gamma = null, beta = null;
        string? gammaTensor = null, betaTensor = null;
        CastBack();
        foreach (var op in new[] { "Mul", "Add" })
        {
            if (Follow(g, output, op) is not { Input.Count: 2 } node) continue;
            string other = node.Input[0] == output ? node.Input[1] : node.Input[0];
            if (other == output) break;
            if (!Patterns.TryConstant(g, other, out var values, out var dims))
            {
                // Not a constant: LayerNormalization takes γ/β as inputs all the same, when their shape is known to be
                // the normalized shape (checked below), their type is X's, and they do not come out of the pattern.
                if (g.ProvenShape(other) is { } otherDims && otherDims.All(d => d >= 0) && g.ElemType(other) == type && !Patterns.DependsOn(g, other, removed))
                {
                    tensors.Add((other, otherDims, node));
                    if (op == "Mul") gammaTensor = other; else betaTensor = other;
                    removed.Add(node); output = node.Output[0];
                    CastBack();
                    continue;
                }
                if (g.Producer(other) is null) // a graph input (or initializer fed as one) of unknown shape
                    return Match.Refuse(SkipReason.ParameterNotConstant, $"{(op == "Mul" ? "γ" : "β")} ('{other}', applied by {Attributes.Describe(node)}) is not a constant and its shape is not declared");
                break; // a computed operand of unknown shape: not γ/β, it stays after the new node
            }
            affine.Add((values, dims, node));
            if (op == "Mul") gamma = values; else beta = values;
            removed.Add(node); output = node.Output[0];
            CastBack();
        }
        if (current != type)
            return Match.Refuse(SkipReason.PatternMismatch,
                $"the pattern computes in {ElementType.Name(current)} and its result '{output}' is not cast back to {ElementType.Name(type)}, the type of '{x}'");

        // Normalized shape: from X's proven shape, else from γ/β.
        var shape = new long[k];
        for (int j = 0; j < k; j++) shape[j] = Math.Max(0, xShape[rank - k + j]);
        var fromX = (long[])shape.Clone();
        foreach (var (_, dims, node) in affine)
        {
            if (dims.Length > rank)
                return Match.Refuse(SkipReason.NotPerChannel, $"{Attributes.Describe(node)}'s constant has rank {dims.Length}, more than '{x}' ({rank})");
            for (int j = 0; j < k; j++)
            {
                int src = dims.Length - k + j;
                if (src < 0 || dims[src] == 1) continue;
                if (shape[j] == 0) shape[j] = dims[src];
                else if (shape[j] != dims[src])
                    return Match.Refuse(SkipReason.NotPerChannel, $"{Attributes.Describe(node)}'s constant [{string.Join(", ", dims)}] does not fit the normalized shape of '{x}'");
            }
        }
        foreach (var (name, dims, node) in tensors)
        {
            // Taken as they are: their shape must be the normalized shape exactly (when X's does not say it, theirs does).
            if (dims.Length == k && shape.Zip(dims).All(p => p.First == 0 || p.First == p.Second)) dims.CopyTo(shape, 0);
            else return Match.Refuse(SkipReason.NotPerChannel, $"{Attributes.Describe(node)}'s operand '{name}' has shape [{string.Join(", ", dims)}], not the normalized shape of '{x}' ([{string.Join(", ", shape.Select(d => d == 0 ? "?" : d.ToString()))}])");
        }
        if (shape.Any(d => d == 0))
            return Match.Refuse(SkipReason.UnknownRank, $"the normalized shape (last {k} dims) of '{x}' is not known from its declared shape or from γ/β");
        // γ/β of D > 1 on a dim of X that is not known: a dim of 1 would be widened to D by the Mul/Add, not by LayerNormalization.
        for (int j = 0; j < k; j++)
            if (fromX[j] == 0 && shape[j] > 1)
                return Match.Refuse(SkipReason.UnknownRank, $"dim {j - k} of '{x}' is not known: γ/β have {shape[j]} there and would broadcast a dim of 1 to {shape[j]}, which LayerNormalization does not");
        double[]? scale = gamma is null && gammaTensor is null ? Fill(shape, 1) : null, bias = beta is null && betaTensor is null ? Fill(shape, 0) : null;
        foreach (var (values, dims, node) in affine)
        {
            var expanded = Expand(values, dims, shape);
            if (expanded is null)
                return Match.Refuse(SkipReason.NotPerChannel, $"{Attributes.Describe(node)}'s constant [{string.Join(", ", dims)}] does not broadcast like the normalized shape [{string.Join(", ", shape)}]");
            if (node.OpType == "Mul") scale = expanded; else bias = expanded;
        }

        if (context.Opsets.Require(Version, "LayerNormalization", removed) is { } tooLow) return tooLow;
        if ((Affine.FoldedValues.NotFinite("γ", type, scale ?? []) ?? Affine.FoldedValues.NotFinite("β", type, bias ?? [])) is { } overflow) return overflow;
        return new Match.Planned(new LayerNormPlan(mean, x, output, removed, -k, (float)eps[0], type, shape, scale, bias, gammaTensor, betaTensor));
    }

    /// <summary>The sole reader of <paramref name="name"/> if it is a default-domain <paramref name="op"/>.</summary>
    static NodeProto? Follow(GraphIndex g, string name, string op) =>
        Patterns.SoleReader(g, name) is { } n && n.OpType == op && Attributes.IsDefaultDomain(n) ? n : null;

    static Match.Refused NotFollowed(GraphIndex g, string name, string what) =>
        g.IsGraphOutput(name) || g.Consumers(name).Count > 1 ? Outside(name)
            : Match.Refuse(SkipReason.PatternMismatch, $"'{name}' does not go to a {what}: not a LayerNorm");

    static Match.Refused Outside(string name) =>
        Match.Refuse(SkipReason.IntermediateUsedOutside, $"'{name}' is also read outside the LayerNorm pattern (or is a graph output)");

    /// <summary>Checks keepdims and that the reduced axes are the last <paramref name="k"/> ones.</summary>
    static Match.Refused? TrailingAxes(GraphIndex g, NodeProto rm, int rank, out int k)
    {
        k = 0;
        string who = Attributes.Describe(rm);
        if (Attributes.Int(rm, "keepdims", 1) != 1) return Match.Refuse(SkipReason.PatternMismatch, $"{who} has keepdims = 0");
        long[] axes;
        if (Attributes.Ints(rm, "axes") is { } attr) axes = attr.ToArray();
        else if (rm.Input.Count > 1 && rm.Input[1].Length > 0)
        {
            if (!g.TryGetConstant(rm.Input[1], out var t) || t.DataType != (int)TensorProto.Types.DataType.Int64)
                return Match.Refuse(SkipReason.PatternMismatch, $"{who}'s axes '{rm.Input[1]}' are not a constant");
            axes = g.Model.ReadInt64s(t);
        }
        else axes = [];
        if (axes.Length == 0)
        {
            if (Attributes.Int(rm, "noop_with_empty_axes", 0) != 0) return Match.Refuse(SkipReason.PatternMismatch, $"{who} reduces no axis");
            axes = Enumerable.Range(0, rank).Select(a => (long)a).ToArray();
        }
        var normalized = new HashSet<long>();
        foreach (long a in axes)
        {
            long n = a >= 0 ? a - rank : a;
            if (n < -rank || n >= 0) return Match.Refuse(SkipReason.PatternMismatch, $"{who}'s axis {a} is out of range for rank {rank}");
            normalized.Add(n);
        }
        k = normalized.Count;
        if (k == 0) return Match.Refuse(SkipReason.PatternMismatch, $"{who} reduces no axis (its input is a scalar)");
        if (k != axes.Length || normalized.Min() != -k)
            return Match.Refuse(SkipReason.PatternMismatch, $"{who} reduces axes [{string.Join(", ", axes)}], not the trailing contiguous axes");
        return null;
    }

    /// <summary>For a ReduceMean(Pow(X − mean, 2)): the mean's ReduceMean, to name it in the refusal.</summary>
    static NodeProto? VarianceOf(GraphIndex g, NodeProto rm)
    {
        if (g.Producer(rm.Input[0]) is not { OpType: "Pow" or "Mul" } sq) return null;
        var p = g.Producer(sq.Input[0]);
        if (p is { OpType: "Cast" }) p = g.Producer(p.Input[0]);
        return p is { OpType: "Sub", Input.Count: 2 } sub && g.Producer(sub.Input[1]) is { OpType: "ReduceMean" } owner
            && owner.Input.Count > 0 && owner.Input[0] == sub.Input[0] ? owner : null;
    }

    static double[] Fill(long[] shape, double v) => Enumerable.Repeat(v, (int)shape.Aggregate(1L, (a, b) => a * b)).ToArray();

    /// <summary>A constant broadcast to <paramref name="shape"/> (its dims right-aligned, extra leading dims 1), or null.</summary>
    static double[]? Expand(double[] values, long[] dims, long[] shape)
    {
        int k = shape.Length;
        for (int i = 0; i < dims.Length - k; i++) if (dims[i] != 1) return null;
        var strides = new long[k];
        long stride = 1;
        for (int j = k - 1; j >= 0; j--)
        {
            int src = dims.Length - k + j;
            long d = src >= 0 ? dims[src] : 1;
            if (d != 1 && d != shape[j]) return null;
            strides[j] = d == 1 ? 0 : stride;
            stride *= d;
        }
        var result = new double[shape.Aggregate(1L, (a, b) => a * b)];
        var index = new long[k];
        for (long i = 0; i < result.Length; i++)
        {
            long offset = 0;
            for (int j = 0; j < k; j++) offset += index[j] * strides[j];
            result[i] = values[offset];
            for (int j = k - 1; j >= 0 && ++index[j] == shape[j]; j--) index[j] = 0;
        }
        return result;
    }

    protected override Applied Apply(GraphEditor editor, LayerNormPlan plan) =>
        Patterns.ReplaceByNormalization(editor, plan.Anchor, plan.Removed, "LayerNormalization", plan.X, plan.Output, plan.DataType,
            plan.NormalizedShape, plan.Scale, plan.Bias, plan.ScaleTensor, plan.BiasTensor, Patterns.Int("axis", plan.Axis), Patterns.Float("epsilon", plan.Epsilon));
}
