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

    /// <summary>Campaign bn-params:7000324 and kin: a BN whose parameter count is not the channel count its producer
    /// gives (ConvTranspose W [2, 2, 3, 3], group 2 → 4 channels; a BN of 3) cannot fold and was replaced by a Mul whose
    /// [3, 1, 1] constant ORT refuses to load against 4 channels (fold --check: exit 1). It is left, naming both counts.</summary>
    [Fact]
    public void A_bn_whose_channel_count_contradicts_its_producer_is_left()
    {
        var g = new GraphBuilder(15);
        g.Input("x", F32, [1, 2, 3, 3]);
        g.Init("w", F32, [2, 2, 3, 3]);
        g.Node("ConvTranspose", ["x", "w"], "c", "convt", ("group", 2L));
        g.Bn("c", 3, "y", name: "bn");
        g.Output("y", F32, null);
        var (folded, r) = Fold(g.Build());
        Assert.Contains("2×2 output channels", AssertLeft(r, SkipReason.ShapeMismatch, "bn").Detail);
        Assert.Equal(1, Count(folded, "BatchNormalization"));
        Assert.Equal(0, Count(folded, "Mul"));
    }

    /// <summary>Gemm's output [M, N] follows from A and B as ORT reads them (transB = 2 transposes like 1): B [3, 4]
    /// transposed gives 3 channels, not the BN's 4.</summary>
    [Fact]
    public void Gemm_output_channels_follow_transB_as_ort_reads_it()
    {
        var g = new GraphBuilder(15);
        g.Input("x", F32, [2, 4]);
        g.Init("b", F32, [3, 4]);
        g.Node("Gemm", ["x", "b"], "c", "gemm", ("transB", 2L));
        g.Bn("c", 4, "y", name: "bn");
        g.Output("y", F32, null);
        var (folded, r) = Fold(g.Build());
        Assert.Contains("3 columns", AssertLeft(r, SkipReason.ShapeMismatch, "bn").Detail);
        Assert.Equal(0, Count(folded, "Mul"));
    }

    /// <summary>Campaign bn-params:7001569: mlp_bn1d's MatMul(X [N, 64], Transpose(W [48, 64])) gives 48 channels; a BN of
    /// 0 was replaced by a Mul ORT refused to load. MatMul's output dims [.., M, N] follow from A and B.</summary>
    [Fact]
    public void Matmul_output_channels_follow_from_its_operands()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [2, 64]);
        g.Init("w", F32, [48, 64]);
        g.Node("Transpose", ["w"], "wt", "transpose", ("perm", new long[] { 1, 0 }));
        g.Node("MatMul", ["x", "wt"], "c", "matmul");
        g.Bn("c", 5, "y", name: "bn");
        g.Output("y", F32, null);
        var (folded, r) = Fold(g.Build());
        AssertLeft(r, SkipReason.ShapeMismatch, "bn");
        Assert.Equal(0, Count(folded, "Mul"));
        var index = new NormFold.Graph.GraphIndex(g.Proto.Graph, g.Build());
        Assert.Equal(new long[] { 2, 48 }, index.Shape("c"));
    }
}
