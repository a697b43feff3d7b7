using Google.Protobuf;
using NormFold.Onnx.Proto;
using NormFold.Tensors;
using static NormFold.Tests.Builders.GraphBuilder;

namespace NormFold.Tests.Fuzz;

/// <summary>Small edits on a ModelProto shared by the mutation families.</summary>
public static class ProtoEdit
{
    /// <summary>The graph and every subgraph below it (iteratively: a hostile model may nest deeply).</summary>
    public static List<GraphProto> Graphs(ModelProto m)
    {
        var all = new List<GraphProto>();
        var stack = new Stack<GraphProto>();
        stack.Push(m.Graph);
        while (stack.Count > 0)
        {
            var g = stack.Pop();
            all.Add(g);
            foreach (var n in g.Node)
                foreach (var a in n.Attribute)
                {
                    if (a.G != null) stack.Push(a.G);
                    foreach (var sg in a.Graphs) stack.Push(sg);
                }
        }
        return all;
    }

    public static List<(GraphProto Graph, NodeProto Node)> Nodes(ModelProto m, string? op = null) =>
        Graphs(m).SelectMany(g => g.Node.Where(n => op == null || n.OpType == op).Select(n => (g, n))).ToList();

    public static T Pick<T>(Random r, IReadOnlyList<T> items) => items[r.Next(items.Count)];

    /// <summary>The initializer with this name in any graph (the innermost one first is not needed: names are unique in bases).</summary>
    public static (GraphProto Graph, TensorProto Tensor)? Init(ModelProto m, string name)
    {
        foreach (var g in Graphs(m))
            foreach (var t in g.Initializer)
                if (t.Name == name) return (g, t);
        return null;
    }

    public static void Replace(GraphProto g, TensorProto old, TensorProto replacement) =>
        g.Initializer[g.Initializer.IndexOf(old)] = replacement;

    public static double[] Random(Random r, long count, double lo = -1, double hi = 1)
    {
        var v = new double[Math.Max(0, count)];
        for (int i = 0; i < v.Length; i++) v[i] = lo + r.NextDouble() * (hi - lo);
        return v;
    }

    /// <summary>A tensor of any element type, including integer, bool and string ones that TensorData does not write.</summary>
    public static TensorProto Make(string name, int type, long[] dims, double[] values)
    {
        var t = new TensorProto { Name = name, DataType = type };
        t.Dims.AddRange(dims);
        switch (type)
        {
            case ElementType.Float or ElementType.Double or ElementType.Float16 or ElementType.BFloat16:
                return TensorData.Create(name, type, dims, values);
            case 7: t.Int64Data.AddRange(values.Select(v => (long)v)); break;           // int64
            case 6 or 5 or 4 or 3 or 2: t.Int32Data.AddRange(values.Select(v => (int)v)); break; // int32/16/8, uint16/8
            case 9: t.Int32Data.AddRange(values.Select(v => v != 0 ? 1 : 0)); break;     // bool
            case 8: t.StringData.AddRange(values.Select(v => ByteString.CopyFromUtf8(v.ToString("G3")))); break;
            default: t.RawData = ByteString.CopyFrom(new byte[values.Length * 4]); break; // unknown: 4 bytes each
        }
        return t;
    }

    public static long Count(IEnumerable<long> dims) => dims.Aggregate(1L, (a, b) => a * b);

    public static void SetAttr(NodeProto n, string name, object? value)
    {
        var old = n.Attribute.FirstOrDefault(a => a.Name == name);
        if (old != null) n.Attribute.Remove(old);
        if (value != null) n.Attribute.Add(Attr(name, value));
    }

    /// <summary>An attribute of the given name with a type the operator does not expect.</summary>
    public static AttributeProto WrongTyped(Random r, string name) => r.Next(5) switch
    {
        0 => Attr(name, 3L),
        1 => Attr(name, new long[] { 1, 2 }),
        2 => Attr(name, "abc"),
        3 => Attr(name, Make(name, ElementType.Float, [1], [0.5])),
        _ => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Floats, Floats = { 1f, 2f } },
    };

    /// <summary>Declared shapes: dims of -1 become a symbolic "N".</summary>
    public static ValueInfoProto Info(string name, int type, long[]? dims) => Value(name, type, dims);

    /// <summary>Every tensor name produced or held anywhere in the main graph.</summary>
    public static List<string> Names(GraphProto g) =>
        g.Input.Select(i => i.Name).Concat(g.Initializer.Select(t => t.Name)).Concat(g.Node.SelectMany(n => n.Output))
            .Where(s => s.Length > 0).Distinct().ToList();
}
