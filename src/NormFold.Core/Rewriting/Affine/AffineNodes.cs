using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.Affine;

/// <summary>
/// y = s·x + t along one axis as standalone nodes: Mul(x, s) → Add(·, t), the Mul left out when s is all 1 and the Add
/// when t is all 0 (not both: one node always produces y). Constants are shaped [C, 1, …, 1] to broadcast along
/// <c>axis</c> of a rank-r tensor (scalars when C = 1; with <c>fullRank</c>, [1, …, C, …, 1] of rank r, so that they
/// widen a tensor of lower rank), stored in the tensor's type, rounded once. Before opset 7,
/// Mul/Add broadcast only with broadcast=1, aligned at `axis`: the constants are [C] with those attributes.
/// </summary>
internal static class AffineNodes
{
    public static Applied Emit(GraphEditor editor, string x, string y, ChannelAffine map, int rank, int axis, int type, string baseName,
        bool fullRank = false)
    {
        long c = map.Channels;
        bool legacy = editor.Index.Opset < 7;
        long[] dims = c == 1 ? [] : legacy ? [c] : [c, .. Enumerable.Repeat(1L, rank - axis - 1)];
        if (fullRank && !legacy) dims = [.. Enumerable.Repeat(1L, rank - dims.Length), .. dims];
        bool mul = map.Scales || !map.Shifts, add = map.Shifts;
        var created = new List<string>();
        var records = new List<WeightRecord>();
        var nodes = new List<NodeProto>();
        string current = x;
        if (mul)
        {
            string s = editor.AddInitializer(TensorData.Create("", type, dims, map.Scale), baseName + "_scale");
            string output = add ? editor.Names.FreshValue(baseName + "_scaled") : y;
            nodes.Add(Node("Mul", current, s, output, legacy, c, axis));
            editor.AddNode(nodes[^1], baseName + "_mul");
            created.Add(s);
            records.Add(new NewConstant(s, map.Scale));
            current = output;
        }
        if (add)
        {
            string t = editor.AddInitializer(TensorData.Create("", type, dims, map.Shift), baseName + "_shift");
            nodes.Add(Node("Add", current, t, y, legacy, c, axis));
            editor.AddNode(nodes[^1], baseName + "_add");
            created.Add(t);
            records.Add(new NewConstant(t, map.Shift));
        }
        return new Applied(created, records, Composed: nodes);
    }

    /// <summary>Nodes <see cref="Emit"/> makes for this map (1 or 2).</summary>
    public static int Count(ChannelAffine map) => (map.Scales || !map.Shifts ? 1 : 0) + (map.Shifts ? 1 : 0);

    static NodeProto Node(string op, string a, string b, string y, bool legacy, long channels, int axis)
    {
        var n = new NodeProto { OpType = op, Input = { a, b }, Output = { y } };
        if (legacy)
        {
            n.Attribute.Add(new AttributeProto { Name = "broadcast", Type = AttributeProto.Types.AttributeType.Int, I = 1 });
            if (channels > 1) n.Attribute.Add(new AttributeProto { Name = "axis", Type = AttributeProto.Types.AttributeType.Int, I = axis });
        }
        return n;
    }
}
