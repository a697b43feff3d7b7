using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.Affine;

/// <summary>
/// X → n₁ → n₂ → … → n_k (per-channel affine ops in a row that nothing could fold: Mul/Div/Add/Sub by constants, at
/// most one BN: a piece, see <see cref="AffineHead"/>)   ⇒   X → Mul(s) → Add(t)   (or just one of them)
/// Ops that change no value at all (x·1 + 0) go, their readers reading X, when no broadcast widens X.
/// Conditions: k greater than the nodes that replace it; X's rank proven when a BN is in the chain or before opset 7
/// (else the merged constants take the widest constant's rank); every constant varies along one and the same axis
/// (BN: axis 1) or is a scalar; the element type known; each intermediate read by the next node alone.
/// Algebra: the chain composed in double, y = s·x + t; s and t rounded once to X's type.
/// Runs after the folds (whatever they could absorb is gone) and before standalone BNs become Mul + Add. When standalone
/// BNs are kept, a piece with a BN is no candidate (the BN stays, and so do the ops merged with it otherwise).
/// </summary>
internal sealed class AffineMerge : RewriteRule<AffineMerge.MergePlan>
{
    /// <summary><paramref name="FullRank"/>: X's rank is not proven, <paramref name="Rank"/> is the constants' own, and
    /// the merged constants keep it (so an X of lower rank widens as in the original).</summary>
    public sealed record MergePlan(NodeProto Anchor, IReadOnlyList<NodeProto> Chain, string X, ChannelAffine Map, int Rank, int Axis, int DataType,
        bool Remove, bool FullRank) : Plan(Anchor, null)
    {
        public override string Describe() =>
            Remove ? $"removed {string.Join(" → ", Chain.Select(n => n.OpType))}: it changes no value"
            : $"merged {string.Join(" → ", Chain.Select(n => n.OpType))} into {(AffineNodes.Count(Map) == 2 ? "Mul + Add" : Map.Shifts ? "Add" : "Mul")}";
    }

    public override string Name => "AffineMerge";
    public override IReadOnlyCollection<string> AnchorOpTypes { get; } = [.. AffineOp.OpTypes, "BatchNormalization"];

    public override Match TryMatch(RewriteContext context, NodeProto anchor)
    {
        var g = context.Graph;
        if (AffineHead.Piece(g, anchor, out string x, out var piece) is { } notAnchor) return notAnchor;
        // A Mul + Add an earlier merge of this run made, or a MatMul fold's bias Add, holds constants composed from the
        // original's and rounded: merging it again would round twice (and its records would name tensors that are gone).
        // The piece starts after it.
        int made = piece.TakeWhile(context.Composed.Contains).Count();
        if (made > 0 && made < piece.Count)
        {
            piece = piece.Skip(made).ToList();
            x = piece[0].Input[AffineHead.DataSlot(g, piece[0])];
        }
        if (piece.Any(context.Composed.Contains))
            return new Match.NoCandidate("next to the Mul + Add an earlier merge made");
        if (context.Options.KeepStandaloneBatchNorm && piece.Any(n => n.OpType == "BatchNormalization"))
            return new Match.NoCandidate("standalone BNs are kept, with the affine ops next to them");
        if (!AffineHead.MergeCouldShrink(g, piece) && !piece.Any(n => AffineHead.IsIdentity(g, n)))
            return new Match.NoCandidate("merging would not make fewer nodes");
        // X's rank, proven (a value_info is no proof). Without it, constants align at the last axis, so for any rank of X
        // at least theirs the merge is the same, and merged constants of their rank widen a lower-rank X as before; a BN
        // (axis 1 counts from the first axis) and the opset < 7 `axis` attribute need the rank.
        var provenShape = g.ProvenShape(x);
        int? proven = provenShape?.Length;
        if (proven is null && piece.Any(n => n.OpType == "BatchNormalization"))
            return Match.UnprovenRank(g, x, "a BN normalises axis 1, which the merged constants must be shaped for");
        if (proven is null && g.Opset < 7)
            return Match.UnprovenRank(g, x, $"before opset 7 the merged constants broadcast along an axis counted from the first");
        int rank = proven ?? AffineHead.WidestConstant(g, piece);
        int axis = piece.Any(n => n.OpType == "BatchNormalization") ? 1 : piece.Select(n => Axis(g, n, rank)).FirstOrDefault(a => a is not null) ?? 1;
        // A proven size along the axis other than 1 is the channel count every constant must have (1 widens).
        // (A constant of more axes than X gives a negative axis here: the chain refuses it, as it changes X's rank.)
        long channels = provenShape is { } dims && axis >= 0 && axis < dims.Length && dims[axis] > 1 ? dims[axis] : -1;
        var chain = AffineChain.Walk(g, x, rank, axis, channels, anchor, out var stop);
        // The anchor, or (when it was such a node and the piece starts after it) the piece's first node must merge.
        if (!chain.Nodes.Contains(context.Composed.Contains(anchor) ? piece[0] : anchor))
            return (Match?)stop ?? new Match.NoCandidate("no other affine op next to it");
        bool identity = !chain.Map.Scales && !chain.Map.Shifts;
        if ((identity ? 0 : AffineNodes.Count(chain.Map)) >= chain.Count + chain.Nodes.Count(n => n.OpType == "BatchNormalization"))
            return (Match?)stop ?? new Match.NoCandidate("already as few nodes as a merge would make");
        // Ops changing no value go; when their output must keep its name (or X's shape is not known), one stays.
        if (identity && RemovalRefusal(g, x, chain) is { } keep)
        {
            if (chain.Count == 1) return keep;
            identity = false;
        }
        if (chain.Map.FirstNonFinite() is { } nonFinite)
            return Match.Refuse(SkipReason.FoldedValueNotFinite, $"the merged {nonFinite}");
        int? type = g.ElemType(x) ?? g.ElemType(chain.Nodes[^1].Output[0]);
        if (type is null || !ElementType.IsFoldable(type.Value))
            return Match.Refuse(SkipReason.UnsupportedDataType, $"the element type of '{x}' is {(type is null ? "not declared in the model" : ElementType.Name(type.Value))}");
        if (FoldedValues.FirstNotFinite(chain.Map.Scale, type.Value) is not null || FoldedValues.FirstNotFinite(chain.Map.Shift, type.Value) is not null)
            return Match.Refuse(SkipReason.FoldedValueNotFinite, $"a merged scale or shift is not finite as {ElementType.Name(type.Value)}");
        return new Match.Planned(new MergePlan(anchor, chain.Nodes, x, chain.Map, rank, axis, type.Value, identity, proven is null));
    }

    /// <summary>
    /// Ops that change no value can go (their readers read X) unless they shape the result: X's rank and dims along every
    /// axis a constant spans must be proven to hold it (no broadcast widens X; a value_info is no proof), the output is
    /// no graph output, and every reader names it as an input (a body capturing it would need renaming inside).
    /// </summary>
    static Match.Refused? RemovalRefusal(GraphIndex g, string x, AffineChain chain)
    {
        string y = chain.Nodes[^1].Output[0];
        if (g.IsGraphOutput(y))
            return Match.Refuse(SkipReason.ProducerOutputIsGraphOutput, $"'{y}' is a graph output: the ops change no value but name it");
        if (g.Consumers(y).Any(c => !c.Input.Contains(y)))
            return Match.Refuse(SkipReason.IntermediateUsedOutside, $"'{y}' is read inside a subgraph");
        var shape = g.ProvenShape(x);
        foreach (var n in chain.Nodes)
        {
            if (AffineOp.TryRead(g, n, out _) is not { } op) continue;
            var d = op.C.Dims;
            if (d.Length > 0 && (shape is null || shape.Length < d.Length))
                return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(n)} changes no value, but its constant {op.C.Shape} may widen '{x}' (rank {(shape is null ? "not proven" : shape.Length)})");
            for (int i = 0; i < d.Length; i++)
                if (d[i] != 1 && shape![shape.Length - d.Length + i] != d[i])
                    return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(n)} changes no value, but its constant {op.C.Shape} may widen '{x}' (shape [{string.Join(",", shape!)}])");
        }
        return null;
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
        if (plan.Remove)
        {
            foreach (var reader in editor.Index.Consumers(y).ToList())
                for (int k = 0; k < reader.Input.Count; k++)
                    if (reader.Input[k] == y) editor.SetInput(reader, k, plan.X);
            return new Applied([], []);
        }
        return AffineNodes.Emit(editor, plan.X, y, plan.Map, plan.Rank, plan.Axis, plan.DataType, baseName + "_merged", plan.FullRank);
    }
}
