using NormFold.Onnx.Proto;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;

namespace NormFold.Tests.Fuzz;

/// <summary>The healthy models mutations start from: small synthetic graphs and the bundled real models.</summary>
public static class Bases
{
    public sealed record Base(string Name, Func<Random, ModelProto> Make, params string[] Tags);

    static readonly Dictionary<string, byte[]> RealBytes = new();

    static ModelProto Real(string file)
    {
        byte[] bytes;
        lock (RealBytes)
            if (!RealBytes.TryGetValue(file, out bytes!))
                RealBytes[file] = bytes = File.ReadAllBytes(Path.Combine(TestSupport.ModelsDir, file));
        return ModelProto.Parser.ParseFrom(bytes);
    }

    public static readonly Base[] All =
    [
        new("conv-bn", ConvBn, "bn", "conv"),
        new("conv-bn-relu-shared", ConvBnShared, "bn", "conv"),
        new("convtranspose-bn", ConvTransposeBn, "bn", "convt"),
        new("gemm-bn", GemmBn, "bn"),
        new("matmul-bn", MatMulBn, "bn"),
        new("standalone-bn", StandaloneBn, "bn"),
        new("conv-mul-add", ConvMulAdd, "conv"),
        new("if-conv-bn", IfConvBn, "bn", "sub"),
        new("loop-bn", LoopBn, "bn", "sub"),
        new("groupnorm", r => GroupNorm(r), "gn"),
        new("layernorm", r => LayerNorm(r), "ln"),
        new("real:mlp_bn1d", _ => Real("mlp_bn1d.onnx"), "bn", "real"),
        new("real:decoder_convtranspose", _ => Real("decoder_convtranspose.onnx"), "bn", "real", "convt"),
        new("real:conv1d_conv3d", _ => Real("conv1d_conv3d.onnx"), "bn", "real", "conv"),
        new("real:groupnorm_op13", _ => Real("groupnorm_op13.onnx"), "gn", "real"),
        new("real:groupnorm_rank3_op13", _ => Real("groupnorm_rank3_op13.onnx"), "gn", "real"),
        new("real:groupnorm_op17", _ => Real("groupnorm_op17.onnx"), "gn", "real"),
        new("real:layernorm_op13", _ => Real("layernorm_op13.onnx"), "ln", "real"),
        new("real:resnet_tiny", _ => Real("resnet_tiny.onnx"), "bn", "real", "conv", "big"),
        new("real:resnet_tiny_constants", _ => Real("resnet_tiny_constants.onnx"), "bn", "real", "conv", "big"),
        new("real:resnet_tiny_fp16", _ => Real("resnet_tiny_fp16.onnx"), "bn", "real", "conv", "big"),
    ];

    /// <summary>A base with every one of the tags; real models and big ones less often.</summary>
    public static Base Pick(Random r, params string[] tags)
    {
        var fit = All.Where(b => tags.All(b.Tags.Contains)).ToList();
        for (int attempt = 0; ; attempt++)
        {
            var b = fit[r.Next(fit.Count)];
            if (b.Tags.Contains("big") && attempt < 3 && r.Next(4) != 0) continue;
            return b;
        }
    }

    static long Opset(Random r, params long[] choices) => choices[r.Next(choices.Length)];

    static ModelProto ConvBn(Random r)
    {
        var g = new GraphBuilder(Opset(r, 9, 11, 13, 15, 17), r.Next());
        long c = 1 + r.Next(4), m = 1 + r.Next(5), k = 1 + 2 * r.Next(2);
        g.Input("x", F32, [1, c, 5, 5]);
        g.Init("w", F32, [m, c, k, k]);
        string[] ins = r.Next(2) == 0 ? ["x", "w"] : ["x", "w", g.Init("b", F32, [m])];
        g.Node("Conv", ins, "c", "conv", ("pads", new long[] { k / 2, k / 2, k / 2, k / 2 }));
        g.Bn("c", m, "n", name: "bn");
        g.Node("Relu", ["n"], "y", "relu");
        g.Output("y", F32, [1, m, 5, 5]);
        return g.Proto;
    }

    /// <summary>The conv's output is also read elsewhere (a graph output or a second reader): the BN cannot absorb.</summary>
    static ModelProto ConvBnShared(Random r)
    {
        var g = new GraphBuilder(15, r.Next());
        g.Input("x", F32, [1, 3, 4, 4]);
        g.Init("w", F32, [4, 3, 3, 3]);
        g.Node("Conv", ["x", "w"], "c", "conv", ("pads", new long[] { 1, 1, 1, 1 }));
        g.Bn("c", 4, "n", name: "bn");
        g.Output("n", F32, [1, 4, 4, 4]);
        if (r.Next(2) == 0) g.Output("c", F32, [1, 4, 4, 4]);
        else { g.Node("Relu", ["c"], "side", "relu"); g.Output("side", F32, [1, 4, 4, 4]); }
        return g.Proto;
    }

    static ModelProto ConvTransposeBn(Random r)
    {
        var g = new GraphBuilder(Opset(r, 11, 13, 15), r.Next());
        long c = 2 * (1 + r.Next(2)), groups = r.Next(2) == 0 ? 1 : 2, mg = 1 + r.Next(3);
        g.Input("x", F32, [1, c, 3, 3]);
        g.Init("w", F32, [c, mg, 3, 3]);
        g.Node("ConvTranspose", ["x", "w"], "c", "convt", ("group", groups), ("strides", new long[] { 2, 2 }));
        g.Bn("c", mg * groups, "y", name: "bn");
        g.Output("y", F32, null);
        return g.Proto;
    }

    static ModelProto GemmBn(Random r)
    {
        var g = new GraphBuilder(Opset(r, 9, 13, 15), r.Next());
        long k = 2 + r.Next(4), n = 1 + r.Next(5);
        bool transB = r.Next(2) == 0;
        g.Input("x", F32, [2, k]);
        g.Init("B", F32, transB ? [n, k] : [k, n]);
        g.Init("C", F32, r.Next(2) == 0 ? [n] : [1, n]);
        g.Node("Gemm", ["x", "B", "C"], "gm", "gemm", ("transB", transB ? 1L : 0L), ("alpha", 0.5f + (float)r.NextDouble()));
        g.Bn("gm", n, "y", name: "bn");
        g.Output("y", F32, [2, n]);
        return g.Proto;
    }

    static ModelProto MatMulBn(Random r)
    {
        var g = new GraphBuilder(Opset(r, 9, 13, 15), r.Next());
        long k = 2 + r.Next(4), n = 1 + r.Next(5);
        g.Input("x", F32, [3, k]);
        g.Init("B", F32, [k, n]);
        g.Node("MatMul", ["x", "B"], "mm", "matmul");
        string bnIn = "mm";
        if (r.Next(2) == 0) { g.Init("bias", F32, [n]); g.Node("Add", ["mm", "bias"], "mb", "add"); bnIn = "mb"; }
        g.Bn(bnIn, n, "y", name: "bn");
        g.Output("y", F32, [3, n]);
        return g.Proto;
    }

    static ModelProto StandaloneBn(Random r)
    {
        var g = new GraphBuilder(Opset(r, 7, 9, 14, 15), r.Next());
        long c = 1 + r.Next(4);
        long[] dims = r.Next(3) switch { 0 => [2, c], 1 => [1, c, 3], _ => [1, c, 2, 3] };
        g.Input("x", F32, dims);
        g.Node("Relu", ["x"], "a", "relu");
        g.Bn("a", c, "y", name: "bn");
        g.Output("y", F32, dims);
        return g.Proto;
    }

    static ModelProto ConvMulAdd(Random r)
    {
        var g = new GraphBuilder(15, r.Next());
        g.Input("x", F32, [1, 3, 4, 4]);
        g.Init("w", F32, [4, 3, 1, 1]);
        g.Node("Conv", ["x", "w"], "c", "conv");
        g.Init("s", F32, r.Next(2) == 0 ? [4, 1, 1] : [1, 4, 1, 1], 0.5, 2);
        g.Init("t", F32, [4, 1, 1]);
        g.Node(r.Next(2) == 0 ? "Mul" : "Div", ["c", "s"], "m", "mul");
        g.Node(r.Next(2) == 0 ? "Add" : "Sub", ["m", "t"], "y", "add");
        g.Output("y", F32, [1, 4, 4, 4]);
        return g.Proto;
    }

    static ModelProto IfConvBn(Random r)
    {
        var g = new GraphBuilder(15, r.Next());
        g.Input("x", F32, [1, 3, 4, 4]);
        g.Input("cond", 9, []);
        g.Init("w", F32, [4, 3, 3, 3]);
        GraphProto Branch(string tag)
        {
            var b = g.Body(tag);
            b.Node("Conv", ["x", "w"], tag + "_c", tag + "_conv", ("pads", new long[] { 1, 1, 1, 1 }));
            b.Bn(tag + "_c", 4, tag + "_y", name: tag + "_bn");
            b.Output(tag + "_y", F32, null);
            return b.Graph;
        }
        g.Node("If", ["cond"], "y", "if", ("then_branch", Branch("then")), ("else_branch", Branch("else")));
        g.Output("y", F32, null);
        return g.Proto;
    }

    static ModelProto LoopBn(Random r)
    {
        var g = new GraphBuilder(15, r.Next());
        g.Input("x", F32, [1, 2, 3]);
        g.Int64s("trip", 2);
        g.Graph.Initializer[^1].Dims.Clear(); // scalar trip count
        var b = g.Body("body");
        b.Input("i", 7, []);
        b.Input("cond_in", 9, []);
        b.Input("acc", F32, [1, 2, 3]);
        b.Node("Identity", ["cond_in"], "cond_out", "cond_id");
        b.Bn("acc", 2, "acc_bn", name: "body_bn");
        b.Node("Relu", ["acc_bn"], "acc_out", "body_relu");
        b.Output("cond_out", 9, []);
        b.Output("acc_out", F32, [1, 2, 3]);
        // The body's BN parameters live in the outer graph (outer-scope references).
        foreach (var t in b.Graph.Initializer.ToList()) { b.Graph.Initializer.Remove(t); g.Graph.Initializer.Add(t); }
        g.Graph.Initializer.Add(new TensorProto { Name = "true", DataType = 9, Int32Data = { 1 } });
        g.Node("Loop", ["trip", "true", "x"], "y", "loop", ("body", b.Graph));
        g.Output("y", F32, null);
        return g.Proto;
    }

    /// <summary>X → Reshape([0,G,−1]) → InstanceNormalization → Reshape(Shape(X)) → Mul γ → Add β.</summary>
    public static ModelProto GroupNorm(Random r, long? opset = null)
    {
        var g = new GraphBuilder(opset ?? Opset(r, 11, 13, 17, 18, 21), r.Next());
        long groups = 1 + r.Next(3), c = groups * (1 + r.Next(3));
        int spatial = 1 + r.Next(2);
        long[] x = [1, c, .. Enumerable.Repeat(3L, spatial)];
        g.Input("x", F32, x);
        g.Int64s("gshape", 0, groups, -1);
        g.Node("Reshape", ["x", "gshape"], "r1", "reshape1");
        g.Init("in_scale", F32, [groups], Enumerable.Repeat(1.0, (int)groups).ToArray());
        g.Init("in_bias", F32, [groups], new double[groups]);
        g.Node("InstanceNormalization", ["r1", "in_scale", "in_bias"], "in", "instnorm", ("epsilon", 1e-5f));
        g.Node("Shape", ["x"], "xshape", "shape");
        g.Node("Reshape", ["in", "xshape"], "r2", "reshape2");
        long[] pc = [c, .. Enumerable.Repeat(1L, spatial)];
        g.Init("gamma", F32, pc, 0.5, 1.5);
        g.Init("beta", F32, pc, -0.5, 0.5);
        g.Node("Mul", ["r2", "gamma"], "m", "mul");
        g.Node("Add", ["m", "beta"], "y", "add");
        g.Output("y", F32, x);
        return g.Proto;
    }

    /// <summary>ReduceMean → Sub → Pow(2) → ReduceMean → Add ε → Sqrt → Div → Mul γ → Add β (axes as attribute below 18).</summary>
    public static ModelProto LayerNorm(Random r, long? opset = null)
    {
        long op = opset ?? Opset(r, 9, 11, 13, 17, 18);
        var g = new GraphBuilder(op, r.Next());
        long[] x = r.Next(2) == 0 ? [2, 3, 4] : [1, 2, 3, 4];
        long[] axes = r.Next(3) == 0 ? [-2, -1] : [-1];
        g.Input("x", F32, x);
        LayerNormOf(g, "x", x[^axes.Length..], axes, op);
        g.Output("y", F32, x);
        return g.Proto;
    }

    /// <summary>The decomposition on <paramref name="x"/> over <paramref name="axes"/> (γ, β of dims <paramref name="norm"/>);
    /// its result is "y".</summary>
    public static void LayerNormOf(GraphBuilder g, string x, long[] norm, long[] axes, long op)
    {
        (string, object)[] axesAttr = op >= 18 ? [] : [("axes", axes)];
        string[] Reduce(string input, string axesName) => op >= 18 ? [input, g.Int64s(axesName, axes)] : [input];
        g.Node("ReduceMean", Reduce(x, "axes_m"), "m", "mean", axesAttr);
        g.Node("Sub", [x, "m"], "d", "sub");
        g.Init("two", F32, [], [2]);
        g.Node("Pow", ["d", "two"], "p", "pow");
        g.Node("ReduceMean", Reduce("p", "axes_v"), "v", "var", axesAttr);
        g.Init("eps", F32, [], [1e-5]);
        g.Node("Add", ["v", "eps"], "ve", "add_eps");
        g.Node("Sqrt", ["ve"], "s", "sqrt");
        g.Node("Div", ["d", "s"], "n", "div");
        g.Init("gamma", F32, norm, 0.5, 1.5);
        g.Init("beta", F32, norm, -0.5, 0.5);
        g.Node("Mul", ["n", "gamma"], "scaled", "mul");
        g.Node("Add", ["scaled", "beta"], "y", "add_beta");
    }
}
