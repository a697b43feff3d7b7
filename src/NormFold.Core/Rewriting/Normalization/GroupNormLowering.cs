using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.Normalization;

/// <summary>
/// GroupNormalization(X, γ, β; G, ε)   ⇒   Reshape(X, [0, G, −1]) → InstanceNormalization(1, 0, ε) → Reshape(Shape(X))
///                                          → Mul(γ[C,1,…,1]) → Add(β[C,1,…,1])
/// For runtimes without GroupNormalization (or with a broken one); not for double X (ONNX Runtime has no double
/// InstanceNormalization; GroupNormalization-21 computes in stash_type, float by default). GroupNormalization-18 (opset 18–20) has one γ, β per
/// group: they are repeated over the group's C/G channels. Conditions: rank ≥ 3 known, C known; γ and β constant, or
/// tensors (graph inputs, computed) declared 1-D of X's type, reshaped to [C, 1, …] at run time (per-group ones through
/// Reshape [G, 1] → Expand [G, C/G] first).
/// </summary>
internal sealed class GroupNormLowering : RewriteRule<GroupNormLowering.LoweringPlan>
{
    public sealed record LoweringPlan(NodeProto Anchor, string X, string Output, long Groups, float Epsilon, int DataType,
        int Rank, double[]? Scale, double[]? Bias, long Channels = 0, string? ScaleTensor = null, string? BiasTensor = null) : Plan(Anchor, null)
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
        // Proven (a value_info claiming rank 3 for a 4-D X would put the [C, 1] constants on the height axis).
        if (g.ProvenShape(x)?.Length is not { } rank)
            return Match.UnprovenRank(g, x);
        if (rank < 3) return Match.Refuse(SkipReason.PatternMismatch, $"'{x}' has rank {rank}");
        if (gn.Input.Count < 3) return Match.Refuse(SkipReason.PatternMismatch, $"{Attributes.Describe(gn)} has {gn.Input.Count} inputs");
        long groups = Attributes.Int(gn, "num_groups", 0);
        if (groups <= 0) return Match.Refuse(SkipReason.PatternMismatch, $"{Attributes.Describe(gn)} has num_groups={groups}");
        if (g.ElemType(x) is not { } type || !ElementType.IsFoldable(type))
            return Match.Refuse(SkipReason.UnsupportedDataType, $"the element type of '{x}' is not known or not floating point");
        if (type == ElementType.Double)
            return Match.Refuse(SkipReason.UnsupportedDataType, $"'{x}' is double: ONNX Runtime has no double InstanceNormalization, and GroupNormalization-21 computes in its stash_type");
        bool perGroup = g.Opset < 21; // GroupNormalization-18: one scale/bias per group
        long? channels = Patterns.Channels(g, x);
        // Scale and bias: constants, or tensors (graph inputs, computed) of known shape reshaped at run time.
        string? scaleTensor = null, biasTensor = null;
        double[]? scale = null, bias = null;
        foreach (var (slot, role) in new[] { (1, "scale"), (2, "bias") })
        {
            string name = gn.Input[slot];
            if (Patterns.TryConstant(g, name, out var values, out _)) { if (slot == 1) scale = values; else bias = values; continue; }
            if (Patterns.DeclaredDims(g, name) is not [var length] || g.ElemType(name) != type)
                return Match.Refuse(SkipReason.ParameterNotConstant, $"{Attributes.Describe(gn)}'s {role} '{name}' is not constant and its shape is not declared as 1-D of the input's type");
            if (!perGroup) channels ??= length;
            long expected = perGroup ? groups : channels ?? length;
            if (length != expected)
                return Match.Refuse(SkipReason.GroupsDoNotDivideChannels, $"{role} '{name}' has {length} values, expected {expected}");
            if (slot == 1) scaleTensor = name; else biasTensor = name;
        }
        if (perGroup)
        {
            // Version 18: per-group parameters, repeated over each group's channels.
            if (channels is not { } c) return Match.Refuse(SkipReason.UnknownRank, $"the channel count of '{x}' is not known");
            if (c % groups != 0 || scale is not null && scale.Length != groups || bias is not null && bias.Length != groups)
                return Match.Refuse(SkipReason.GroupsDoNotDivideChannels, $"{groups} groups, {c} channels, {scale?.Length ?? bias?.Length} scales");
            long size = c / groups;
            if (scale is not null) scale = Enumerable.Range(0, (int)c).Select(i => scale[i / size]).ToArray();
            if (bias is not null) bias = Enumerable.Range(0, (int)c).Select(i => bias[i / size]).ToArray();
        }
        channels ??= (scale ?? bias)!.Length;
        if (channels % groups != 0 || (scale ?? bias) is { } v && v.Length != channels)
            return Match.Refuse(SkipReason.GroupsDoNotDivideChannels, $"{groups} groups do not divide {channels} channels");
        if ((Affine.FoldedValues.NotFinite("γ", type, scale ?? []) ?? Affine.FoldedValues.NotFinite("β", type, bias ?? [])) is { } overflow) return overflow;
        return new Match.Planned(new LoweringPlan(gn, x, gn.Output[0], groups, Attributes.Float(gn, "epsilon", 1e-5f), type, rank, scale, bias,
            channels.Value, scaleTensor, biasTensor));
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
        long[] perChannel = [plan.Channels, .. Enumerable.Repeat(1L, plan.Rank - 2)];
        var created = new List<string> { shape, ones, zeros };
        var records = new List<WeightRecord> { new NewConstant(ones, Enumerable.Repeat(1.0, (int)plan.Groups).ToArray()), new NewConstant(zeros, new double[plan.Groups]) };
        string V(string suffix) => editor.Names.FreshValue(b + suffix);
        string Shape(string suffix, params long[] dims)
        {
            string name = editor.AddInitializer(new TensorProto { DataType = (int)TensorProto.Types.DataType.Int64, Dims = { dims.Length }, Int64Data = { dims } }, b + suffix);
            created.Add(name);
            return name;
        }
        // A constant becomes [C, 1, …] now; a tensor is reshaped so at run time (per-group ones repeated per channel first).
        string Parameter(double[]? values, string? tensor, string role)
        {
            if (values is not null)
            {
                string c = editor.AddInitializer(TensorData.Create("", plan.DataType, perChannel, values), b + "_" + role);
                created.Add(c);
                records.Add(new NewConstant(c, values));
                return c;
            }
            string current = tensor!;
            if (plan.Channels != plan.Groups && editor.Index.Opset < 21)
            {
                string column = V($"_{role}_column"), repeated = V($"_{role}_repeated");
                editor.AddNode(new NodeProto { OpType = "Reshape", Input = { current, Shape($"_{role}_column_shape", plan.Groups, 1) }, Output = { column } }, $"{b}_{role}_column");
                editor.AddNode(new NodeProto { OpType = "Expand", Input = { column, Shape($"_{role}_expand_shape", plan.Groups, plan.Channels / plan.Groups) }, Output = { repeated } }, $"{b}_{role}_expand");
                current = repeated;
            }
            string result = V($"_{role}");
            editor.AddNode(new NodeProto { OpType = "Reshape", Input = { current, Shape($"_{role}_shape", perChannel) }, Output = { result } }, $"{b}_{role}_reshape");
            return result;
        }
        string gamma = Parameter(plan.Scale, plan.ScaleTensor, "gamma"), beta = Parameter(plan.Bias, plan.BiasTensor, "beta");
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
        return new Applied(created, records);
    }
}
