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

    [Fact]
    public void A_shift_into_a_C_taken_beta_times_is_refused()
    {
        var g = new GraphBuilder();
        g.Input("a", F32, [3, 4]);
        Op(g, "Add", "a", [4], "z", -1, 1);
        g.Node("Gemm", ["z", g.Init("B", F32, [4, 5]), g.Init("C", F32, [5])], "y", "gemm", ("beta", 2f));
        g.Output("y", F32, null);
        var (_, r) = FoldChecked(g.Build());
        AssertLeft(r, SkipReason.ShapeMismatch);
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
