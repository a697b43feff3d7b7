using NormFold.Graph;
using NormFold.Onnx.Proto;

namespace NormFold.Rewriting.Normalization;

/// <summary>Small facts about tensors that the normalization rules need: constant values seen through Unsqueeze,
/// per-channel broadcasting, channel counts.</summary>
internal static class Patterns
{
    /// <summary>A constant's values and dims, also when it reaches its reader through Unsqueeze nodes.</summary>
    public static bool TryConstant(GraphIndex g, string name, out double[] values, out long[] dims)
    {
        values = []; dims = [];
        if (g.TryGetConstant(name, out var t) && Tensors.ElementType.IsFoldable(t.DataType))
        {
            values = g.Model.ReadDoubles(t);
            dims = t.Dims.ToArray();
            return true;
        }
        if (g.Producer(name) is { OpType: "Unsqueeze" } u && Attributes.IsDefaultDomain(u) && TryConstant(g, u.Input[0], out values, out var inner))
        {
            long[]? axes = Attributes.Ints(u, "axes")?.ToArray();
            if (axes is null && u.Input.Count > 1 && g.TryGetConstant(u.Input[1], out var a)) axes = g.Model.ReadInt64s(a);
            if (axes is null) return false;
            int rank = inner.Length + axes.Length;
            var normalized = axes.Select(x => x < 0 ? x + rank : x).ToHashSet();
            if (normalized.Count != axes.Length || normalized.Any(x => x < 0 || x >= rank)) return false; // invalid axes
            var result = new long[rank];
            for (int d = 0, k = 0; d < rank; d++) result[d] = normalized.Contains(d) ? 1 : inner[k++];
            dims = result;
            return true;
        }
        return false;
    }

    /// <summary>The nodes a swap replaces, with the Unsqueeze nodes that feed them a constant and that nothing else reads
    /// (torch's γ/β at opset ≤ 12): they go with them, so an opset raise need not keep them valid.</summary>
    public static List<NodeProto> WithConstantFeeders(GraphIndex g, IReadOnlyList<NodeProto> replaced)
    {
        var all = replaced.ToList();
        var set = new HashSet<NodeProto>(all, ReferenceEqualityComparer.Instance);
        for (int i = 0; i < all.Count; i++)
            foreach (var input in all[i].Input)
                if (g.Producer(input) is { OpType: "Unsqueeze" } u && !set.Contains(u) && !g.IsGraphOutput(input)
                    && g.Consumers(input).All(set.Contains) && TryConstant(g, input, out _, out _))
                {
                    set.Add(u);
                    all.Add(u);
                }
        return all;
    }

    /// <summary>
    /// Values of a constant that multiplies or adds to a [N, C, …] tensor of the given rank, one per channel:
    /// its dims, right-aligned against the tensor's, must be 1 everywhere except axis 1, where they are 1 or C.
    /// </summary>
    public static double[]? PerChannel(double[] values, long[] dims, int rank, long channels)
    {
        if (dims.Length > rank) return null;
        var padded = Enumerable.Repeat(1L, rank - dims.Length).Concat(dims).ToArray();
        for (int d = 0; d < rank; d++)
            if (d != 1 && padded[d] != 1) return null;
        if (rank >= 2 && padded[1] != 1 && padded[1] != channels) return null;
        var result = new double[channels];
        for (int c = 0; c < channels; c++) result[c] = values[rank >= 2 && padded[1] == channels ? c : 0];
        return result;
    }

    /// <summary>The channel count (dim 1) of a tensor: proven (never from a value_info), or from the weights of the conv that made it
    /// (through elementwise ops), or null.</summary>
    public static long? Channels(GraphIndex g, string name)
    {
        for (int step = 0; step < 1000; step++)
        {
            if (g.ProvenShape(name) is [_, var c, ..] && c >= 0)
                return c;
            var p = g.Producer(name);
            if (p is null || !Attributes.IsDefaultDomain(p)) return null;
            switch (p.OpType)
            {
                case "Conv" when g.TryGetConstant(p.Input[1], out var w) && w.Dims.Count > 0:
                    return w.Dims[0];
                case "ConvTranspose" when g.TryGetConstant(p.Input[1], out var w) && w.Dims.Count > 1:
                    return w.Dims[1] * Attributes.Int(p, "group", 1);
                case "BatchNormalization" or "InstanceNormalization" when p.Input.Count > 1
                    && g.TryGetConstant(p.Input[1], out var s) && s.Dims.Count == 1:
                    return s.Dims[0]; // one scale per channel
                case "Relu" or "LeakyRelu" or "Sigmoid" or "Tanh" or "Clip" or "Identity" or "Dropout" or "HardSwish"
                    or "HardSigmoid" or "Elu" or "Selu" or "Gelu" or "Mish" or "Softplus" or "Erf" or "Neg" or "Abs"
                    or "GroupNormalization" or "Cast":
                    name = p.Input[0];
                    break;
                case "Reshape" when p.Input.Count > 1 && g.Producer(p.Input[1]) is { OpType: "Shape" } shapeOf && shapeOf.Attribute.Count == 0:
                    name = shapeOf.Input[0]; // reshaped back to another tensor's shape: that tensor's channels
                    break;
                case "Add" or "Sub" or "Mul" or "Div":
                    // The non-constant operand carries the channels (a per-channel constant broadcasts into it).
                    var operand = p.Input.FirstOrDefault(i => !g.TryGetConstant(i, out _));
                    if (operand is null) return null;
                    name = operand;
                    break;
                default:
                    return null;
            }
        }
        return null;
    }

    /// <summary>
    /// Removes a matched pattern and puts one normalization node (X, scale, bias) with the given attributes in its place;
    /// the node takes the pattern's last output name. Shared by the swaps. Returns the new constants' names.
    /// </summary>
    public static Applied ReplaceByNormalization(GraphEditor editor, NodeProto anchor, IReadOnlyList<NodeProto> removed,
        string opType, string x, string output, int dataType, long[] dims, double[] scale, double[] bias, params AttributeProto[] attributes) =>
        ReplaceByNormalization(editor, anchor, removed, opType, x, output, dataType, dims, scale, bias, null, null, attributes);

    /// <summary>The same, with γ and/or β given as existing tensors (graph inputs, computed tensors of the right shape)
    /// instead of values: <paramref name="scaleName"/>/<paramref name="biasName"/> are used as they are.</summary>
    public static Applied ReplaceByNormalization(GraphEditor editor, NodeProto anchor, IReadOnlyList<NodeProto> removed,
        string opType, string x, string output, int dataType, long[] dims, double[]? scale, double[]? bias, string? scaleName, string? biasName,
        params AttributeProto[] attributes)
    {
        string baseName = anchor.Name.Length > 0 ? anchor.Name : output;
        var created = new List<string>();
        var records = new List<WeightRecord>();
        string Parameter(string? name, double[]? values, string role)
        {
            if (name is not null) return name;
            string t = editor.AddInitializer(Tensors.TensorData.Create("", dataType, dims, values!), $"{baseName}_{opType}_{role}");
            created.Add(t);
            records.Add(new NewConstant(t, values!));
            return t;
        }
        string s = Parameter(scaleName, scale, "scale"), b = Parameter(biasName, bias, "bias");
        foreach (var n in removed) editor.RemoveNode(n);
        var node = new NodeProto { OpType = opType, Input = { x, s, b }, Output = { output } };
        node.Attribute.AddRange(attributes);
        editor.AddNode(node, $"{baseName}_{opType}");
        return new Applied(created, records);
    }

    /// <summary>A tensor's dims when the model declares all of them, else null.</summary>
    public static long[]? DeclaredDims(GraphIndex g, string name) =>
        g.DeclaredType(name)?.TensorType?.Shape is { } shape && shape.Dim.All(d => d.HasDimValue)
            ? shape.Dim.Select(d => d.DimValue).ToArray() : null;

    /// <summary>Whether <paramref name="name"/> is computed (through any chain of nodes) from one of <paramref name="nodes"/>.</summary>
    public static bool DependsOn(GraphIndex g, string name, IReadOnlyCollection<NodeProto> nodes)
    {
        var set = nodes.ToHashSet(ReferenceEqualityComparer.Instance);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var work = new Stack<string>([name]);
        while (work.Count > 0)
        {
            if (!seen.Add(work.Pop() is var n ? n : "") || g.Producer(n) is not { } p) continue;
            if (set.Contains(p)) return true;
            foreach (var i in GraphIndex.ReadNames(p)) work.Push(i);
        }
        return false;
    }

    public static AttributeProto Float(string name, float value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };
    public static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    /// <summary>The single reader of a tensor, or null when it has several, none, or is a graph output.</summary>
    public static NodeProto? SoleReader(GraphIndex g, string name)
    {
        if (g.IsGraphOutput(name)) return null;
        var c = g.Consumers(name);
        return c.Count == 1 ? c[0] : null;
    }
}
