using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.Normalization;

/// <summary>
/// GroupNormalization(X, γ, β; G, ε)   ⇒   Reshape(X, [0, G, −1]) → InstanceNormalization(1, 0, ε) → Reshape(Shape(X))
///                                          → Mul(γ[C,1,…,1]) → Add(β[C,1,…,1])
/// For runtimes without GroupNormalization (or with a broken one). GroupNormalization-18 (opset 18–20) has one γ, β per
/// group: they are repeated over the group's C/G channels. Conditions: rank ≥ 3 known, γ and β constant, C known.
/// </summary>
public sealed class GroupNormLowering : RewriteRule<GroupNormLowering.LoweringPlan>
{
    public sealed record LoweringPlan(NodeProto Anchor, string X, string Output, long Groups, float Epsilon, int DataType,
        int Rank, double[] Scale, double[] Bias) : Plan(Anchor, null)
    {
        public override string Describe() => $"lowered to Reshape → InstanceNormalization → Reshape → Mul → Add ({Groups} groups)";
    }

    public override string Name => "GroupNormLowering";
    public override IReadOnlyCollection<string> AnchorOpTypes { get; } = ["GroupNormalization"];

    public override Match TryMatch(RewriteContext context, NodeProto gn)
    {
        var g = context.Graph;
        if (g.Opset < 18) return Match.Refuse(SkipReason.UnsupportedOpsetVersion, $"opset {g.Opset} has no GroupNormalization");
        string x = gn.Input[0];
        if (g.Rank(x) is not { } rank) return Match.Refuse(SkipReason.UnknownRank, $"the rank of '{x}' is not known");
        if (rank < 3) return Match.Refuse(SkipReason.PatternMismatch, $"'{x}' has rank {rank}");
        if (gn.Input.Count < 3 || !Patterns.TryConstant(g, gn.Input[1], out var scale, out _) || !Patterns.TryConstant(g, gn.Input[2], out var bias, out _))
            return Match.Refuse(SkipReason.ParameterNotConstant, $"{Attributes.Describe(gn)}'s scale or bias is not constant");
        long groups = Attributes.Int(gn, "num_groups", 0);
        if (groups <= 0) return Match.Refuse(SkipReason.PatternMismatch, $"{Attributes.Describe(gn)} has num_groups={groups}");
        if (g.ElemType(x) is not { } type || !ElementType.IsFoldable(type))
            return Match.Refuse(SkipReason.UnsupportedDataType, $"the element type of '{x}' is not known or not floating point");
        if (g.Opset < 21)
        {
            // Version 18: per-group parameters, repeated over each group's channels.
            if (Patterns.Channels(g, x) is not { } c) return Match.Refuse(SkipReason.UnknownRank, $"the channel count of '{x}' is not known");
            if (c % groups != 0 || scale.Length != groups) return Match.Refuse(SkipReason.GroupsDoNotDivideChannels, $"{groups} groups, {c} channels, {scale.Length} scales");
            long size = c / groups;
            scale = Enumerable.Range(0, (int)c).Select(i => scale[i / size]).ToArray();
            bias = Enumerable.Range(0, (int)c).Select(i => bias[i / size]).ToArray();
        }
        if (scale.Length % groups != 0) return Match.Refuse(SkipReason.GroupsDoNotDivideChannels, $"{groups} groups do not divide {scale.Length} channels");
        return new Match.Planned(new LoweringPlan(gn, x, gn.Output[0], groups, Attributes.Float(gn, "epsilon", 1e-5f), type, rank, scale, bias));
    }

    protected override Applied Apply(GraphEditor editor, LoweringPlan plan)
    {
        var gn = plan.Anchor;
        string b = gn.Name.Length > 0 ? gn.Name : plan.Output;
        var groupShape = new TensorProto { DataType = (int)TensorProto.Types.DataType.Int64, Dims = { 3 }, Int64Data = { 0, plan.Groups, -1 } };
        string shape = editor.AddInitializer(groupShape, b + "_group_shape");
        long[] g = [plan.Groups];
        string ones = editor.AddInitializer(TensorData.Create("", plan.DataType, g, Enumerable.Repeat(1.0, (int)plan.Groups).ToArray()), b + "_ones");
        string zeros = editor.AddInitializer(TensorData.Create("", plan.DataType, g, new double[plan.Groups]), b + "_zeros");
        long[] perChannel = [plan.Scale.Length, .. Enumerable.Repeat(1L, plan.Rank - 2)];
        string gamma = editor.AddInitializer(TensorData.Create("", plan.DataType, perChannel, plan.Scale), b + "_gamma");
        string beta = editor.AddInitializer(TensorData.Create("", plan.DataType, perChannel, plan.Bias), b + "_beta");
        string V(string suffix) => editor.Names.FreshValue(b + suffix);
        string grouped = V("_grouped"), normalized = V("_normalized"), xShape = V("_shape"), restored = V("_restored"), scaled = V("_scaled");
        editor.RemoveNode(gn);
        editor.AddNode(new NodeProto { OpType = "Reshape", Input = { plan.X, shape }, Output = { grouped } }, b + "_reshape");
        var inorm = new NodeProto { OpType = "InstanceNormalization", Input = { grouped, ones, zeros }, Output = { normalized } };
        inorm.Attribute.Add(new AttributeProto { Name = "epsilon", Type = AttributeProto.Types.AttributeType.Float, F = plan.Epsilon });
        editor.AddNode(inorm, b + "_instancenorm");
        editor.AddNode(new NodeProto { OpType = "Shape", Input = { plan.X }, Output = { xShape } }, b + "_shape");
        editor.AddNode(new NodeProto { OpType = "Reshape", Input = { normalized, xShape }, Output = { restored } }, b + "_reshape_back");
        editor.AddNode(new NodeProto { OpType = "Mul", Input = { restored, gamma }, Output = { scaled } }, b + "_mul");
        editor.AddNode(new NodeProto { OpType = "Add", Input = { scaled, beta }, Output = { plan.Output } }, b + "_add");
        return new Applied([shape, ones, zeros, gamma, beta],
            [new NewConstant(ones, Enumerable.Repeat(1.0, (int)plan.Groups).ToArray()), new NewConstant(zeros, new double[plan.Groups]),
             new NewConstant(gamma, plan.Scale), new NewConstant(beta, plan.Bias)]);
    }
}
