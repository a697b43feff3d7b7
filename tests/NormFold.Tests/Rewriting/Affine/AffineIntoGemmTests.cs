using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.Rewriting.Affine.AffineTestGraphs;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting.Affine;

public class AffineIntoGemmTests
{
    /// <summary>Gemm(a [3, 4], B, C?) → [3, 5].</summary>
    static GraphBuilder Gemm(bool transB, float alpha, float beta, long[]? cDims, int type = F32)
    {
        var g = new GraphBuilder();
        g.Input("a", type, [3, 4]);
        string b = g.Init("B", type, transB ? [5, 4] : [4, 5]);
        string[] inputs = cDims is null ? ["a", b] : ["a", b, g.Init("C", type, cDims)];
        g.Node("Gemm", inputs, "g", "gemm", ("transB", transB ? 1L : 0L), ("alpha", alpha), ("beta", beta));
        return g;
    }

    [Theory]
    [InlineData(false, 1f, 1f, null)]
    [InlineData(true, 0.5f, 2f, new long[0])]
    [InlineData(true, 1f, 0.25f, new long[] { 1 })]
    [InlineData(false, 2f, 1.5f, new long[] { 5 })]
    [InlineData(true, 1f, 1f, new long[] { 1, 5 })]
    [InlineData(false, 1f, 3f, new long[] { 3, 1 })]
    [InlineData(true, 0.75f, 0.5f, new long[] { 3, 5 })]
    public void Per_column_mul_and_add_fold_for_alpha_beta_transB_and_every_C_shape(bool transB, float alpha, float beta, long[]? cDims)
    {
        var g = Gemm(transB, alpha, beta, cDims);
        Op(g, "Mul", "g", [5], "m");
        Op(g, "Add", "m", [1, 5], "n", -1, 1);
        Op(g, "Div", "n", [], "y", 2, 3);
        g.Output("y", F32, null);
        var (folded, r) = FoldChecked(g.Build());
        var d = Single(r);
        Assert.Equal("AffineIntoGemm", d.Rule);
        Assert.Equal(["Gemm"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    [Fact]
    public void A_bn_then_add_fold_into_a_float16_gemm()
    {
        var g = Gemm(true, 1f, 1f, [5], F16);
        g.Bn("g", 5, "bn", F16);
        Op(g, "Add", "bn", [5], "y", -1, 1, F16);
        g.Output("y", F16, null);
        var (folded, r) = FoldChecked(g.Build());
        Assert.Equal("AffineIntoGemm", Single(r).Rule);
        Assert.Equal(["Gemm"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    [Fact]
    public void A_constant_along_the_rows_is_refused()
    {
        var g = Gemm(false, 1f, 1f, null);
        Op(g, "Mul", "g", [3, 1], "y");
        g.Output("y", F32, null);
        var (_, r) = FoldChecked(g.Build());
        Assert.Contains("[3,1]", AssertLeft(r, SkipReason.ChannelAxisMismatch).Detail);
    }

    [Fact]
    public void A_gemm_before_opset_7_is_refused()
    {
        var g = new GraphBuilder(6);
        g.Input("a", F32, [3, 4]);
        g.Init("B", F32, [4, 5]);
        g.Node("Gemm", ["a", "B"], "g", "gemm");
        g.Init("k", F32, [5], 0.5, 1.5);
        g.Node("Mul", ["g", "k"], "y", "mul", ("broadcast", 1L), ("axis", 1L));
        g.Output("y", F32, null);
        var (_, r) = Fold(g.Build());
        AssertLeft(r, SkipReason.UnsupportedOpsetVersion);
    }

    [Fact]
    public void An_integer_weight_is_refused()
    {
        var g = new GraphBuilder();
        g.Input("a", F32, [3, 4]);
        var b = new NormFold.Onnx.Proto.TensorProto { Name = "B", DataType = (int)NormFold.Onnx.Proto.TensorProto.Types.DataType.Int32, Dims = { 4, 5 } };
        b.Int32Data.AddRange(new int[20]);
        g.Graph.Initializer.Add(b);
        g.Node("Gemm", ["a", "B"], "g", "gemm");
        Op(g, "Mul", "g", [5], "y");
        g.Output("y", F32, null);
        var (_, r) = Fold(g.Build());
        AssertLeft(r, SkipReason.UnsupportedDataType);
    }
}
