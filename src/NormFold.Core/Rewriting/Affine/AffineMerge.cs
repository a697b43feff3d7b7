using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.Affine;

/// <summary>
/// X → n₁ → n₂ → … → n_k (per-channel affine ops in a row that nothing could fold: Mul/Div/Add/Sub by constants, at
/// most one BN: a piece, see <see cref="AffineHead"/>)   ⇒   X → Mul(s) → Add(t)   (or just one of them)
/// Conditions: k greater than the nodes that replace it; X's rank known; every constant varies along one and the same
/// axis (BN: axis 1) or is a scalar; the element type known; each intermediate read by the next node alone.
/// Algebra: the chain composed in double, y = s·x + t; s and t rounded once to X's type.
/// Runs after the folds (whatever they could absorb is gone) and before standalone BNs become Mul + Add.
/// </summary>
internal sealed class AffineMerge : RewriteRule<AffineMerge.MergePlan>
{
    public sealed record MergePlan(NodeProto Anchor, IReadOnlyList<NodeProto> Chain, string X, ChannelAffine Map, int Rank, int Axis, int DataType)
        : Plan(Anchor, null)
    {
        public override string Describe() =>
            $"merged {string.Join(" → ", Chain.Select(n => n.OpType))} into {(AffineNodes.Count(Map) == 2 ? "Mul + Add" : Map.Shifts ? "Add" : "Mul")}";
    }

    public override string Name => "AffineMerge";
    public override IReadOnlyCollection<string> AnchorOpTypes { get; } = [.. AffineOp.OpTypes, "BatchNormalization"];

    public override Match TryMatch(RewriteContext context, NodeProto anchor)
    {
        var g = context.Graph;
        if (AffineHead.Piece(g, anchor, out string x, out var piece) is { } notAnchor) return notAnchor;
        if (!AffineHead.MergeCouldShrink(g, piece)) return new Match.NoCandidate("merging would not make fewer nodes");
        if (g.Rank(x) is not { } rank)
            return Match.Refuse(SkipReason.UnknownRank, $"the rank of '{x}' is not declared in the model");
        int axis = piece.Any(n => n.OpType == "BatchNormalization") ? 1 : piece.Select(n => Axis(g, n, rank)).FirstOrDefault(a => a is not null) ?? 1;
        var chain = AffineChain.Walk(g, x, rank, axis, -1, anchor, out var stop);
        if (!chain.Nodes.Contains(anchor) || chain.Count < 2) return (Match?)stop ?? new Match.NoCandidate("no other affine op next to it");
        if (AffineNodes.Count(chain.Map) >= chain.Count + chain.Nodes.Count(n => n.OpType == "BatchNormalization"))
            return new Match.NoCandidate("already as few nodes as a merge would make");
        if (chain.Map.FirstNonFinite() is { } nonFinite)
            return Match.Refuse(SkipReason.FoldedValueNotFinite, $"the merged {nonFinite}");
        int? type = g.ElemType(x) ?? g.ElemType(chain.Nodes[^1].Output[0]);
        if (type is null || !ElementType.IsFoldable(type.Value))
            return Match.Refuse(SkipReason.UnsupportedDataType, $"the element type of '{x}' is {(type is null ? "not declared in the model" : ElementType.Name(type.Value))}");
        if (FoldedValues.FirstNotFinite(chain.Map.Scale, type.Value) is not null || FoldedValues.FirstNotFinite(chain.Map.Shift, type.Value) is not null)
            return Match.Refuse(SkipReason.FoldedValueNotFinite, $"a merged scale or shift is not finite as {ElementType.Name(type.Value)}");
        return new Match.Planned(new MergePlan(anchor, chain.Nodes, x, chain.Map, rank, axis, type.Value));
    }

    /// <summary>The axis along which a node's constant varies (BN: 1), or null for a scalar.</summary>
    static int? Axis(GraphIndex g, NodeProto n, int rank)
    {
        if (n.OpType == "BatchNormalization") return 1;
        if (AffineOp.TryRead(g, n, out _) is not { } op) return null;
        int offset = g.Opset < 7 && Attributes.Find(n, "axis") is { } a ? (int)(a.I < 0 ? a.I + rank : a.I) : rank - op.C.Dims.Length;
        for (int i = 0; i < op.C.Dims.Length; i++)
            if (op.C.Dims[i] != 1) return offset + i;
        return null;
    }

    protected override Applied Apply(GraphEditor editor, MergePlan plan)
    {
        string y = plan.Chain[^1].Output[0];
        string baseName = plan.Anchor.Name.Length > 0 ? plan.Anchor.Name : y;
        foreach (var n in plan.Chain) editor.RemoveNode(n);
        return AffineNodes.Emit(editor, plan.X, y, plan.Map, plan.Rank, plan.Axis, plan.DataType, baseName + "_merged");
    }
}
