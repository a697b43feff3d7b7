using NormFold.Onnx;
using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting.Affine;

/// <summary>Graph pieces and assertions shared by the affine rule tests.</summary>
internal static class AffineTestGraphs
{
    /// <summary>Folds, then asserts: outputs equivalent in ORT, every tensor the fold made bit-identical in the weight audit.</summary>
    public static (OnnxModel Folded, FoldResult Result) FoldChecked(OnnxModel original, PipelineOptions? options = null)
    {
        var (folded, result) = Fold(original, options);
        AssertEquivalent(original, folded);
        AssertAuditPasses(original, folded, result);
        return (folded, result);
    }

    /// <summary>Affine ops left in the graph (Mul/Div/Add/Sub/BatchNormalization).</summary>
    public static int AffineOps(OnnxModel m) =>
        Count(m, "Mul") + Count(m, "Div") + Count(m, "Add") + Count(m, "Sub") + Count(m, "BatchNormalization");

    /// <summary>
    /// Appends `op(input, constant)` (or `op(constant, input)` when <paramref name="constantFirst"/>), the constant of
    /// shape <paramref name="dims"/> with values in [lo, hi), and returns its output.
    /// </summary>
    public static string Op(GraphBuilder g, string op, string input, long[] dims, string output, double lo = 0.5, double hi = 1.5,
        int type = F32, bool constantFirst = false)
    {
        string c = g.Init(output + ".c", type, dims, lo, hi);
        g.Node(op, constantFirst ? [c, input] : [input, c], output, output + "_node");
        return output;
    }

    /// <summary>Conv(x [2, cin, 5, 5], w [cout, cin/group, 3, 3], b?) with the given pads; returns its output "c".</summary>
    public static GraphBuilder Conv(int type = F32, long cin = 4, long cout = 6, long group = 1, bool bias = true, long pad = 1,
        long opset = 15)
    {
        var g = new GraphBuilder(opset);
        g.Input("x", type, [2, cin, 5, 5]);
        string w = g.Init("w", type, [cout, cin / group, 3, 3]);
        string[] inputs = bias ? ["x", w, g.Init("b", type, [cout])] : ["x", w];
        g.Node("Conv", inputs, "c", "conv", ("group", group), ("pads", new[] { pad, pad, pad, pad }));
        return g;
    }

    /// <summary>ONNX Runtime's own fusion test models: Conv → BN → first → second in float16, the Mul/Add constants
    /// through Unsqueeze (opset 13: axes as an input).</summary>
    public static OnnxModel OrtStyle(string first, string second)
    {
        var g = Conv(type: F16, opset: 13);
        g.Bn("c", 6, "bn", F16);
        string Unsqueezed(string name)
        {
            g.Init(name, F16, [6], 0.5, 1.5);
            g.Node("Unsqueeze", [name, g.Int64s(name + ".axes", 1, 2)], name + "_u", name + "_unsqueeze");
            return name + "_u";
        }
        g.Node(first, ["bn", Unsqueezed("k1")], "m", "op1");
        g.Node(second, ["m", Unsqueezed("k2")], "y", "op2");
        g.Output("y", F16, null);
        return g.Build();
    }
}
