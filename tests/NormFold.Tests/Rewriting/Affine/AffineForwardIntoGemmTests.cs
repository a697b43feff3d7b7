using NormFold.Graph;
using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.Rewriting.Affine.AffineTestGraphs;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting.Affine;

public class AffineForwardIntoGemmTests
{
    [Theory]
    [InlineData(false, false, 1f, 1f, true)]
    [InlineData(false, true, 0.5f, 1f, true)]
    [InlineData(true, false, 2f, 3f, false)]
    [InlineData(true, true, 1f, 1f, false)]
    public void Per_column_ops_on_A_fold_into_B_and_C(bool transA, bool transB, float alpha, float beta, bool c)
    {
        var g = new GraphBuilder();
        g.Input("a", F32, transA ? [4, 3] : [3, 4]);
        long[] k = transA ? [4, 1] : [4];
        Op(g, "Mul", "a", k, "m");
        Op(g, "Sub", "m", k, "z", -1, 1);
        string b = g.Init("B", F32, transB ? [5, 4] : [4, 5]);
        g.Node("Gemm", c ? ["z", b, g.Init("C", F32, [5])] : ["z", b], "y", "gemm",
            ("transA", transA ? 1L : 0L), ("transB", transB ? 1L : 0L), ("alpha", alpha), ("beta", beta));
        g.Output("y", F32, null);
        var (folded, r) = FoldChecked(g.Build());
        Assert.Equal("AffineForwardIntoGemm", Single(r).Rule);
        Assert.Equal(["Gemm"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    /// <summary>A shift folds into C of every shape Gemm broadcasts, with any α and β (0 included), transA and
    /// transB: C' = β·C + α·Σ_k t[k]·op(B)[k, ·] in double, rounded once, β written as 1; C created when absent.</summary>
    [Theory]
    [InlineData(null, 1f, 1f, false, false)]
    [InlineData(null, 0.5f, 3f, true, false)]
    [InlineData(new long[0], 1f, 2f, false, false)]
    [InlineData(new long[] { 1 }, 2f, 0.5f, false, true)]
    [InlineData(new long[] { 5 }, 1f, 2f, false, false)]
    [InlineData(new long[] { 5 }, 1.5f, 0f, true, true)]
    [InlineData(new long[] { 1, 5 }, 1f, -1f, false, false)]
    [InlineData(new long[] { 3, 1 }, 0.25f, 2f, false, true)]
    [InlineData(new long[] { 3, 5 }, 2f, 0.5f, true, false)]
    [InlineData(new long[] { 3, 5 }, 1f, 0f, false, false)]
    public void A_shift_folds_into_C_of_any_shape_with_any_alpha_and_beta(long[]? cDims, float alpha, float beta, bool transA, bool transB)
    {
        var g = new GraphBuilder();
        g.Input("a", F32, transA ? [4, 3] : [3, 4]);
        long[] k = transA ? [4, 1] : [4];
        Op(g, "Mul", "a", k, "m");
        Op(g, "Add", "m", k, "z", -1, 1);
        string b = g.Init("B", F32, transB ? [5, 4] : [4, 5]);
        g.Node("Gemm", cDims is null ? ["z", b] : ["z", b, g.Init("C", F32, cDims)], "y", "gemm",
            ("transA", transA ? 1L : 0L), ("transB", transB ? 1L : 0L), ("alpha", alpha), ("beta", beta));
        g.Output("y", F32, null);
        var (folded, r) = FoldChecked(g.Build());
        var d = Single(r);
        Assert.Equal(Outcome.Folded, d.Outcome);
        Assert.Equal("AffineForwardIntoGemm", d.Rule);
        var gemm = Assert.Single(folded.Proto.Graph.Node);
        Assert.Equal(1f, Attributes.Float(gemm, "beta", 1f));
        var c = folded.Proto.Graph.Initializer.Single(t => t.Name == gemm.Input[2]);
        Assert.Equal(cDims is { Length: 2 } ? [cDims[0], 5L] : [5L], c.Dims);
    }

    /// <summary>A C that does not broadcast to [M, N] (an invalid model ORT would reject): the shift is not folded.</summary>
    [Fact]
    public void A_shift_into_a_C_that_does_not_broadcast_is_refused()
    {
        var g = new GraphBuilder();
        g.Input("a", F32, [3, 4]);
        Op(g, "Add", "a", [4], "z", -1, 1);
        g.Node("Gemm", ["z", g.Init("B", F32, [4, 5]), g.Init("C", F32, [3])], "y", "gemm");
        g.Output("y", F32, null);
        var (_, r) = Fold(g.Build());
        Assert.Contains("does not broadcast", AssertLeft(r, SkipReason.ShapeMismatch).Detail);
    }

    /// <summary>x [4] · c [1, 1] is [1, 4], which Gemm takes; Gemm would not take x.</summary>
    [Fact]
    public void A_scalar_that_makes_a_vector_2d_is_not_folded_forward()
    {
        var g = new GraphBuilder(13);
        g.Input("a", F32, [4]);
        Op(g, "Mul", "a", [1, 1], "z");
        g.Node("Gemm", ["z", g.Init("B", F32, [4, 5])], "y", "gemm");
        g.Output("y", F32, null);
        var (folded, r) = FoldChecked(g.Build());
        AssertLeft(r, SkipReason.ShapeMismatch);
        Assert.Equal(1, Count(folded, "Mul"));
    }
}
