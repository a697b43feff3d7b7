using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting;

public class IntoMatMulTests
{
    static GraphBuilder MatMulBn(long[]? aDims, long[]? bias, bool biasFirst = false, bool transposedWeight = false)
    {
        var g = new GraphBuilder(13);
        g.Input("a", F32, aDims);
        string b = transposedWeight ? g.Init("wt", F32, [4, 6]) : g.Init("b", F32, [6, 4]);
        if (transposedWeight) { g.Node("Transpose", [b], "b", "transpose", ("perm", new long[] { 1, 0 })); }
        g.Node("MatMul", ["a", "b"], "mm", "matmul");
        string x = "mm";
        if (bias != null)
        {
            g.Init("bias", F32, bias);
            g.Node("Add", biasFirst ? ["bias", "mm"] : ["mm", "bias"], "add", "add");
            x = "add";
        }
        g.Bn(x, 4, "y");
        g.Output("y");
        return g;
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void Folds_matmul_with_and_without_bias(bool withBias, bool biasFirst)
    {
        var (folded, r) = FoldAndCheck(MatMulBn([3, 6], withBias ? [4] : null, biasFirst).Build());
        Assert.Equal("BatchNormIntoMatMul", Single(r).Rule);
        Assert.Equal(["MatMul", "Add"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    [Fact]
    public void Folds_a_weight_transposed_by_a_transpose_node_as_torch_exports_it()
    {
        var (folded, _) = FoldAndCheck(MatMulBn([-1, 6], [1, 4], transposedWeight: true).Build(), shapes: new Dictionary<string, long[]> { ["a"] = [5, 6] });
        Assert.Equal(0, Count(folded, "Transpose"));
    }

    [Fact]
    public void Rank_is_inferred_through_ops_when_the_model_declares_none()
    {
        var g = new GraphBuilder(13);
        g.Input("a", F32, [2, 6]);
        g.Node("Relu", ["a"], "r", "relu");
        g.Init("b", F32, [6, 4]);
        g.Node("MatMul", ["r", "b"], "mm", "matmul");
        g.Bn("mm", 4, "y");
        g.Output("y");
        FoldAndCheck(g.Build());
    }

    [Fact]
    public void Refuses_rank_3_output_where_bn_channels_are_not_b_columns()
    {
        var g = MatMulBn([2, 4, 6], null);
        var (_, r) = Fold(g.Build(), new PipelineOptions { KeepStandaloneBatchNorm = true });
        var d = AssertLeft(r, SkipReason.ChannelAxisMismatch);
        Assert.Contains("rank 3", d.Detail);
    }

    [Fact]
    public void Refuses_when_the_rank_is_unknown()
    {
        var g = MatMulBn(null, null);
        var (_, r) = Fold(g.Build());
        // Neither fold nor Mul + Add can proceed without the rank.
        var d = AssertLeft(r, SkipReason.UnknownRank);
        Assert.Contains("rank", d.Detail);
    }

    [Fact]
    public void Refuses_when_the_matmul_output_is_also_read_elsewhere()
    {
        var g = MatMulBn([3, 6], [4]);
        g.Node("Relu", ["mm"], "r", "relu");
        g.Output("r");
        var (_, r) = Fold(g.Build(), new PipelineOptions { KeepStandaloneBatchNorm = true });
        AssertLeft(r, SkipReason.ProducerHasOtherConsumers);
    }

    [Fact]
    public void Refuses_an_add_that_does_not_follow_a_matmul()
    {
        var g = new GraphBuilder(13);
        g.Input("a", F32, [3, 4]);
        g.Init("bias", F32, [4]);
        g.Node("Add", ["a", "bias"], "add", "add");
        g.Bn("add", 4, "y");
        g.Output("y");
        var (_, r) = Fold(g.Build(), new PipelineOptions { KeepStandaloneBatchNorm = true });
        var d = AssertLeft(r, SkipReason.ProducerNotFoldable);
        Assert.Contains("Add 'add'", d.Detail);
    }
}
