using Google.Protobuf;
using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Tests.Builders;

/// <summary>Small synthetic models in a few lines: inputs, seeded initializers, nodes, outputs, opset.</summary>
public sealed class GraphBuilder
{
    public const int F32 = ElementType.Float, F16 = ElementType.Float16, BF16 = ElementType.BFloat16, F64 = ElementType.Double;
    readonly ModelProto _model = new() { IrVersion = 8, ProducerName = "NormFold.Tests" };
    public GraphProto Graph { get; }
    readonly Random _rng;
    int _counter;

    public GraphBuilder(long opset = 15, int seed = 1, GraphProto? graph = null)
    {
        Graph = graph ?? new GraphProto { Name = "test" };
        _model.Graph = Graph;
        _model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
        _rng = new Random(seed);
    }

    /// <summary>A builder for a subgraph (If/Loop body) sharing this builder's random stream.</summary>
    public GraphBuilder Body(string name) => new(Opset, _rng.Next(), new GraphProto { Name = name });

    public long Opset => _model.OpsetImport[0].Version;

    public static ValueInfoProto Value(string name, int type, long[]? dims)
    {
        var tt = new TypeProto.Types.Tensor { ElemType = type };
        if (dims != null)
        {
            tt.Shape = new TensorShapeProto();
            foreach (var d in dims)
                tt.Shape.Dim.Add(d < 0 ? new TensorShapeProto.Types.Dimension { DimParam = "N" } : new TensorShapeProto.Types.Dimension { DimValue = d });
        }
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = tt } };
    }

    /// <summary>A graph input; dims of -1 are dynamic ("N"); null dims means rank unknown.</summary>
    public string Input(string name, int type, long[]? dims)
    {
        Graph.Input.Add(Value(name, type, dims));
        return name;
    }

    public string Output(string name, int type = F32, long[]? dims = null)
    {
        Graph.Output.Add(Value(name, type, dims));
        return name;
    }

    /// <summary>An initializer of random values in [lo, hi).</summary>
    public string Init(string name, int type, long[] dims, double lo = -1, double hi = 1)
    {
        long count = dims.Aggregate(1L, (a, b) => a * b);
        var values = new double[count];
        for (int i = 0; i < count; i++) values[i] = lo + _rng.NextDouble() * (hi - lo);
        return Init(name, type, dims, values);
    }

    public string Init(string name, int type, long[] dims, double[] values)
    {
        Graph.Initializer.Add(TensorData.Create(name, type, dims, values));
        return name;
    }

    /// <summary>Replaces an initializer's type, shape and values.</summary>
    public void SetInit(string name, int type, long[] dims, double[] values)
    {
        var t = Graph.Initializer.Single(x => x.Name == name);
        Graph.Initializer[Graph.Initializer.IndexOf(t)] = TensorData.Create(name, type, dims, values);
    }

    /// <summary>Same values, held by a Constant node instead of an initializer.</summary>
    public string ConstantNode(string name, int type, long[] dims, double lo = -1, double hi = 1)
    {
        long count = dims.Aggregate(1L, (a, b) => a * b);
        var values = new double[count];
        for (int i = 0; i < count; i++) values[i] = lo + _rng.NextDouble() * (hi - lo);
        var t = TensorData.Create(name, type, dims, values);
        Node("Constant", [], name, attrs: [("value", t)]);
        return name;
    }

    public string Int64s(string name, params long[] values)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
        t.Dims.Add(values.Length);
        t.Int64Data.AddRange(values);
        Graph.Initializer.Add(t);
        return name;
    }

    /// <summary>Int64 values NormFold does not see as a constant (Cast of an int32 initializer): Squeeze axes or an Expand
    /// shape behind it leave the output's rank unproven. Returns the Cast's output.</summary>
    public string HiddenInt64s(string name, params long[] values)
    {
        var t = new TensorProto { Name = name + ".i32", DataType = (int)TensorProto.Types.DataType.Int32 };
        t.Dims.Add(values.Length);
        t.Int32Data.AddRange(values.Select(v => (int)v));
        Graph.Initializer.Add(t);
        Node("Cast", [t.Name], name, name + "_cast", ("to", (long)TensorProto.Types.DataType.Int64));
        return name;
    }

    /// <summary>BN parameters: γ, β, mean, var (var in [0.2, 2)). Returns their names.</summary>
    public string[] BnParams(string prefix, long channels, int type = F32)
    {
        long[] d = [channels];
        return [Init(prefix + ".gamma", type, d, 0.5, 1.5), Init(prefix + ".beta", type, d, -0.5, 0.5),
                Init(prefix + ".mean", type, d, -0.5, 0.5), Init(prefix + ".var", type, d, 0.2, 2)];
    }

    public NodeProto Node(string op, string[] inputs, string output, string? name = null, params (string Name, object Value)[] attrs) =>
        NodeMulti(op, inputs, [output], name, attrs);

    public NodeProto NodeMulti(string op, string[] inputs, string[] outputs, string? name = null, params (string Name, object Value)[] attrs)
    {
        var n = new NodeProto { OpType = op, Name = name ?? $"{op}_{_counter++}" };
        n.Input.AddRange(inputs);
        n.Output.AddRange(outputs);
        foreach (var (an, av) in attrs) n.Attribute.Add(Attr(an, av));
        Graph.Node.Add(n);
        return n;
    }

    public static AttributeProto Attr(string name, object value) => value switch
    {
        long i => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = i },
        int i => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = i },
        float f => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = f },
        double f => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = (float)f },
        long[] ints => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints, Ints = { ints } },
        TensorProto t => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Tensor, T = t },
        GraphProto g => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Graph, G = g },
        string s => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(s) },
        _ => throw new ArgumentException($"attribute type {value.GetType()}"),
    };

    /// <summary>BatchNormalization with fresh parameters; returns its output name.</summary>
    public string Bn(string x, long channels, string output, int paramType = F32, float epsilon = 1e-5f, string? name = null)
    {
        var p = BnParams(name ?? output, channels, paramType);
        Node("BatchNormalization", [x, .. p], output, name ?? "bn_" + output, ("epsilon", epsilon));
        return output;
    }

    public OnnxModel Build() => new(_model.Clone());

    public ModelProto Proto => _model;
}
