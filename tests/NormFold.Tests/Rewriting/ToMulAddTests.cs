using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting;

public class ToMulAddTests
{
    static GraphBuilder ReluBn(long[]? dims, int type = F32)
    {
        var g = new GraphBuilder(15);
        g.Input("x", type, dims);
        g.Node("Relu", ["x"], "r", "relu");
        g.Bn("r", 3, "y", type);
        g.Output("y", type, null);
        return g;
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    public void A_bn_after_an_unfoldable_node_becomes_mul_add(int rank)
    {
        long[] dims = [2, 3, .. Enumerable.Repeat(4L, rank - 2)];
        var original = ReluBn(dims).Build();
        var (folded, r) = Fold(original);
        var d = Single(r);
        Assert.Equal(Outcome.Replaced, d.Outcome);
        Assert.Equal(SkipReason.ProducerNotFoldable, d.Reason); // why it was not folded
        Assert.Contains("Relu 'relu'", d.Detail);
        Assert.Equal(["Relu", "Mul", "Add"], folded.Proto.Graph.Node.Select(n => n.OpType));
        var scale = folded.Proto.Graph.Initializer.Single(t => t.Name.EndsWith("_scale"));
        Assert.Equal([3L, .. Enumerable.Repeat(1L, rank - 2)], scale.Dims);
        AssertEquivalent(original, folded);
    }

    [Fact]
    public void A_bn_on_a_graph_input_becomes_mul_add_in_float16()
    {
        var g = new GraphBuilder(15);
        g.Input("x", F16, [2, 3, 4, 4]);
        g.Bn("x", 3, "y", F16);
        g.Output("y", F16, null);
        var original = g.Build();
        var (folded, r) = Fold(original);
        Assert.Equal(Outcome.Replaced, Single(r).Outcome);
        Assert.All(folded.Proto.Graph.Initializer, t => Assert.Equal(F16, t.DataType));
        AssertEquivalent(original, folded);
    }

    [Fact]
    public void Keep_standalone_leaves_the_bn_and_says_why()
    {
        var (folded, r) = Fold(ReluBn([2, 3, 4, 4]).Build(), new PipelineOptions { KeepStandaloneBatchNorm = true });
        var d = AssertLeft(r, SkipReason.ProducerNotFoldable);
        Assert.Contains("standalone BNs are kept", d.Detail);
        Assert.DoesNotContain("--", d.Detail); // the library names no CLI flag
        Assert.Equal(1, Count(folded, "BatchNormalization"));
    }

    [Fact]
    public void Unknown_rank_leaves_the_bn()
    {
        var (_, r) = Fold(ReluBn(null).Build());
        var d = AssertLeft(r, SkipReason.UnknownRank);
        Assert.Contains("fold phase: input", d.Detail); // the fold phase's refusal is kept after the last obstacle
    }
}
