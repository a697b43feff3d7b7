using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Rewriting.Affine;
using NormFold.Tensors;

namespace NormFold.Rewriting.BatchNorm;

/// <summary>
/// MatMul(A, B) [→ Add(·, bias)] → BN   ⇒   MatMul(A, B') → Add(·, bias')
/// Conditions: B constant, 2-D [K, N], N = BN channels; the MatMul output has rank 2 (proven from the graph's inputs
/// and constants, never a value_info), so BN's channel axis 1 is B's column axis — for higher ranks axis 1 is not N, so it is refused;
/// the optional bias is constant and broadcasts along N; each intermediate is read only by the next node.
/// Algebra: B'[k, n] = B[k, n]·s[n];  bias'[…, n] = s[n]·bias[…, n] + t[n]  (bias = 0 when absent: a new Add).
/// </summary>
internal sealed class IntoMatMul : FoldIntoProducer<IntoMatMul.MatMulPlan>
{
    public sealed record MatMulPlan(NodeProto Anchor, NodeProto Target, NodeProto? Add, int BiasSlot,
        LinearState State, int BiasType, double[] NewBias, long[] BiasDims) : Plan(Anchor, Target);

    public override string Name => "BatchNormIntoMatMul";
    protected override IReadOnlyCollection<string> ProducerOpTypes { get; } = ["MatMul", "Add"];

    protected override Match MatchProducer(RewriteContext context, NodeProto bn, NodeProto producer, BatchNormParameters p)
    {
        var g = context.Graph;
        NodeProto matmul = producer;
        NodeProto? add = null;
        TensorProto? bias = null;
        int biasSlot = -1;
        if (producer.OpType == "Add")
        {
            add = producer;
            for (int k = 0; k < 2 && k < add.Input.Count; k++)
                if (g.Producer(add.Input[k]) is { OpType: "MatMul" } mm && Attributes.IsDefaultDomain(mm)) { matmul = mm; biasSlot = 1 - k; }
            if (biasSlot < 0 || add.Input.Count != 2)
                return Match.Refuse(SkipReason.ProducerNotFoldable, $"input '{bn.Input[0]}' comes from {Attributes.Describe(add)}, which does not add to a MatMul");
            if (SoleReaderRefusal(g, add.Input[1 - biasSlot], add) is { } shared) return shared;
            if (ConstantWeight(g, add, biasSlot, "bias", out var b) is { } biasRefused) return biasRefused;
            bias = b;
        }
        if (ConstantWeight(g, matmul, 1, "B", out var weight) is { } refused) return refused;
        if (weight.Dims.Count != 2)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(matmul)} B '{weight.Name}' has shape {Dims(weight)}, expected 2-D");
        if (weight.Dims[1] != p.Channels)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(matmul)} produces {weight.Dims[1]} columns, the BN has {p.Channels} channels");

        // Proven (a value_info claiming rank 2 for a 3-D product would fold along the wrong axis).
        int? rank = g.ProvenShape(matmul.Output[0])?.Length ?? g.ProvenShape(matmul.Input[0])?.Length;
        if (rank is null)
            return Match.Refuse(SkipReason.UnknownRank, $"the rank of {Attributes.Describe(matmul)}'s output does not follow from the graph's inputs and constants (a declared value_info is no proof); folding is exact only for rank 2");
        if (rank != 2)
            return Match.Refuse(SkipReason.ChannelAxisMismatch, $"{Attributes.Describe(matmul)} output has rank {rank}: BN normalises axis 1, B's columns are axis {rank - 1}");

        if (Compose(context, matmul, weight, bias, 1.0, new ChannelLayout.Columns(), p.Channels, p, out var state, out var newBias, out var biasDims) is { } bad) return bad;
        return new Match.Planned(new MatMulPlan(bn, matmul, add, biasSlot, state, bias?.DataType ?? weight.DataType, newBias, biasDims));
    }

    protected override Applied Apply(GraphEditor editor, MatMulPlan plan)
    {
        var matmul = plan.Target!;
        var created = new List<string>();
        var records = new List<WeightRecord>();
        string bias = Write(editor, matmul, plan.State, plan.NewBias, plan.BiasDims, plan.BiasType, created, records, out var state);
        // The MatMul's value changes, so its output gets a new name: a name never stands for two different values.
        string product = editor.Names.FreshValue(matmul.Output[0] + "_bnfold");
        editor.SetOutput(matmul, 0, product);
        NodeProto biasAdd;
        if (plan.Add is { } add)
        {
            editor.SetInput(add, 1 - plan.BiasSlot, product);
            editor.SetInput(add, plan.BiasSlot, bias);
            Bypass(editor, plan.Anchor, add);
            biasAdd = add;
        }
        else
        {
            string y = plan.Anchor.Output[0];
            editor.RemoveNode(plan.Anchor);
            biasAdd = new NodeProto { OpType = "Add", Input = { product, bias }, Output = { y } };
            editor.AddNode(biasAdd, (plan.Anchor.Name.Length > 0 ? plan.Anchor.Name : y) + "_bias");
        }
        // The Add holds the fold's bias: a merge must not compose it again (its record would name a vanished tensor).
        return new Applied(created, records, state, [biasAdd]);
    }
}
