using Microsoft.ML.OnnxRuntime;
using NormFold.Onnx;
using NormFold.Rewriting;
using NormFold.Tests.Builders;
using Xunit.Abstractions;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.Rewriting.Affine.AffineTestGraphs;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting.Affine;

/// <summary>
/// Node counts after NormFold against ONNX Runtime's basic level (its optimised model dumped through
/// SessionOptions.OptimizedModelFilePath), on the bundled models and ORT-style fusion graphs: NormFold must never
/// leave more per-channel affine ops (BatchNormalization, Mul/Div/Add/Sub by a constant) than ORT's basic level. Whole
/// node counts are printed, not asserted: ORT's basic level also folds constant subgraphs (shape arithmetic), which is
/// not NormFold's job. Prints the table BENCHMARKS.md shows (run with a detailed console logger).
/// </summary>
public class OrtBasicComparisonTests(ITestOutputHelper output)
{
    public static TheoryData<string> Bundled() =>
        [.. Directory.GetFiles(ModelsDir, "*.onnx").Select(f => Path.GetFileName(f)).Order(), "external/mlp_bn1d.onnx"];

    public static TheoryData<string> Fusion() => [.. FusionGraphs.Keys];

    static readonly Dictionary<string, Func<OnnxModel>> FusionGraphs = new()
    {
        ["ort_conv_bn_mul_add_fp16"] = () => OrtStyle("Mul", "Add"),
        ["ort_conv_bn_add_mul_fp16"] = () => OrtStyle("Add", "Mul"),
        ["conv_mul"] = () => ConvThen(("Mul", [1, 6, 1, 1])),
        ["conv_add"] = () => ConvThen(("Add", [6, 1, 1])),
        ["conv_div_sub"] = () => ConvThen(("Div", [6, 1, 1]), ("Sub", [1, 6, 1, 1])),
        ["conv_mul_add_scalar"] = () => ConvThen(("Mul", []), ("Add", [])),
        ["matmul_mul_add"] = MatMulMulAdd,
        ["sub_div_conv_unpadded"] = NormalizeThenConv,
        ["relu_bn_mul_add"] = ReluBnMulAdd,
    };

    static OnnxModel ConvThen(params (string Op, long[] Dims)[] ops)
    {
        var g = Conv();
        string x = "c";
        for (int i = 0; i < ops.Length; i++) x = Op(g, ops[i].Op, x, ops[i].Dims, i == ops.Length - 1 ? "y" : $"t{i}");
        g.Output("y", F32, null);
        return g.Build();
    }

    static OnnxModel MatMulMulAdd()
    {
        var g = new GraphBuilder();
        g.Input("a", F32, [2, 3, 4]);
        g.Node("MatMul", ["a", g.Init("B", F32, [4, 5])], "mm", "matmul");
        Op(g, "Mul", "mm", [5], "m");
        Op(g, "Add", "m", [5], "y", -1, 1);
        g.Output("y", F32, null);
        return g.Build();
    }

    static OnnxModel NormalizeThenConv()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [1, 3, 8, 8]);
        Op(g, "Sub", "x", [1, 3, 1, 1], "s", 0.4, 0.5);
        Op(g, "Div", "s", [1, 3, 1, 1], "z", 0.2, 0.3);
        g.Node("Conv", ["z", g.Init("w", F32, [4, 3, 3, 3]), g.Init("b", F32, [4])], "y", "conv");
        g.Output("y", F32, null);
        return g.Build();
    }

    static OnnxModel ReluBnMulAdd()
    {
        var g = new GraphBuilder();
        g.Input("x", F32, [2, 4, 5, 5]);
        g.Node("Relu", ["x"], "r", "relu");
        g.Bn("r", 4, "bn");
        Op(g, "Mul", "bn", [1, 4, 1, 1], "m");
        Op(g, "Add", "m", [4, 1, 1], "a", -1, 1);
        g.Node("Sigmoid", ["a"], "y", "sigmoid");
        g.Output("y", F32, null);
        return g.Build();
    }

    /// <summary>ORT's basic-level optimised model.</summary>
    static OnnxModel OrtBasic(OnnxModel model, string dir)
    {
        string input = Path.Combine(dir, $"in_{Guid.NewGuid():N}.onnx"), optimized = Path.Combine(dir, $"basic_{Guid.NewGuid():N}.onnx");
        ModelWriter.Save(model, input);
        using (var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_BASIC, OptimizedModelFilePath = optimized })
        using (new InferenceSession(input, options)) { }
        return OnnxModel.Load(optimized);
    }

    /// <summary>BatchNormalization and Mul/Div/Add/Sub by a constant (as NormFold's rules read them) in the main graph.</summary>
    static int AffineByConstant(OnnxModel m) => AffineNodes(m).Count;

    static List<string> AffineNodes(OnnxModel m)
    {
        var g = new NormFold.Graph.GraphIndex(m.Proto.Graph, m);
        return m.Proto.Graph.Node.Where(n => NormFold.Rewriting.Affine.AffineHead.IsAffineNode(g, n, out _))
            .Select(n => $"{n.OpType}({string.Join(", ", n.Input)})").ToList();
    }

    void Compare(string name, OnnxModel original)
    {
        string dir = TempDir();
        var (folded, r) = Fold(original);
        var ort = OrtBasic(original, dir);
        int both = OrtBasic(folded, dir).Proto.Graph.Node.Count;
        int affineBefore = AffineByConstant(original), affineOurs = AffineByConstant(folded), affineOrt = AffineByConstant(ort);
        var reasons = r.Log.Decisions.Where(d => d.Outcome == Outcome.Left)
            .GroupBy(d => $"{d.AnchorOpType} {d.Reason}").Select(x => $"{x.Count()}× {x.Key}");
        output.WriteLine($"| {name} | {original.Proto.Graph.Node.Count} | {folded.Proto.Graph.Node.Count} | {ort.Proto.Graph.Node.Count} | {both} " +
                         $"| {affineBefore} | {affineOurs} | {affineOrt} | {string.Join("; ", reasons)} |");
        Assert.True(affineOurs <= affineOrt, $"{name}: NormFold leaves {affineOurs} affine ops ({string.Join("; ", AffineNodes(folded))}), " +
            $"ORT's basic level {affineOrt} ({string.Join("; ", AffineNodes(ort))})");
    }

    [Theory]
    [MemberData(nameof(Bundled))]
    public void Bundled_models_never_have_more_nodes_than_after_ort_basic(string file) =>
        Compare(file, OnnxModel.Load(Path.Combine(ModelsDir, file)));

    [Theory]
    [MemberData(nameof(Fusion))]
    public void Fusion_graphs_never_have_more_nodes_than_after_ort_basic(string name)
    {
        var original = FusionGraphs[name]();
        Compare(name, original);
        AssertEquivalent(original, Fold(original).Folded);
    }
}
