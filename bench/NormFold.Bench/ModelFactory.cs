using Google.Protobuf;
using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Bench;

/// <summary>Models generated on demand (not committed): ResNet-50-shaped networks with Conv+BN everywhere, and a
/// network of decomposed GroupNorms. Weights are seeded He-normal; BN statistics are set so activations stay O(1).</summary>
public sealed class ModelFactory(int seed)
{
    readonly Random _rng = new(seed);
    GraphProto _g = new();
    int _n;

    double Normal() => Math.Sqrt(-2 * Math.Log(1 - _rng.NextDouble())) * Math.Cos(2 * Math.PI * _rng.NextDouble());

    string Init(string name, long[] dims, Func<double> value, int type = ElementType.Float)
    {
        long count = dims.Aggregate(1L, (a, b) => a * b);
        var v = new double[count];
        for (long i = 0; i < count; i++) v[i] = value();
        _g.Initializer.Add(TensorData.Create(name, type, dims, v));
        return name;
    }

    string Node(string op, string[] inputs, params (string, object)[] attrs)
    {
        string output = $"{op.ToLowerInvariant()}_{_n++}";
        var node = new NodeProto { OpType = op, Name = output, Input = { inputs }, Output = { output } };
        foreach (var (name, value) in attrs)
            node.Attribute.Add(value switch
            {
                long i => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = i },
                float f => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = f },
                long[] ints => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints, Ints = { ints } },
                _ => throw new ArgumentException(name),
            });
        _g.Node.Add(node);
        return output;
    }

    string ConvBn(string x, long cin, long cout, long k, long stride)
    {
        double std = Math.Sqrt(2.0 / (cin * k * k));
        string w = Init($"w{_n}", [cout, cin, k, k], () => Normal() * std);
        string c = Node("Conv", [x, w], ("kernel_shape", new[] { k, k }), ("strides", new[] { stride, stride }), ("pads", new[] { k / 2, k / 2, k / 2, k / 2 }));
        string p = $"bn{_n}";
        Init(p + ".gamma", [cout], () => 1 + 0.1 * Normal());
        Init(p + ".beta", [cout], () => 0.1 * Normal());
        Init(p + ".mean", [cout], () => 0.1 * Normal());
        Init(p + ".var", [cout], () => 0.5 + _rng.NextDouble());
        return Node("BatchNormalization", [c, p + ".gamma", p + ".beta", p + ".mean", p + ".var"], ("epsilon", 1e-5f));
    }

    /// <summary>ResNet-50 (or, with <paramref name="widthDivisor"/>, a narrower one): 53 Conv+BN, ~25.5 M parameters.</summary>
    public ModelProto ResNet50(int widthDivisor = 1)
    {
        _g = new GraphProto { Name = "resnet50" };
        _g.Input.Add(Value("input", [-1, 3, 224, 224]));
        long w = 64 / widthDivisor;
        string x = Node("Relu", [ConvBn("input", 3, w, 7, 2)]);
        x = Node("MaxPool", [x], ("kernel_shape", new long[] { 3, 3 }), ("strides", new long[] { 2, 2 }), ("pads", new long[] { 1, 1, 1, 1 }));
        long cin = w;
        int[] blocks = [3, 4, 6, 3];
        for (int stage = 0; stage < 4; stage++)
        {
            long mid = w << stage, cout = mid * 4;
            for (int b = 0; b < blocks[stage]; b++)
            {
                long stride = b == 0 && stage > 0 ? 2 : 1;
                string y = Node("Relu", [ConvBn(x, cin, mid, 1, 1)]);
                y = Node("Relu", [ConvBn(y, mid, mid, 3, stride)]);
                y = ConvBn(y, mid, cout, 1, 1);
                string shortcut = b == 0 ? ConvBn(x, cin, cout, 1, stride) : x;
                x = Node("Relu", [Node("Add", [y, shortcut])]);
                cin = cout;
            }
        }
        x = Node("Flatten", [Node("GlobalAveragePool", [x])]);
        string fcw = Init("fc.w", [1000, cin], () => Normal() / Math.Sqrt(cin));
        string fcb = Init("fc.b", [1000], () => 0.01 * Normal());
        string logits = Node("Gemm", [x, fcw, fcb], ("transB", 1L));
        _g.Node[^1].Output[0] = "output";
        _g.Output.Add(Value("output", [-1, 1000]));
        return Model(_g, 13);
    }

    /// <summary>Conv → decomposed GroupNorm (as torch exports it below opset 18) → ReLU, repeated.</summary>
    public ModelProto GroupNormNet(int layers = 12, long channels = 64, long groups = 32, long size = 32)
    {
        _g = new GraphProto { Name = "gn" };
        _g.Input.Add(Value("input", [1, channels, size, size]));
        var shape = new TensorProto { Name = "gshape", DataType = 7, Dims = { 3 }, Int64Data = { 0, groups, -1 } };
        _g.Initializer.Add(shape);
        Init("ones", [groups], () => 1);
        Init("zeros", [groups], () => 0);
        string x = "input";
        for (int l = 0; l < layers; l++)
        {
            string w = Init($"w{l}", [channels, channels, 3, 3], () => Normal() * Math.Sqrt(2.0 / (9 * channels)));
            string c = Node("Conv", [x, w], ("pads", new long[] { 1, 1, 1, 1 }));
            string r1 = Node("Reshape", [c, "gshape"]);
            string inorm = Node("InstanceNormalization", [r1, "ones", "zeros"], ("epsilon", 1e-5f));
            string s = Node("Shape", [c]);
            string r2 = Node("Reshape", [inorm, s]);
            string gamma = Init($"g{l}", [channels, 1, 1], () => 1 + 0.1 * Normal());
            string beta = Init($"b{l}", [channels, 1, 1], () => 0.1 * Normal());
            x = Node("Relu", [Node("Add", [Node("Mul", [r2, gamma]), beta])]);
        }
        _g.Node[^1].Output[0] = "output";
        _g.Output.Add(Value("output", [1, channels, size, size]));
        return Model(_g, 13);
    }

    static ValueInfoProto Value(string name, long[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims) shape.Dim.Add(d < 0 ? new TensorShapeProto.Types.Dimension { DimParam = "N" } : new TensorShapeProto.Types.Dimension { DimValue = d });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = 1, Shape = shape } } };
    }

    static ModelProto Model(GraphProto g, long opset)
    {
        var m = new ModelProto { IrVersion = 8, ProducerName = "NormFold.Bench", Graph = g };
        m.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
        return m;
    }

    /// <summary>The same model with every float tensor and the declared input/output stored as float16.</summary>
    public static ModelProto ToFloat16(ModelProto m)
    {
        var copy = m.Clone();
        var model = new OnnxModel(copy);
        foreach (var t in copy.Graph.Initializer.Where(t => t.DataType == ElementType.Float).ToList())
        {
            var v = model.ReadDoubles(t);
            var h = TensorData.Create(t.Name, ElementType.Float16, t.Dims, v);
            t.DataType = ElementType.Float16;
            t.RawData = h.RawData;
        }
        foreach (var v in copy.Graph.Input.Concat(copy.Graph.Output)) v.Type.TensorType.ElemType = ElementType.Float16;
        return copy;
    }

    /// <summary>The same model with every float initializer's elements in float_data instead of raw_data (as CNTK and
    /// other older exporters write them).</summary>
    public static ModelProto ToFloatData(ModelProto m)
    {
        var copy = m.Clone();
        foreach (var t in copy.Graph.Initializer.Where(t => t.DataType == ElementType.Float && t.HasRawData))
        {
            var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.RawData.Span).ToArray();
            t.ClearRawData();
            t.FloatData.AddRange(values);
        }
        return copy;
    }

    public static void Write(ModelProto m, string path)
    {
        using var f = File.Create(path);
        m.WriteTo(f);
    }
}
