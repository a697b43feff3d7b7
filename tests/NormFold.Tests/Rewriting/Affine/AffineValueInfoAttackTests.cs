using NormFold.Onnx;
using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.Rewriting.Affine.AffineTestGraphs;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting.Affine;

/// <summary>
/// A value_info that lies about the rank or dims of an intermediate whose shape the graph does not prove (a Squeeze
/// whose axes hide behind a Cast): every affine rule must either fold exactly (equivalent in ORT) or leave the ops with a
/// named reason — never a different answer, never a model ORT rejects.
/// </summary>
public class AffineValueInfoAttackTests
{
    /// <summary>Ends the graph at "y" and folds; whatever was rewritten must be equivalent in ORT and pass the audit.</summary>
    static (OnnxModel Folded, FoldResult Result) FoldSafely(GraphBuilder g)
    {
        g.Output("y", F32, null);
        var original = g.Build();
        var (folded, r) = Fold(original);
        AssertEquivalent(original, folded);
        AssertAuditPasses(original, folded, r);
        return (folded, r);
    }

    /// <summary>x of <paramref name="dims"/> → Squeeze(axis <paramref name="axis"/>) → "a", with a value_info claiming
    /// <paramref name="claimed"/> for a (none when null).</summary>
    static GraphBuilder Squeezed(long[] dims, long axis, long[]? claimed)
    {
        var g = new GraphBuilder();
        g.Input("x", F32, dims);
        g.Node("Squeeze", ["x", g.HiddenInt64s("axes", axis)], "a", "squeeze");
        if (claimed is not null) g.Graph.ValueInfo.Add(Value("a", F32, claimed));
        return g;
    }

    /// <summary><see cref="Squeezed"/> → <paramref name="op"/>(a, constant <paramref name="weight"/>) → "p", with a
    /// value_info claiming <paramref name="claimed"/> for p.</summary>
    static GraphBuilder Producer(string op, long[] dims, long axis, long[] weight, long[] claimed)
    {
        var g = Squeezed(dims, axis, null);
        Consumer(g, op, "a", weight, "p");
        g.Graph.ValueInfo.Add(Value("p", F32, claimed));
        return g;
    }

    /// <summary><paramref name="op"/>(<paramref name="input"/>, constant <paramref name="weight"/>) → <paramref name="output"/>.</summary>
    static void Consumer(GraphBuilder g, string op, string input, long[] weight, string output = "y", params (string, object)[] attrs)
    {
        g.Init("w", F32, weight);
        g.Node(op, [input, "w"], output, op.ToLowerInvariant(), attrs);
    }

    /// <summary>BN → Mul on a [2, 3, 4, 3] that a value_info says is [2, 3]: merged as rank 2, the BN's channels would
    /// land on the last axis.</summary>
    [Fact]
    public void Merge_with_a_bn_needs_the_proven_rank()
    {
        var g = Squeezed([2, 1, 3, 4, 3], 1, [2, 3]);
        g.Bn("a", 3, "bn");
        Op(g, "Mul", "bn", [3], "y");
        var (folded, r) = FoldSafely(g);
        Assert.Contains("value_info is no proof", AssertLeft(r, SkipReason.UnknownRank, "bn_bn").Detail);
        Assert.Equal(1, Count(folded, "BatchNormalization"));
    }

    /// <summary>x·1 on a [2, 1, 4] that a value_info says is [2, 3, 4]: the ones [3, 1] widen a; removing the Mul would
    /// change the shape the Relu sees.</summary>
    [Fact]
    public void Removing_an_identity_op_needs_the_proven_dims()
    {
        var g = Squeezed([2, 1, 1, 4], 1, [2, 3, 4]);
        g.Init("ones", F32, [3, 1], [1, 1, 1]);
        g.Node("Mul", ["a", "ones"], "m", "mul");
        g.Node("Relu", ["m"], "y", "relu");
        var (folded, r) = FoldSafely(g);
        Assert.Contains("may widen", AssertLeft(r, SkipReason.ShapeMismatch, "mul").Detail);
        Assert.Equal(1, Count(folded, "Mul"));
    }

    /// <summary>Mul [1, 3] → Add [3] → Mul [3] on a [3] that a value_info says is [2, 3]: the original's output is
    /// [1, 3]; the merged constants must keep that rank when a's rank is not proven.</summary>
    [Fact]
    public void Merge_of_an_unproven_rank_keeps_the_constants_rank()
    {
        var g = Squeezed([1, 3], 0, [2, 3]);
        Op(g, "Mul", "a", [1, 3], "m");
        Op(g, "Add", "m", [3], "s", -1, 1);
        Op(g, "Mul", "s", [3], "t");
        g.Node("Relu", ["t"], "y", "relu");
        var (folded, r) = FoldSafely(g);
        Assert.Equal(Outcome.Replaced, Single(r).Outcome);
        Assert.Equal(2, AffineOps(folded));
    }

    /// <summary>MatMul → Mul → BN with the product [2, 3, 3] that a value_info says is [3, 3]: the BN's axis 1 is not
    /// B's columns.</summary>
    [Fact]
    public void Fold_into_matmul_with_a_bn_needs_the_proven_rank()
    {
        var g = Producer("MatMul", [2, 1, 3, 4], 1, [4, 3], [3, 3]);
        Op(g, "Mul", "p", [3], "m");
        g.Bn("m", 3, "y");
        var (folded, r) = FoldSafely(g);
        Assert.Contains("value_info is no proof", AssertLeft(r, SkipReason.UnknownRank).Detail);
        Assert.Equal(1, Count(folded, "BatchNormalization"));
    }

    /// <summary>MatMul → Mul [1, 1, 3] with the product [3, 3] that a value_info says is [1, 3, 3]: the constant adds an
    /// axis the folded MatMul would not.</summary>
    [Fact]
    public void Fold_into_matmul_of_a_widening_constant_needs_the_proven_rank()
    {
        var g = Producer("MatMul", [1, 3, 4], 0, [4, 3], [1, 3, 3]);
        Op(g, "Mul", "p", [1, 1, 3], "y");
        var (folded, r) = FoldSafely(g);
        Assert.Contains("value_info is no proof", AssertLeft(r, SkipReason.UnknownRank).Detail);
        Assert.Equal(1, Count(folded, "Mul"));
    }

    /// <summary>MatMul → Mul [3] → Div [3] on an unproven product still folds: the last axis is B's columns for any rank,
    /// and 1-D constants add no axis to a MatMul's product.</summary>
    [Fact]
    public void Fold_into_matmul_along_the_last_axis_needs_no_rank()
    {
        var g = Producer("MatMul", [2, 1, 3, 4], 1, [4, 3], [3, 3]);
        Op(g, "Mul", "p", [3], "m");
        Op(g, "Div", "m", [3], "y");
        var (folded, r) = FoldSafely(g);
        Assert.Equal("AffineIntoMatMul", Single(r).Rule);
        Assert.Equal(["Cast", "Squeeze", "MatMul"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    /// <summary>Conv → Mul [3] with the Conv's output [2, 3, 5, 3] that a value_info says is [2, 3]; the same for
    /// ConvTranspose with output [2, 5, 5, 5] declared [2, 5]: the constant runs along the width, not
    /// the channels (the output has the weight's rank).</summary>
    [Theory]
    [InlineData("Conv", new long[] { 3, 3, 1, 3 }, 3)]
    [InlineData("ConvTranspose", new long[] { 3, 5, 1, 1 }, 5)]
    public void Fold_into_conv_takes_the_rank_from_the_weight(string op, long[] weight, long channels)
    {
        var g = Producer(op, [2, 1, 3, 5, 5], 1, weight, [2, channels]);
        Op(g, "Mul", "p", [channels], "y");
        var (folded, r) = FoldSafely(g);
        Assert.Contains("axis 3", AssertLeft(r, SkipReason.ChannelAxisMismatch).Detail);
        Assert.Equal(1, Count(folded, "Mul"));
    }

    /// <summary>Mul [3] → Conv with the Conv's input [2, 3, 5, 3] that a value_info says is [2, 3]: the constant runs
    /// along the width, not the Conv's input channels.</summary>
    [Fact]
    public void Forward_fold_into_conv_takes_the_rank_from_the_weight()
    {
        var g = Squeezed([2, 1, 3, 5, 3], 1, [2, 3]);
        Op(g, "Mul", "a", [3], "m");
        Consumer(g, "Conv", "m", [4, 3, 1, 1]);
        var (folded, r) = FoldSafely(g);
        Assert.Equal(Outcome.Left, Single(r).Outcome);
        Assert.Equal(1, Count(folded, "Mul"));
    }

    /// <summary>Mul [3, 1, 1] → Conv on a [2, 1, 5, 5] that a value_info says is [2, 3, 5, 5]: the constant widens the
    /// channels from 1 to 3; the folded Conv would read 1 channel with a weight for 3.</summary>
    [Fact]
    public void Forward_fold_into_conv_needs_the_proven_channel_count()
    {
        var g = Squeezed([2, 1, 1, 5, 5], 1, [2, 3, 5, 5]);
        Op(g, "Mul", "a", [3, 1, 1], "m");
        Consumer(g, "Conv", "m", [4, 3, 1, 1]);
        var (folded, r) = FoldSafely(g);
        Assert.Contains("not known to be 3", AssertLeft(r, SkipReason.ShapeMismatch).Detail);
        Assert.Equal(1, Count(folded, "Mul"));
    }

    /// <summary>A scalar Mul → Conv on an input whose rank is not proven still folds: a constant of lower rank than the
    /// Conv's weight cannot have added axes, so the input has the weight's rank. (No value_info: with the axes hidden,
    /// ONNX Runtime would believe one of rank 2 and refuse the original.)</summary>
    [Fact]
    public void Forward_fold_into_conv_of_a_scalar_needs_no_proven_rank()
    {
        var g = Squeezed([2, 1, 3, 5, 5], 1, null);
        Op(g, "Mul", "a", [1, 1, 1], "m");
        Consumer(g, "Conv", "m", [4, 3, 3, 3], "y", ("pads", new long[] { 1, 1, 1, 1 }));
        var (folded, r) = FoldSafely(g);
        Assert.Equal("AffineForwardIntoConv", Single(r).Rule);
        Assert.Equal(["Cast", "Squeeze", "Conv"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    /// <summary>BN → Mul → MatMul on a [2, 3, 3] that a value_info says is [3, 3]: the BN's axis 1 is not the reduction
    /// axis.</summary>
    [Fact]
    public void Forward_fold_of_a_bn_into_matmul_needs_the_proven_rank()
    {
        var g = Squeezed([2, 1, 3, 3], 1, [3, 3]);
        g.Bn("a", 3, "bn");
        Op(g, "Mul", "bn", [3], "m");
        Consumer(g, "MatMul", "m", [3, 4]);
        var (folded, r) = FoldSafely(g);
        Assert.Contains("value_info is no proof", AssertLeft(r, SkipReason.UnknownRank).Detail);
        Assert.Equal(1, Count(folded, "BatchNormalization"));
    }

    /// <summary>Mul by [1, 1] → Gemm on a [3] that a value_info says is [1, 3]: the constant makes A 2-D; the folded
    /// Gemm would read a 1-D A. With a constant [1] (fewer axes than Gemm's A) the fold is exact: A has rank 2.</summary>
    [Theory]
    [InlineData(new long[] { 1, 3 }, new long[] { 1, 1 }, false)]
    [InlineData(new long[] { 1, 2, 3 }, new long[] { 1 }, true)]
    public void Forward_fold_into_gemm_needs_the_proven_rank_when_a_constant_could_add_axes(long[] dims, long[] constant, bool folds)
    {
        var g = Squeezed(dims, 0, dims[1..]);
        Op(g, "Mul", "a", constant, "m", 2, 2);
        Consumer(g, "Gemm", "m", [3, 4]);
        var (folded, r) = FoldSafely(g);
        if (folds)
        {
            Assert.Equal("AffineForwardIntoGemm", Single(r).Rule);
            Assert.Equal(["Cast", "Squeeze", "Gemm"], folded.Proto.Graph.Node.Select(n => n.OpType));
        }
        else
        {
            Assert.Contains("value_info is no proof", AssertLeft(r, SkipReason.UnknownRank).Detail);
            Assert.Equal(1, Count(folded, "Mul"));
        }
    }
}
