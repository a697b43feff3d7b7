using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.Rewriting.Affine.AffineTestGraphs;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting.Affine;

public class AffineForwardIntoConvTests
{
    /// <summary>x [2, 4, 5, 5] → (ops added by the test) → "z" → Conv(w [8, 4/group, 3, 3], b?) → y.</summary>
    static GraphBuilder Graph(out string x, int type = F32)
    {
        var g = new GraphBuilder(13);
        x = g.Input("x", type, [2, 4, 5, 5]);
        return g;
    }

    static void Conv(GraphBuilder g, string input, int type = F32, long group = 1, bool bias = true, params (string Name, object Value)[] attrs)
    {
        string w = g.Init("w", type, [8, 4 / group, 3, 3]);
        string[] inputs = bias ? [input, w, g.Init("b", type, [8])] : [input, w];
        g.Node("Conv", inputs, "y", "conv", [("group", group), .. attrs]);
        g.Output("y", type, null);
    }

    [Theory]
    [InlineData(1, true)]
    [InlineData(2, false)]
    [InlineData(4, true)]
    public void Scale_and_shift_fold_into_an_unpadded_conv_of_any_group(long group, bool bias)
    {
        var g = Graph(out var x);
        Op(g, "Sub", x, [1, 4, 1, 1], "s", -1, 1);
        Op(g, "Div", "s", [4, 1, 1], "z", 0.5, 2);
        Conv(g, "z", group: group, bias: bias);
        var (folded, r) = FoldChecked(g.Build());
        var d = Single(r);
        Assert.Equal("AffineForwardIntoConv", d.Rule);
        Assert.Equal("Conv 'conv'", d.Target);
        Assert.Equal(["Conv"], folded.Proto.Graph.Node.Select(n => n.OpType));
        Assert.Equal("x", folded.Proto.Graph.Node[0].Input[0]);
    }

    [Fact]
    public void A_bn_whose_producer_cannot_take_it_folds_forward_in_float16()
    {
        var g = Graph(out var x, F16);
        g.Node("Relu", [x], "r", "relu");
        g.Bn("r", 4, "z", F16);
        Conv(g, "z", F16, group: 2, attrs: ("auto_pad", "VALID"));
        var (folded, r) = FoldChecked(g.Build());
        var d = Single(r);
        Assert.Equal("bn_z", d.Anchor);
        Assert.Equal("AffineForwardIntoConv", d.Rule);
        Assert.Equal(["Relu", "Conv"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    [Fact]
    public void A_scale_alone_folds_into_a_padded_conv()
    {
        var g = Graph(out var x);
        Op(g, "Mul", x, [1, 4, 1, 1], "z");
        Conv(g, "z", attrs: ("pads", new long[] { 1, 1, 1, 1 }));
        var (folded, r) = FoldChecked(g.Build());
        Assert.Equal(Outcome.Folded, Single(r).Outcome);
        Assert.Equal(["Conv"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    [Fact]
    public void A_shift_into_a_padded_conv_is_refused_naming_the_pads()
    {
        var g = Graph(out var x);
        Op(g, "Mul", x, [1, 4, 1, 1], "m");
        Op(g, "Add", "m", [1, 4, 1, 1], "z", -1, 1);
        Conv(g, "z", attrs: ("pads", new long[] { 0, 1, 0, 1 }));
        var (folded, r) = FoldChecked(g.Build());
        Assert.Contains("pads=[0,1,0,1]", AssertLeft(r, SkipReason.PaddedConvolution).Detail);
        Assert.Equal(["Mul", "Add", "Conv"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    [Fact]
    public void A_shift_into_a_same_padded_conv_is_refused_naming_auto_pad()
    {
        var g = Graph(out var x);
        Op(g, "Add", x, [4, 1, 1], "z", -1, 1);
        Conv(g, "z", attrs: ("auto_pad", "SAME_UPPER"));
        var (_, r) = FoldChecked(g.Build());
        Assert.Contains("auto_pad=SAME_UPPER", AssertLeft(r, SkipReason.PaddedConvolution).Detail);
    }

    [Fact]
    public void A_per_channel_constant_on_an_input_of_unknown_channel_count_is_refused()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [2, -1, 5, 5]);
        Op(g, "Mul", "x", [1, 4, 1, 1], "z");
        Conv(g, "z");
        var (_, r) = Fold(g.Build());
        Assert.Contains("could be widening", AssertLeft(r, SkipReason.ShapeMismatch).Detail);
    }

    [Fact]
    public void A_bn_between_non_linear_ops_is_left_saying_why_on_both_sides()
    {
        var g = Graph(out var x);
        g.Node("Relu", [x], "r", "relu");
        g.Bn("r", 4, "m");
        g.Node("Sigmoid", ["m"], "y", "sigmoid");
        g.Output("y", F32, null);
        var (_, r) = Fold(g.Build(), new PipelineOptions { KeepStandaloneBatchNorm = true });
        var d = AssertLeft(r, SkipReason.ProducerNotFoldable);
        Assert.Contains("Relu 'relu'", d.Detail);
        Assert.Contains("Sigmoid 'sigmoid'", d.Detail);
    }

    [Fact]
    public void A_lone_op_between_non_linear_ops_is_no_candidate()
    {
        var g = Graph(out var x);
        g.Node("Relu", [x], "r", "relu");
        Op(g, "Mul", "r", [1, 4, 1, 1], "m");
        g.Node("Sigmoid", ["m"], "y", "sigmoid");
        g.Output("y", F32, null);
        var (folded, r) = Fold(g.Build());
        Assert.Empty(r.Log.Decisions);
        Assert.Equal(1, Count(folded, "Mul"));
    }

    /// <summary>x [4, 4, 5] (no batch axis) · c [1, 4, 1, 1] is [1, 4, 4, 5]: a conv input only after the Mul.</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_constant_that_adds_the_batch_axis_is_not_folded_forward(bool perChannel)
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [4, 4, 5]);
        Op(g, "Mul", "x", perChannel ? [1, 4, 1, 1] : [1, 1, 1, 1], "z");
        Conv(g, "z");
        var (folded, r) = FoldChecked(g.Build());
        AssertLeft(r, SkipReason.ShapeMismatch);
        Assert.Equal(1, Count(folded, "Mul"));
    }

    /// <summary>x [2, 1, 5, 5] · c [1, 4, 1, 1] → BN(4) → Conv: the BN proves 4 channels after the Mul, not in x.</summary>
    [Fact]
    public void A_mul_widening_one_channel_before_a_bn_is_not_folded_forward()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [2, 1, 5, 5]);
        Op(g, "Mul", "x", [1, 4, 1, 1], "m");
        g.Bn("m", 4, "z");
        g.Node("Conv", ["z", g.Init("w", F32, [6, 4, 1, 1])], "y", "conv");
        g.Output("y", F32, null);
        var (folded, r) = Fold(g.Build());
        AssertEquivalent(g.Build(), folded);
        Assert.DoesNotContain(r.Log.Decisions, d => d.Rule == "AffineForwardIntoConv");
    }
}
