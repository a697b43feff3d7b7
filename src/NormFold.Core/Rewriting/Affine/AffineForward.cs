using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.Affine;

/// <summary>
/// Common match of the rules that fold a chain of per-channel affine ops FORWARD into the linear op reading its output:
///   X → n₁ → … → n_k → L(·, W, b?)   ⇒   L(X, W', b')     (MatMul: MatMul(X, B') → Add(b'), the Add only if b' ≠ 0)
/// The anchor is the piece's anchor (see <see cref="AffineHead"/>), all of the piece folds; each intermediate and the chain's output
/// are read by the next node alone and are not graph outputs; the chain's output is L's data input only.
/// Algebra, with the chain composed in double as y = s[k]·x + t[k] along L's INPUT channel k:
///   W'[o, k, …] = W[o, k, …]·s[k];   b'[o] = b[o] + Σ_{elements i of output o} W[i]·α·t[input(i)] (α: Gemm's, else 1).
/// Exact for Gemm/MatMul, and for a Conv that pads nothing (the shift would otherwise reach the padded border: the
/// original pads s·x + t with zeros, the folded model pads x). Scale-only chains fold into any Conv (s·0 = 0).
/// </summary>
internal abstract class AffineForward : RewriteRule<AffineForward.ForwardPlan>
{
    /// <summary>The consumer as the fold sees it: weight and its output/input channel layouts, the data input's rank
    /// (proven; null: not proven), channel axis (negative: from the end) and channel count, its bias (slot −1: a new Add
    /// carries it; factor: Gemm β), and α (Gemm) that multiplies the shift's contribution.</summary>
    protected sealed record Linear(NodeProto Node, TensorProto Weight, ChannelLayout Outputs, ChannelLayout Inputs,
        long OutputChannels, long InputChannels, int? Rank, int Axis, int BiasSlot, TensorProto? Bias, double BiasFactor, double ShiftScale);

    /// <summary><paramref name="State"/>: the consumer's weights after the fold, relative to the original's.</summary>
    public sealed record ForwardPlan(NodeProto Anchor, NodeProto Target, IReadOnlyList<NodeProto> Chain, string X,
        LinearState State, bool Rescale, int BiasSlot, int BiasType, double[]? NewBias, long[] BiasDims, NodeProto? BiasAdd = null)
        : Plan(Anchor, Target)
    {
        public override string Describe() =>
            $"folded {string.Join(" → ", Chain.Select(n => n.OpType))} forward into {Attributes.Describe(Target!)}";
    }

    public override IReadOnlyCollection<string> AnchorOpTypes { get; } = [.. AffineOp.OpTypes, "BatchNormalization"];
    protected abstract IReadOnlyCollection<string> ConsumerOpTypes { get; }

    /// <summary>Reads the consumer (its data input is <paramref name="input"/>), or refuses.</summary>
    protected abstract Match.Refused? ReadConsumer(GraphIndex g, NodeProto consumer, string input, out Linear linear);

    /// <summary>Refusal when a shift cannot pass through this consumer exactly (padding), or null.</summary>
    protected virtual Match.Refused? ShiftRefusal(GraphIndex g, NodeProto consumer, TensorProto weight) => null;

    /// <summary>Refusal when a shift-only chain would gain nothing (it needs a new node as large as itself), or null.</summary>
    protected virtual bool NeedsNodeForBias => false;

    public override Match TryMatch(RewriteContext context, NodeProto anchor)
    {
        var g = context.Graph;
        if (AffineHead.Piece(g, anchor, out string x, out var nodes) is { } notAnchor) return notAnchor;
        // The bias Add a fold of this run made after a MatMul is that fold's result, not a candidate (moving it on would
        // round its composed bias again, and its record would name a tensor that is gone).
        if (nodes.Any(context.Composed.Contains)) return new Match.NoCandidate("holds the bias an earlier fold of this run made");
        string end = nodes[^1].Output[0];
        if (g.IsGraphOutput(end))
            return Match.Refuse(SkipReason.ProducerNotFoldable, $"'{end}' is a graph output");
        var readers = g.Consumers(end);
        if (readers.Count != 1)
            return Match.Refuse(SkipReason.ProducerNotFoldable, $"'{end}' is read by {readers.Count} nodes");
        var consumer = readers[0];
        if (!Attributes.IsDefaultDomain(consumer) || !ConsumerOpTypes.Contains(consumer.OpType))
            return Match.Refuse(SkipReason.ProducerNotFoldable, $"'{end}' is read by {Attributes.Describe(consumer)}");
        if (consumer.Input.Count == 0 || consumer.Input[0] != end || consumer.Input.Skip(1).Contains(end))
            return Match.Refuse(SkipReason.ProducerNotFoldable, $"'{end}' is not {Attributes.Describe(consumer)}'s data input alone");
        if (ReadConsumer(g, consumer, end, out var L) is { } refused) return refused;

        // The chain must keep X's rank: a constant of higher rank would add axes the folded model loses. X's rank is
        // proven (a value_info is no proof); else it is the consumer's when no constant has that many axes (none could
        // have added one); else, for a MatMul (channel axis last), any rank folds alike when the constants are scalars.
        int? xRank = g.ProvenShape(x)?.Length;
        int widest = AffineHead.WidestConstant(g, nodes);
        if (xRank is { } proven && L.Rank is { } reads && proven != reads)
            return Match.Refuse(SkipReason.ShapeMismatch, $"'{x}' has rank {proven}, {Attributes.Describe(consumer)} reads rank {reads}: the ops change the rank");
        int rank;
        if ((xRank ?? L.Rank) is { } known && (xRank is not null || widest < known)) rank = known;
        else if (L.Rank is null && widest == 0 && !nodes.Any(n => n.OpType == "BatchNormalization")) rank = 1;
        else return Match.UnprovenRank(g, x, widest > 0 ? $"a constant of rank {widest} could have added axes to it" : "a BN normalises axis 1, which is the last axis only at rank 2");
        int axis = L.Axis < 0 ? rank + L.Axis : L.Axis;
        var chain = AffineChain.Walk(g, x, rank, axis, L.InputChannels, anchor, out var stop);
        if (chain.Count < nodes.Count) return stop ?? Match.Refuse(SkipReason.PatternMismatch, $"{Attributes.Describe(nodes[chain.Count])} is not a per-channel affine op");
        // X must already have the channels the consumer reads (a per-channel constant could widen 1 to C); a BN first
        // in the chain proves it (it needs C channels in), one later proves nothing about X.
        if (chain.Map.Channels > 1 && chain.Nodes[0].OpType != "BatchNormalization"
            && ChannelCount(g, x, rank, axis) != L.InputChannels)
            return Match.Refuse(SkipReason.ShapeMismatch, $"the channel count of '{x}' along axis {axis} is not known to be {L.InputChannels} (a declared value_info is no proof): a per-channel constant could be widening it");
        if (chain.Map.Shifts && ShiftRefusal(g, consumer, L.Weight) is { } padded) return padded;
        // A MatMul whose bias an earlier fold put into the Add after it: that Add takes the new bias (no new node), and
        // the fold composes with the earlier one.
        var (biasAdd, bias) = L.BiasSlot < 0 && EarlierBiasAdd(context, consumer, L.Weight) is { } earlier ? earlier : (null, L.Bias);
        if (NeedsNodeForBias && biasAdd is null && chain.Map.Shifts && chain.Count == 1)
            return Match.Refuse(SkipReason.NothingSaved, $"moving the shift through {Attributes.Describe(consumer)} needs an Add after it: no node would be saved");

        // Composed with what earlier folds of this run did to the consumer: computed from the original's tensors.
        var state = LinearState.Of(context, consumer, L.Weight, bias, L.BiasFactor, L.Outputs, L.OutputChannels)
            .AfterInput(chain.Map, L.Inputs, L.InputChannels, L.ShiftScale);
        double[]? newBias = null;
        long[] biasDims = [];
        if (chain.Map.Shifts && !state.TryBias(g.Model, out newBias, out biasDims, out string whyNot))
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(consumer)}: {whyNot}");
        int biasType = bias?.DataType ?? L.Weight.DataType;
        if (FoldedValues.FirstNotFinite(newBias ?? [], biasType) is { } badBias)
            return Match.Refuse(SkipReason.FoldedValueNotFinite, $"the folded bias of {Attributes.Describe(consumer)}[{badBias}] = {newBias![badBias]:G6} is not finite as {ElementType.Name(biasType)}");
        if (chain.Map.Scales && state.WeightNotFinite(g.Model, consumer) is { } badWeight) return badWeight;
        return new Match.Planned(new ForwardPlan(anchor, consumer, chain.Nodes, x, state, chain.Map.Scales, L.BiasSlot, biasType, newBias, biasDims, biasAdd));
    }

    protected override Applied Apply(GraphEditor editor, ForwardPlan plan)
    {
        var node = plan.Target!;
        var created = new List<string>();
        var records = new List<WeightRecord>();
        var state = plan.State.Write(editor, node, plan.Rescale, plan.NewBias, plan.BiasDims, plan.BiasType, "_affinefold", created, records, out string? bias);
        foreach (var n in plan.Chain) editor.RemoveNode(n);
        editor.SetInput(node, 0, plan.X);
        if (bias is null) return new Applied(created, records, state);
        if (plan.BiasSlot >= 0)
        {
            editor.SetInput(node, plan.BiasSlot, bias);
            if (Attributes.Find(node, "beta") != null) Attributes.SetFloat(node, "beta", 1f);
        }
        else if (plan.BiasAdd is { } add)
        {
            // MatMul → Add(b) from an earlier fold: the MatMul's value changes (new name), the Add takes the new bias.
            string product = editor.Names.FreshValue(node.Output[0] + "_affinefold");
            int slot = add.Input[0] == node.Output[0] ? 0 : 1;
            editor.SetOutput(node, 0, product);
            editor.SetInput(add, slot, product);
            editor.SetInput(add, 1 - slot, bias);
            return new Applied(created, records, state, [add]);
        }
        else
        {
            // MatMul: its value changes, so its output gets a new name; an Add adds the shift's contribution.
            string y = node.Output[0];
            string product = editor.Names.FreshValue(y + "_affinefold");
            editor.SetOutput(node, 0, product);
            var biasAdd = new NodeProto { OpType = "Add", Input = { product, bias }, Output = { y } };
            editor.AddNode(biasAdd, (node.Name.Length > 0 ? node.Name : y) + "_bias");
            // The Add holds the fold's bias: a merge must not compose it again (its record would name a vanished tensor).
            return new Applied(created, records, state, [biasAdd]);
        }
        return new Applied(created, records, state);
    }

    /// <summary>The Add after a MatMul that an earlier fold of this run made to carry its bias, and that bias.</summary>
    static (NodeProto?, TensorProto?)? EarlierBiasAdd(RewriteContext context, NodeProto matmul, TensorProto weight)
    {
        var g = context.Graph;
        if (!context.Folds.TryGetValue(matmul, out var state) || state.Weight != weight.Name || state.Bias is not { } bias) return null;
        string y = matmul.Output[0];
        if (g.IsGraphOutput(y) || g.Consumers(y) is not [{ OpType: "Add" } add] || add.Input.Count != 2
            || !(add.Input[0] == y && add.Input[1] == bias || add.Input[1] == y && add.Input[0] == bias)
            || !g.TryGetConstant(bias, out var tensor))
            return null;
        return (add, tensor);
    }

    /// <summary>The size of axis <paramref name="axis"/> of a tensor of that rank, when the graph proves it.</summary>
    static long? ChannelCount(GraphIndex g, string name, int rank, int axis) =>
        g.ProvenShape(name) is { } shape && shape.Length == rank && shape[axis] >= 0 ? shape[axis] : null;
}

/// <summary>Which channel element i of a weight belongs to, under a <see cref="ChannelLayout"/>.</summary>
internal static class ChannelIndex
{
    public static long Of(ChannelLayout layout, long i, long count, long channels) => layout switch
    {
        ChannelLayout.Rows => i / (count / channels),
        ChannelLayout.Columns => i % channels,
        ChannelLayout.TransposedConv t => TransposedConv(t, i, count),
        ChannelLayout.ConvInputs c => ConvInput(c, i, count),
        _ => throw new ArgumentException($"layout {layout}"),
    };

    static long TransposedConv(ChannelLayout.TransposedConv t, long i, long count)
    {
        long kernel = count / (t.InputChannels * t.OutputsPerGroup);
        long row = i / (t.OutputsPerGroup * kernel), col = i / kernel % t.OutputsPerGroup;
        return row / (t.InputChannels / t.Groups) * t.OutputsPerGroup + col;
    }

    /// <summary>Conv W [M, C/g, k…]: element (m, k, …) reads input channel (m / (M/g))·(C/g) + k.</summary>
    static long ConvInput(ChannelLayout.ConvInputs c, long i, long count)
    {
        long kernel = count / (c.OutputChannels * c.InputsPerGroup);
        long m = i / (c.InputsPerGroup * kernel), k = i / kernel % c.InputsPerGroup;
        return m / (c.OutputChannels / c.Groups) * c.InputsPerGroup + k;
    }
}
