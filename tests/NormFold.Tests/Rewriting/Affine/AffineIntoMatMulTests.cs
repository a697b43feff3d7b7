using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.Rewriting.Affine.AffineTestGraphs;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting.Affine;

public class AffineIntoMatMulTests
{
    /// <summary>MatMul(a [2, 3, 4] (or [3, 4]), B [4, 5]).</summary>
    static GraphBuilder MatMul(int rank, int type = F32)
    {
        var g = new GraphBuilder();
        g.Input("a", type, rank == 3 ? [2, 3, 4] : [3, 4]);
        g.Init("B", type, [4, 5]);
        g.Node("MatMul", ["a", "B"], "mm", "matmul");
        return g;
    }

    /// <summary>The channel axis of a MatMul is its output's LAST axis: a per-column constant folds into B's columns for
    /// any rank of A.</summary>
    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void A_per_column_scale_folds_into_B_for_any_rank(int rank)
    {
        var g = MatMul(rank);
        Op(g, "Mul", "mm", [5], "m");
        Op(g, "Div", "m", rank == 3 ? [1, 1, 5] : [1, 5], "y", 1, 2);
        g.Output("y", F32, null);
        var (folded, r) = FoldChecked(g.Build());
        Assert.Equal("AffineIntoMatMul", Single(r).Rule);
        Assert.Equal(["MatMul"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    [Fact]
    public void A_bias_add_and_scale_become_one_add()
    {
        var g = MatMul(3);
        Op(g, "Add", "mm", [5], "biased", -1, 1);
        Op(g, "Mul", "biased", [1, 5], "m");
        Op(g, "Sub", "m", [5], "y", -1, 1);
        g.Output("y", F32, null);
        var (folded, r) = FoldChecked(g.Build());
        Assert.Equal("AffineIntoMatMul", Single(r).Rule);
        Assert.Equal(["MatMul", "Add"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    [Fact]
    public void A_lone_bias_add_is_no_candidate()
    {
        var g = MatMul(2);
        Op(g, "Add", "mm", [5], "y", -1, 1);
        g.Output("y", F32, null);
        var (folded, r) = Fold(g.Build());
        Assert.Empty(r.Log.Decisions);
        Assert.Equal(["MatMul", "Add"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    [Fact]
    public void A_bn_then_mul_after_a_rank_3_matmul_is_refused_for_its_axis()
    {
        var g = MatMul(3);
        g.Bn("mm", 3, "bn");
        Op(g, "Mul", "bn", [5], "y");
        g.Output("y", F32, null);
        var (_, r) = Fold(g.Build());
        Assert.Contains(r.Log.Decisions, d => d.Reason == SkipReason.ChannelAxisMismatch && d.AnchorOpType == "BatchNormalization");
    }

    [Fact]
    public void A_constant_along_axis_1_of_a_rank_3_output_is_refused()
    {
        var g = MatMul(3);
        Op(g, "Mul", "mm", [3, 1], "y");
        g.Output("y", F32, null);
        var (_, r) = FoldChecked(g.Build());
        Assert.Contains("axis 1", AssertLeft(r, SkipReason.ChannelAxisMismatch).Detail);
    }

    [Fact]
    public void Float16_scale_and_shift_fold()
    {
        var g = MatMul(3, F16);
        Op(g, "Mul", "mm", [5], "m", 0.5, 1.5, F16);
        Op(g, "Add", "m", [5], "y", -1, 1, F16);
        g.Output("y", F16, null);
        var (folded, _) = FoldChecked(g.Build());
        Assert.Equal(["MatMul", "Add"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }
}
