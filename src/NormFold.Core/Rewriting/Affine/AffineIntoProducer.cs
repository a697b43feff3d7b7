using Google.Protobuf;
using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Rewriting.BatchNorm;
using NormFold.Tensors;

namespace NormFold.Rewriting.Affine;

/// <summary>
/// Common match of the rules that fold a chain of per-channel affine ops backward into the linear op producing its input:
///   P(X, W, b?) → n₁ → … → n_k   ⇒   P(X, W', b')        (MatMul: MatMul(X, B') → Add(b'), the Add only if b' ≠ 0)
/// The anchor is the piece's anchor (see <see cref="AffineHead"/>): a BN with Mul/Div/Add/Sub by constants before or
/// after it (a BN alone is the BatchNorm rules' case), or the first of such ops without a BN. P's output and each intermediate are
/// read by the next node alone and are not graph outputs; every constant broadcasts along P's output channel axis.
/// Algebra (per output channel c, the chain composed in double as y = s[c]·x + t[c]):
///   W' = W·s along the output channel;  b'[c] = s[c]·factor·b[c] + t[c] (b = 0 when absent); rounded once.
/// </summary>
internal abstract class AffineIntoProducer : RewriteRule<AffineIntoProducer.FoldPlan>
{
    /// <summary>The producer as the fold sees it: weight and its output-channel layout, the output's rank (null: not
    /// proven) and channel axis (negative: from the end), and its bias (slot −1: none possible, a new Add carries it),
    /// scaled by <paramref name="BiasFactor"/> (Gemm β).</summary>
    protected sealed record Linear(NodeProto Node, TensorProto Weight, ChannelLayout Layout, long Channels, int? Rank, int Axis,
        int BiasSlot, TensorProto? Bias, double BiasFactor);

    /// <summary><paramref name="State"/>: the producer's weights after the fold, relative to the original's.</summary>
    public sealed record FoldPlan(NodeProto Anchor, NodeProto Target, IReadOnlyList<NodeProto> Chain, LinearState State,
        bool Rescale, int BiasSlot, int BiasType, double[]? NewBias, long[] BiasDims) : Plan(Anchor, Target)
    {
        public override string Describe() =>
            $"folded {string.Join(" → ", Chain.Select(n => n.OpType))} into {Attributes.Describe(Target!)}";
    }

    public override IReadOnlyCollection<string> AnchorOpTypes { get; } = [.. AffineOp.OpTypes, "BatchNormalization"];
    /// <summary>Op types (default domain) this rule folds into.</summary>
    protected abstract IReadOnlyCollection<string> ProducerOpTypes { get; }

    /// <summary>Reads the producer, or refuses (its weights are not constant, have an unexpected shape, …).</summary>
    protected abstract Match.Refused? ReadProducer(GraphIndex g, NodeProto producer, string output, out Linear linear);

    public override Match TryMatch(RewriteContext context, NodeProto anchor)
    {
        var g = context.Graph;
        if (AffineHead.Piece(g, anchor, out string x, out var piece) is { } notAnchor) return notAnchor;
        // A BN alone, or MatMul → Add → BN, is the BatchNorm rules' case (they also describe a BN's unfoldable producer).
        bool bn = anchor.OpType == "BatchNormalization";
        var producer = g.Producer(x);
        if (bn && (piece.Count == 1 || piece is [{ OpType: "Add" }, _] && producer is { OpType: "MatMul" }))
            return new Match.NoCandidate("the BatchNorm rules' case");
        if (producer is null || !Attributes.IsDefaultDomain(producer) || !ProducerOpTypes.Contains(producer.OpType))
            return bn ? new Match.NoCandidate(AffineHead.ProducerDescription(g, x)) : Match.Refuse(SkipReason.ProducerNotFoldable, AffineHead.ProducerDescription(g, x));
        if (AffineHead.SoleReader(g, x, piece[0]) is { } shared) return shared;
        if (ReadProducer(g, producer, x, out var p) is { } refused) return refused;
        // An output rank the graph does not prove (MatMul; a value_info is no proof): the channel axis is the last one
        // whatever the rank, so constants of at most one axis (none adds an axis to a MatMul's output, of rank ≥ 1) fold;
        // a BN (axis 1) or a wider constant needs the rank.
        int rank = p.Rank ?? 1;
        if (p.Rank is null && piece.Any(n => n.OpType == "BatchNormalization"))
            return Match.UnprovenRank(g, x, "a BN normalises axis 1, which is the last axis only at rank 2");
        if (p.Rank is null && AffineHead.WidestConstant(g, piece) is > 1 and var widest)
            return Match.UnprovenRank(g, x, $"a constant of rank {widest} could add axes to it");
        int axis = p.Axis < 0 ? rank + p.Axis : p.Axis;

        var chain = AffineChain.Walk(g, x, rank, axis, p.Channels, anchor, out var stop);
        if (!chain.Nodes.Contains(anchor))
            return stop ?? Match.Refuse(SkipReason.PatternMismatch, $"{Attributes.Describe(piece[chain.Count])} is not a per-channel affine op");
        if (bn && chain.Count == 1)
            return new Match.NoCandidate("a BN alone: the BatchNorm rules fold it");
        if (p.BiasSlot < 0 && !chain.Map.Scales && chain.Count == 1)
            return new Match.NoCandidate($"the bias add of {Attributes.Describe(producer)}");

        // Composed with what earlier folds of this run did to the producer: computed from the original's tensors.
        var state = LinearState.Of(context, producer, p.Weight, p.Bias, p.BiasFactor, p.Layout, p.Channels);
        bool needBias = chain.Map.Shifts || (p.Bias is not null && (chain.Map.Scales || p.BiasFactor != 1));
        if (p.BiasSlot < 0 && EarlierBiasAdd(context, producer, p, rank, axis, chain) is { } earlier)
        {
            // MatMul → Add(b) where an earlier fold made the Add: b is that fold's bias, not a constant to compose again.
            (state, needBias) = (earlier.State, true);
            state = state.ThenOutput(earlier.After);
        }
        else state = state.ThenOutput(chain.Map);
        double[]? newBias = null;
        long[] biasDims = [];
        if (needBias && !state.TryBias(g.Model, out newBias, out biasDims, out string whyNot))
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(producer)}: {whyNot}");
        int biasType = p.Bias?.DataType ?? p.Weight.DataType;
        if (FoldedValues.FirstNotFinite(newBias ?? [], biasType) is { } badBias)
            return Match.Refuse(SkipReason.FoldedValueNotFinite, $"the folded bias of {Attributes.Describe(producer)}[{badBias}] = {newBias![badBias]:G6} is not finite as {ElementType.Name(biasType)}");
        if (chain.Map.Scales && state.WeightNotFinite(g.Model, producer) is { } badWeight) return badWeight;
        return new Match.Planned(new FoldPlan(anchor, producer, chain.Nodes, state, chain.Map.Scales, p.BiasSlot, biasType, newBias, biasDims));
    }

    /// <summary>When the chain starts with the Add an earlier fold into this MatMul made (its bias), that fold's state
    /// and the map of the rest of the chain.</summary>
    static (LinearState State, ChannelAffine After)? EarlierBiasAdd(RewriteContext context, NodeProto matmul, Linear p, int rank, int axis, AffineChain chain)
    {
        var first = chain.Nodes[0];
        if (first.OpType != "Add" || !context.Folds.TryGetValue(matmul, out var state) || state.Weight != p.Weight.Name
            || state.Bias is not { } bias || !first.Input.Contains(bias))
            return null;
        var rest = AffineChain.Walk(context.Graph, first.Output[0], rank, axis, p.Channels, chain.Nodes.FirstOrDefault(n => n.OpType == "BatchNormalization"), out _);
        if (rest.Count != chain.Count - 1) return null;
        return (state, rest.Map);
    }

    protected override Applied Apply(GraphEditor editor, FoldPlan plan)
    {
        var node = plan.Target!;
        var created = new List<string>();
        var records = new List<WeightRecord>();
        var state = plan.State.Write(editor, node, plan.Rescale, plan.NewBias, plan.BiasDims, plan.BiasType, "_affinefold", created, records, out string? bias);
        string y = plan.Chain[^1].Output[0];
        foreach (var n in plan.Chain) editor.RemoveNode(n);
        if (plan.BiasSlot >= 0)
        {
            if (bias is not null)
            {
                editor.SetInput(node, plan.BiasSlot, bias);
                if (Attributes.Find(node, "beta") != null) Attributes.SetFloat(node, "beta", 1f);
            }
            editor.SetOutput(node, 0, y);
        }
        else if (bias is null) editor.SetOutput(node, 0, y);
        else
        {
            // The MatMul's value changes, so its output gets a new name: a name never stands for two different values.
            string product = editor.Names.FreshValue(node.Output[0] + "_affinefold");
            editor.SetOutput(node, 0, product);
            var biasAdd = new NodeProto { OpType = "Add", Input = { product, bias }, Output = { y } };
            editor.AddNode(biasAdd, (node.Name.Length > 0 ? node.Name : y) + "_bias");
            // The Add holds the fold's bias: a merge must not compose it again (its record would name a vanished tensor).
            return new Applied(created, records, state, [biasAdd]);
        }
        return new Applied(created, records, state);
    }
}
