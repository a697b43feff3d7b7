using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.BatchNorm;

/// <summary>
/// BN(X) with no producer to fold into   ⇒   Add(Mul(X, s), t)
/// Conditions: an eval-mode BN with usable parameters; X's rank r ≥ 2 proven (from the graph's inputs and constants,
/// never a value_info) and its element type known from the model; X's channel count, where the graph gives it, is the BN's.
/// Algebra: y = s·x + t per channel; s and t are shaped [C, 1, …, 1] (r − 2 ones) to broadcast along axis 1,
/// stored in X's element type (rounded once from double); before opset 7, [C] with broadcast=1, axis=1.
/// Runs after the fold rules, on the BNs they left.
/// </summary>
internal sealed class ToMulAdd : RewriteRule<ToMulAdd.MulAddPlan>
{
    public sealed record MulAddPlan(NodeProto Anchor, int DataType, long[] Dims, double[] Scale, double[] Shift) : Plan(Anchor, null)
    {
        public override string Describe() => "replaced by Mul + Add";
    }

    public override string Name => "BatchNormToMulAdd";
    public override IReadOnlyCollection<string> AnchorOpTypes { get; } = ["BatchNormalization"];

    public override Match TryMatch(RewriteContext context, NodeProto bn)
    {
        var g = context.Graph;
        if (BatchNormParameters.TryRead(g, bn, out var p) is { } refused) return refused;
        string x = bn.Input[0];
        // Proven from the graph's inputs and constants: a value_info claiming rank 2 for a 4-D X would put the constants
        // on the last axis.
        int? rank = g.ProvenShape(x)?.Length;
        if (rank is null)
            return Match.UnprovenRank(g, x, "the [C,1,…] shape of the Mul/Add constants depends on it");
        if (rank < 2)
            return Match.Refuse(SkipReason.ShapeMismatch, $"'{x}' has rank {rank}; BatchNormalization needs rank ≥ 2");
        // A channel count the graph gives (propagated, e.g. from the producer's weights) that is not the BN's: ORT
        // rejects the BN at run time, and would reject the Mul + Add when loading — the model is not foldable as it is.
        if (g.Shape(x) is [_, var channels, ..] && channels >= 0 && channels != p.Channels)
            return Match.Refuse(SkipReason.ShapeMismatch, $"'{x}' has {channels} channels, the BN's parameters {p.Channels}");
        int? type = g.ElemType(x) ?? g.ElemType(bn.Output[0]) ?? (p.Version < 15 ? p.ParameterType : null);
        if (type is null)
            return Match.Refuse(SkipReason.UnsupportedDataType, $"the element type of '{x}' is not declared in the model");
        if (!ElementType.IsFoldable(type.Value))
            return Match.Refuse(SkipReason.UnsupportedDataType, $"'{x}' is {ElementType.Name(type.Value)}");
        var dims = new long[rank.Value - 1];
        dims[0] = p.Channels;
        for (int i = 1; i < dims.Length; i++) dims[i] = 1;
        if ((Affine.FoldedValues.NotFinite("Mul constant s", type.Value, p.Scale) ?? Affine.FoldedValues.NotFinite("Add constant t", type.Value, p.Shift)) is { } overflow)
            return overflow;
        return new Match.Planned(new MulAddPlan(bn, type.Value, dims, p.Scale, p.Shift));
    }

    protected override Applied Apply(GraphEditor editor, MulAddPlan plan)
    {
        var bn = plan.Anchor;
        string baseName = bn.Name.Length > 0 ? bn.Name : bn.Output[0];
        editor.RemoveNode(bn);
        // Shared with the affine merge: valid at the model's opset (before 7: broadcast=1, axis=1, [C] constants).
        return Affine.AffineNodes.Emit(editor, bn.Input[0], bn.Output[0], new Affine.ChannelAffine(plan.Scale, plan.Shift),
            plan.Dims.Length + 1, 1, plan.DataType, baseName);
    }
}
