using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.Rewriting.Affine.AffineTestGraphs;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting.Affine;

public class AffineForwardIntoMatMulTests
{
    static GraphBuilder Graph(int type = F32)
    {
        var g = new GraphBuilder();
        g.Input("a", type, [2, 3, 4]);
        return g;
    }

    static void MatMul(GraphBuilder g, string input, int type = F32)
    {
        g.Node("MatMul", [input, g.Init("B", type, [4, 5])], "y", "matmul");
        g.Output("y", type, null);
    }

    [Fact]
    public void Scale_and_shift_along_the_last_axis_become_B_and_one_add()
    {
        var g = Graph();
        Op(g, "Mul", "a", [4], "m");
        Op(g, "Add", "m", [1, 1, 4], "n", -1, 1);
        Op(g, "Div", "n", [], "z", 1, 2);
        MatMul(g, "z");
        var (folded, r) = FoldChecked(g.Build());
        Assert.Equal("AffineForwardIntoMatMul", Single(r).Rule);
        Assert.Equal(["MatMul", "Add"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    [Fact]
    public void A_float16_scale_alone_folds_into_B()
    {
        var g = Graph(F16);
        Op(g, "Mul", "a", [4], "z", 0.5, 1.5, F16);
        MatMul(g, "z", F16);
        var (folded, _) = FoldChecked(g.Build());
        Assert.Equal(["MatMul"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    [Fact]
    public void A_lone_shift_is_left_it_would_save_no_node()
    {
        var g = Graph();
        Op(g, "Add", "a", [4], "z", -1, 1);
        MatMul(g, "z");
        var (_, r) = FoldChecked(g.Build());
        Assert.Contains("no node would be saved", AssertLeft(r, SkipReason.NothingSaved).Detail);
    }

    /// <summary>x [3, 4] · c [1, 1, 1] is [1, 3, 4]; MatMul gives [1, 3, 5]. Folding c into B would give [3, 5].</summary>
    [Fact]
    public void A_scalar_of_higher_rank_is_not_folded_forward()
    {
        var g = new GraphBuilder(13);
        g.Input("a", F32, [3, 4]);
        Op(g, "Mul", "a", [1, 1, 1], "z");
        MatMul(g, "z");
        var (folded, r) = FoldChecked(g.Build());
        Assert.Contains("change the rank", AssertLeft(r, SkipReason.ShapeMismatch).Detail);
        Assert.Equal(1, Count(folded, "Mul"));
    }
}
