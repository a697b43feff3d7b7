using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.Rewriting.Affine.AffineTestGraphs;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting.Affine;

public class AffineMergeTests
{
    static GraphBuilder Relu(int type = F32, long opset = 15)
    {
        var g = new GraphBuilder(opset);
        g.Input("x", type, [2, 4, 5, 5]);
        g.Node("Relu", ["x"], "r", "relu");
        return g;
    }

    [Fact]
    public void Bn_then_mul_then_add_become_one_mul_and_add()
    {
        var g = Relu();
        g.Bn("r", 4, "bn");
        Op(g, "Mul", "bn", [1, 4, 1, 1], "m");
        Op(g, "Add", "m", [4, 1, 1], "a", -1, 1);
        g.Node("Sigmoid", ["a"], "y", "sigmoid");
        g.Output("y", F32, null);
        var (folded, r) = FoldChecked(g.Build());
        var d = Single(r);
        Assert.Equal(Outcome.Replaced, d.Outcome);
        Assert.Equal("AffineMerge", d.Rule);
        Assert.Equal("bn_bn", d.Anchor);
        Assert.Equal(["Relu", "Mul", "Add", "Sigmoid"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    [Fact]
    public void Mul_and_add_then_bn_in_float16_become_one_mul_and_add()
    {
        var g = Relu(F16);
        Op(g, "Mul", "r", [1, 4, 1, 1], "m", 0.5, 1.5, F16);
        Op(g, "Add", "m", [4, 1, 1], "a", -1, 1, F16);
        g.Bn("a", 4, "bn", F16);
        g.Node("Sigmoid", ["bn"], "y", "sigmoid");
        g.Output("y", F16, null);
        var (folded, r) = FoldChecked(g.Build());
        Assert.Equal("AffineMerge", Single(r).Rule);
        Assert.Equal(["Relu", "Mul", "Add", "Sigmoid"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    [Fact]
    public void Scales_alone_merge_into_one_mul_along_the_last_axis()
    {
        var g = Relu();
        Op(g, "Mul", "r", [5], "m");
        Op(g, "Div", "m", [1, 5], "d", 1, 2);
        Op(g, "Mul", "d", [], "y", 1, 2);
        g.Output("y", F32, null);
        var (folded, r) = FoldChecked(g.Build());
        Assert.Equal("AffineMerge", Single(r).Rule);
        Assert.Equal(["Relu", "Mul"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    [Fact]
    public void Constants_along_different_axes_do_not_merge()
    {
        var g = Relu();
        Op(g, "Mul", "r", [4, 1, 1], "m");
        Op(g, "Mul", "m", [5], "y");
        g.Output("y", F32, null);
        var (folded, r) = FoldChecked(g.Build());
        Assert.Equal(2, Count(folded, "Mul"));
        Assert.Contains("[5]", AssertLeft(r, SkipReason.ChannelAxisMismatch).Detail);
    }

    [Fact]
    public void A_mul_and_add_already_minimal_are_left_as_they_are()
    {
        var g = Relu();
        Op(g, "Mul", "r", [4, 1, 1], "m");
        Op(g, "Add", "m", [4, 1, 1], "y", -1, 1);
        g.Output("y", F32, null);
        var (folded, r) = FoldChecked(g.Build());
        Assert.Equal(["Relu", "Mul", "Add"], folded.Proto.Graph.Node.Select(n => n.OpType));
        Assert.Empty(r.Log.Decisions); // nothing any rule could do: no candidate
    }

    /// <summary>Keeping standalone BNs keeps each as a BatchNormalization, with the affine ops next to it as they are.</summary>
    [Fact]
    public void Kept_standalone_bns_are_not_merged()
    {
        var g = Relu();
        g.Bn("r", 4, "bn");
        Op(g, "Mul", "bn", [1, 4, 1, 1], "y");
        g.Output("y", F32, null);
        var (folded, r) = Fold(g.Build(), new PipelineOptions { KeepStandaloneBatchNorm = true });
        AssertEquivalent(g.Build(), folded);
        Assert.Equal(["Relu", "BatchNormalization", "Mul"], folded.Proto.Graph.Node.Select(n => n.OpType));
        Assert.Contains("standalone BNs are kept", AssertLeft(r, SkipReason.ProducerNotFoldable, "bn_bn").Detail);
    }

    /// <summary>Keeping standalone BNs does not switch merging off: affine ops without a BN among them still merge
    /// (the option used to disable the whole merge phase).</summary>
    [Fact]
    public void Other_affine_ops_still_merge_when_standalone_bns_are_kept()
    {
        var g = Relu();
        Op(g, "Mul", "r", [4, 1, 1], "m1");
        Op(g, "Add", "m1", [4, 1, 1], "a1", -1, 1);
        Op(g, "Mul", "a1", [4, 1, 1], "m2");
        Op(g, "Add", "m2", [4, 1, 1], "y", -1, 1);
        g.Output("y", F32, null);
        var keep = new PipelineOptions { KeepStandaloneBatchNorm = true };
        var (folded, r) = FoldChecked(g.Build(), keep);
        Assert.Equal(["Relu", "Mul", "Add"], folded.Proto.Graph.Node.Select(n => n.OpType));
        Assert.Equal("AffineMerge", Single(r).Rule);
        Assert.Equal(Outcome.Replaced, Single(r).Outcome);
    }

    [Fact]
    public void Before_opset_7_the_merged_ops_carry_broadcast_and_axis()
    {
        // ORT runs no opset-6 Mul/Add, so the structure is checked.
        var g = Relu(opset: 6);
        g.Node("BatchNormalization", ["r", .. g.BnParams("bn", 4)], "bn", "bn_bn", ("is_test", 1L));
        g.Init("k", F32, [4], 0.5, 1.5);
        g.Node("Mul", ["bn", "k"], "y", "mul", ("broadcast", 1L), ("axis", 1L));
        g.Output("y", F32, null);
        var (folded, r) = Fold(g.Build());
        Assert.Equal("AffineMerge", Single(r).Rule);
        foreach (var n in folded.Proto.Graph.Node.Where(n => n.OpType is "Mul" or "Add"))
        {
            Assert.Equal(1, n.Attribute.Single(a => a.Name == "broadcast").I);
            Assert.Equal(1, n.Attribute.Single(a => a.Name == "axis").I);
            Assert.Equal([4L], folded.Proto.Graph.Initializer.Single(t => t.Name == n.Input[1]).Dims);
        }
    }

    [Fact]
    public void An_op_that_changes_no_value_is_removed()
    {
        var g = Relu();
        Op(g, "Mul", "r", [1, 4, 1, 1], "m");
        g.SetInit("m.c", F32, [1, 4, 1, 1], [1, 1, 1, 1]);
        g.Node("Sigmoid", ["m"], "y", "sigmoid");
        g.Output("y", F32, null);
        var (folded, r) = FoldChecked(g.Build());
        Assert.Equal(Outcome.Replaced, Single(r).Outcome);
        Assert.Contains("changes no value", Single(r).Detail);
        Assert.Equal(["Relu", "Sigmoid"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    [Fact]
    public void A_scale_of_ones_before_a_shift_leaves_the_shift()
    {
        var g = Relu(F16);
        Op(g, "Mul", "r", [4, 1, 1], "m", type: F16);
        g.SetInit("m.c", F16, [4, 1, 1], [1, 1, 1, 1]);
        Op(g, "Add", "m", [4, 1, 1], "a", -1, 1, F16);
        g.Node("Sigmoid", ["a"], "y", "sigmoid");
        g.Output("y", F16, null);
        var (folded, _) = FoldChecked(g.Build());
        Assert.Equal(["Relu", "Add", "Sigmoid"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    [Fact]
    public void An_op_of_ones_that_widens_its_input_stays()
    {
        var g = new GraphBuilder();
        g.Input("x", F32, [2, 1, 5, 5]);
        g.Node("Relu", ["x"], "r", "relu");
        Op(g, "Mul", "r", [1, 4, 1, 1], "m");
        g.SetInit("m.c", F32, [1, 4, 1, 1], [1, 1, 1, 1]);
        g.Node("Sigmoid", ["m"], "y", "sigmoid");
        g.Output("y", F32, null);
        var (folded, r) = FoldChecked(g.Build());
        Assert.Contains("widen", AssertLeft(r, SkipReason.ShapeMismatch).Detail);
        Assert.Equal(1, Count(folded, "Mul"));
    }

    /// <summary>X → BN₀ → Add → BN₁: BN₀'s piece merges into a Mul + Add; BN₁'s must not take that Mul + Add apart again
    /// (it would round twice, and the first merge's records would name tensors that are gone: a weight-audit false
    /// alarm). BN₁ becomes a Mul + Add of its own.</summary>
    [Theory]
    [InlineData(F32)]
    [InlineData(F64)]
    public void A_merge_leaves_the_mul_and_add_an_earlier_merge_made(int type)
    {
        var g = new GraphBuilder();
        g.Input("x", type, [2, 4, 5, 5]);
        g.Bn("x", 4, "b0", type);
        Op(g, "Add", "b0", [4, 1, 1], "a", -1, 1, type);
        g.Bn("a", 4, "b1", type);
        g.Node("Relu", ["b1"], "y", "relu");
        g.Output("y", type, null);
        var (folded, r) = FoldChecked(g.Build());
        Assert.Equal("AffineMerge", r.Log.Decisions.Single(d => d.Anchor == "bn_b0").Rule);
        Assert.Equal("BatchNormToMulAdd", r.Log.Decisions.Single(d => d.Anchor == "bn_b1").Rule);
        Assert.Equal(["Mul", "Add", "Mul", "Add", "Relu"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    /// <summary>A constant of 4 values along an axis X proves is 2 long does not broadcast (the original fails when run);
    /// merged, the invalid broadcast would surface as a model ORT refuses to load.</summary>
    [Fact]
    public void A_constant_that_does_not_fit_the_proven_axis_is_not_merged()
    {
        var g = new GraphBuilder();
        g.Input("x", F32, [1, 4, 3, 2]);
        g.Node("Relu", ["x"], "r", "relu");
        Op(g, "Mul", "r", [], "m", 2, 2);
        Op(g, "Mul", "m", [4], "y");
        g.Output("y", F32, null);
        var (folded, r) = Fold(g.Build());
        Assert.Contains("which has 2 channels", AssertLeft(r, SkipReason.ShapeMismatch).Detail);
        Assert.Equal(2, Count(folded, "Mul"));
    }

    /// <summary>MatMul (one column) → c − x → Add, Add, Div along axis 0: AffineIntoMatMul folds c − x (B' = −B, a new bias
    /// Add); the merge must leave that Add (its bias is the fold's record) and merge the rest after it.</summary>
    [Fact]
    public void A_merge_leaves_the_bias_add_a_matmul_fold_made()
    {
        var g = new GraphBuilder();
        g.Input("a", F32, [3, 4]);
        g.Init("B", F32, [4, 1]);
        g.Node("MatMul", ["a", "B"], "mm", "matmul");
        Op(g, "Sub", "mm", [1], "s", -1, 1, constantFirst: true);
        Op(g, "Add", "s", [3, 1], "p", -1, 1);
        Op(g, "Add", "p", [3, 1], "q", -1, 1);
        Op(g, "Div", "q", [3, 1], "y");
        g.Output("y", F32, null);
        var (folded, r) = FoldChecked(g.Build());
        Assert.Equal(["AffineIntoMatMul", "AffineMerge"], r.Log.Decisions.Where(d => d.Outcome != Outcome.Left).Select(d => d.Rule));
        Assert.Equal(["MatMul", "Add", "Mul", "Add"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }
}
