using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.Normalization;

/// <summary>
/// X[N,C,…] → Reshape([0,G,−1]) → InstanceNormalization(scale = 1, B = 0, ε) → Reshape(Shape(X)) [→ Mul(γ)] [→ Add(β)]
///   ⇒   GroupNormalization(X, γ, β; num_groups = G, epsilon = ε)
/// Conditions: rank ≥ 3 proven (from the graph's inputs and constants, never from a value_info); the first Reshape's shape is constant [0 or N, G, −1] (or Concat of X's batch dim, G, −1);
/// the second restores X's shape (Shape(X), or X's proven static shape as a constant); IN's scale/bias are 1/0; every
/// intermediate is read only by the next node; γ, β are constants broadcasting per channel (Mul/Add on anything else
/// stay after the new node; absent ones are 1 and 0); G divides C, known from X (its shape, or the conv that made it),
/// never from γ/β (which may widen one channel to C).
/// Emits GroupNormalization-21 (γ, β per channel) when the opset is or may be raised to ≥ 21; GroupNormalization-18
/// (per group) only when γ and β are constant within each group — exact in both cases. GroupNormalization-21 computes
/// in stash_type (float by default): double X gets stash_type = double, as InstanceNormalization computes it.
/// </summary>
internal sealed class GroupNormSwap : RewriteRule<GroupNormSwap.GroupNormPlan>
{
    public sealed record GroupNormPlan(NodeProto Anchor, string X, string Output, IReadOnlyList<NodeProto> Removed, long Groups,
        float Epsilon, int DataType, double[] Scale, double[] Bias, int Version) : Plan(Anchor, null)
    {
        public override string Describe() => $"replaced {Removed.Count} nodes by GroupNormalization-{Version} (num_groups={Groups}, epsilon={Epsilon:G9})";
    }

    public override string Name => "GroupNormSwap";
    public override IReadOnlyCollection<string> AnchorOpTypes { get; } = ["InstanceNormalization"];

    public override Match TryMatch(RewriteContext context, NodeProto inorm)
    {
        var g = context.Graph;
        var r1 = inorm.Input.Count > 0 ? g.Producer(inorm.Input[0]) : null;
        if (r1 is not { OpType: "Reshape" } || !Attributes.IsDefaultDomain(r1))
            return new Match.NoCandidate($"input '{inorm.Input.FirstOrDefault()}' is not reshaped: a plain InstanceNormalization");
        string x = r1.Input[0];
        // X's rank and dims as the graph proves them (inputs, constants), never as a value_info says: a lying one would
        // make a Reshape to a different shape look like a restore.
        if (g.ProvenShape(x) is not { } xShape)
            return Match.UnprovenRank(g, x);
        int? rank = xShape.Length;
        if (rank < 3) return Match.Refuse(SkipReason.PatternMismatch, $"'{x}' has rank {rank}; GroupNormalization needs rank ≥ 3");
        if (GroupCount(g, r1, x) is not { } groups)
            return Match.Refuse(SkipReason.PatternMismatch, $"{Attributes.Describe(r1)} does not reshape '{x}' to [N, G, −1] with a constant G");

        if (inorm.Input.Count < 3 || !Patterns.TryConstant(g, inorm.Input[1], out var inScale, out _) || !Patterns.TryConstant(g, inorm.Input[2], out var inBias, out _))
            return Match.Refuse(SkipReason.ParameterNotConstant, $"{Attributes.Describe(inorm)}'s scale or bias is not constant");
        if (inScale.Any(v => v != 1) || inBias.Any(v => v != 0) || inScale.Length != groups || inBias.Length != groups)
            return Match.Refuse(SkipReason.InstanceNormNotIdentity, $"{Attributes.Describe(inorm)} has its own scale/bias (not {groups} ones and zeros)");

        if (Patterns.SoleReader(g, r1.Output[0]) != inorm)
            return Match.Refuse(SkipReason.IntermediateUsedOutside, $"'{r1.Output[0]}' is also read outside the pattern");
        if (Patterns.SoleReader(g, inorm.Output[0]) is not { OpType: "Reshape" } r2 || !Attributes.IsDefaultDomain(r2))
            return Match.Refuse(g.Consumers(inorm.Output[0]).Count > 1 || g.IsGraphOutput(inorm.Output[0]) ? SkipReason.IntermediateUsedOutside : SkipReason.PatternMismatch,
                $"'{inorm.Output[0]}' does not go (only) to a Reshape back to X's shape");
        if (!RestoresShape(g, r2, x))
            return Match.Refuse(SkipReason.ReshapeDoesNotRestore, $"{Attributes.Describe(r2)} does not reshape back to the shape of '{x}'");

        var removed = new List<NodeProto> { r1, inorm, r2 };
        string output = r2.Output[0];
        // From X alone: γ/β of C channels on an X of one channel would widen it, which GroupNormalization does not.
        long? channels = xShape[1] > 0 ? xShape[1] : Patterns.Channels(g, x);
        double[]? gamma = null, beta = null;
        // Absorb Mul(γ) and then Add(β) when they are per-channel constants and the only readers.
        if (Patterns.SoleReader(g, output) is { OpType: "Mul" } mul && Affine(g, mul, output, rank.Value, channels) is { } gv)
        {
            gamma = gv; removed.Add(mul); output = mul.Output[0];
        }
        if (Patterns.SoleReader(g, output) is { OpType: "Add" } add && Affine(g, add, output, rank.Value, channels) is { } bv)
        {
            beta = bv; removed.Add(add); output = add.Output[0];
        }
        if (channels is not { } c)
            return Match.Refuse(SkipReason.UnknownRank, $"the channel count of '{x}' is not known (no static shape, no conv weight to read it from; γ/β's would not do: they may widen one channel)");
        if (c % groups != 0)
            return Match.Refuse(SkipReason.GroupsDoNotDivideChannels, $"{groups} groups do not divide {c} channels");
        gamma ??= Enumerable.Repeat(1.0, (int)c).ToArray();
        beta ??= new double[c];
        if (g.ElemType(x) is not { } type || !ElementType.IsFoldable(type))
            return Match.Refuse(SkipReason.UnsupportedDataType, $"the element type of '{x}' is not known or not floating point");

        float epsilon = Attributes.Float(inorm, "epsilon", 1e-5f);
        if ((Rewriting.Affine.FoldedValues.NotFinite("γ", type, gamma) ?? Rewriting.Affine.FoldedValues.NotFinite("β", type, beta)) is { } overflow) return overflow;
        // GroupNormalization-21 takes γ, β per channel; -18 per group, exact only when they are constant within groups.
        var opsets = context.Opsets;
        var replaced = Patterns.WithConstantFeeders(g, removed);
        if (opsets.Reachable >= 21)
            return opsets.Require(21, "GroupNormalization-21", replaced) as Match
                ?? new Match.Planned(new GroupNormPlan(inorm, x, output, removed, groups, epsilon, type, gamma, beta, 21));
        if (opsets.Reachable >= 18)
        {
            if (!GroupwiseConstant(gamma, groups) || !GroupwiseConstant(beta, groups))
                return Match.Refuse(SkipReason.NotPerChannel, $"GroupNormalization-18 takes one γ and β per group, these vary within groups; opset 21 takes them per channel (a target opset of 21 allows raising it)");
            long size = c / groups;
            return opsets.Require(18, "GroupNormalization", replaced) as Match
                ?? new Match.Planned(new GroupNormPlan(inorm, x, output, removed, groups, epsilon, type,
                    Enumerable.Range(0, (int)groups).Select(k => gamma[k * size]).ToArray(),
                    Enumerable.Range(0, (int)groups).Select(k => beta[k * size]).ToArray(), 18));
        }
        return opsets.Require(21, "GroupNormalization with per-channel γ, β (18 with per-group ones)", replaced)!;
    }

    /// <summary>G from Reshape(X, [0|N, G, −1]), the shape constant or Concat(batch dim of X, [G], [−1]).</summary>
    static long? GroupCount(GraphIndex g, NodeProto reshape, string x)
    {
        if (Attributes.Int(reshape, "allowzero", 0) != 0) return null;
        if (ConstantTarget(g, reshape.Input[1]) is { } s)
        {
            bool batchOk = s.Length == 3 && (s[0] == 0 || (g.ProvenShape(x) is [var n, ..] && n >= 0 && n == s[0]));
            return batchOk && s[1] > 0 && s[2] == -1 ? s[1] : null;
        }
        if (g.Producer(reshape.Input[1]) is { OpType: "Concat" } concat && concat.Input.Count == 3)
        {
            long? Scalar(string n) => g.TryGetConstant(n, out var c) && TensorData.ElementCount(c) == 1 ? g.Model.ReadInt64s(c)[0] : null;
            bool batch = Scalar(concat.Input[0]) == 0 || IsBatchOf(g, concat.Input[0], x);
            return batch && Scalar(concat.Input[1]) is > 0 and var gCount && Scalar(concat.Input[2]) == -1 ? gCount : null;
        }
        return null;
    }

    /// <summary>A constant int64 shape, or one cast to int64 from a floating-point constant of whole numbers (torch at
    /// opset ≤ 8, which had no int64 Constant: Cast(Constant [0., G, −1.])); null otherwise.</summary>
    static long[]? ConstantTarget(GraphIndex g, string name)
    {
        if (g.TryGetConstant(name, out var t))
            return t.DataType == (int)TensorProto.Types.DataType.Int64 ? g.Model.ReadInt64s(t) : null;
        if (g.Producer(name) is not { OpType: "Cast" } cast || !Attributes.IsDefaultDomain(cast) || cast.Input.Count != 1
            || Attributes.Int(cast, "to", 0) != (long)TensorProto.Types.DataType.Int64
            || !Patterns.TryConstant(g, cast.Input[0], out var values, out var dims) || dims.Length != 1)
            return null;
        // Whole numbers well inside float's exact range convert exactly, whatever the rounding.
        return values.All(v => v == Math.Floor(v) && Math.Abs(v) < 1 << 24) ? values.Select(v => (long)v).ToArray() : null;
    }

    /// <summary>Shape(X)[0:1] or Gather(Shape(X), 0) (possibly unsqueezed).</summary>
    static bool IsBatchOf(GraphIndex g, string name, string x)
    {
        var p = g.Producer(name);
        if (p is { OpType: "Unsqueeze" }) p = g.Producer(p.Input[0]);
        if (p is { OpType: "Gather" } && g.TryGetConstant(p.Input[1], out var idx) && g.Model.ReadInt64s(idx) is [0])
            return g.Producer(p.Input[0]) is { OpType: "Shape" } s && s.Input[0] == x && s.Attribute.Count == 0;
        return false;
    }

    static bool RestoresShape(GraphIndex g, NodeProto reshape, string x)
    {
        if (Attributes.Int(reshape, "allowzero", 0) != 0) return false;
        if (g.Producer(reshape.Input[1]) is { OpType: "Shape" } shape && shape.Input[0] == x
            && Attributes.Int(shape, "start", 0) == 0 && Attributes.Find(shape, "end") is null)
            return true;
        if (g.TryGetConstant(reshape.Input[1], out var t) && g.ProvenShape(x) is { } proven && proven.All(d => d >= 0))
            return g.Model.ReadInt64s(t).SequenceEqual(proven);
        return false;
    }

    /// <summary>The per-channel constant the node applies to <paramref name="input"/>, or null (also when X's channel
    /// count is not known).</summary>
    static double[]? Affine(GraphIndex g, NodeProto node, string input, int rank, long? channels)
    {
        if (!Attributes.IsDefaultDomain(node) || node.Input.Count != 2) return null;
        string other = node.Input[0] == input ? node.Input[1] : node.Input[0];
        if (!Patterns.TryConstant(g, other, out var values, out var dims) || dims.Length > rank) return null;
        return channels is { } c ? Patterns.PerChannel(values, dims, rank, c) : null;
    }

    static bool GroupwiseConstant(double[] v, long groups)
    {
        long size = v.Length / groups;
        for (int i = 0; i < v.Length; i++) if (v[i] != v[i / size * size]) return false;
        return true;
    }

    protected override Applied Apply(GraphEditor editor, GroupNormPlan plan)
    {
        var attributes = new List<AttributeProto> { Patterns.Float("epsilon", plan.Epsilon), Patterns.Int("num_groups", plan.Groups) };
        if (plan.Version >= 21 && plan.DataType == ElementType.Double) attributes.Add(Patterns.Int("stash_type", ElementType.Double));
        return Patterns.ReplaceByNormalization(editor, plan.Anchor, plan.Removed, "GroupNormalization", plan.X, plan.Output, plan.DataType,
            [plan.Scale.Length], plan.Scale, plan.Bias, [.. attributes]);
    }
}

