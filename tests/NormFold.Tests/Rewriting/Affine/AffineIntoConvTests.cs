using NormFold.Rewriting;
using NormFold.Tensors;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.Rewriting.Affine.AffineTestGraphs;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting.Affine;

public class AffineIntoConvTests
{
    [Theory]
    [InlineData("Mul", "Add")]
    [InlineData("Add", "Mul")]
    [InlineData("Mul", "Mul")]
    [InlineData("Div", "Sub")]
    [InlineData("Sub", "Div")]
    [InlineData("Add", "Add")]
    [InlineData("Div", "")]
    [InlineData("Sub", "")]
    public void A_chain_of_per_channel_ops_in_any_order_folds_into_the_conv(string first, string second)
    {
        var g = Conv();
        string y = Op(g, first, "c", [1, 6, 1, 1], second.Length == 0 ? "y" : "m");
        if (second.Length > 0) y = Op(g, second, "m", [6, 1, 1], "y");
        g.Output(y, F32, null);
        var (folded, r) = FoldChecked(g.Build());
        var d = Single(r);
        Assert.Equal(Outcome.Folded, d.Outcome);
        Assert.Equal("AffineIntoConv", d.Rule);
        Assert.Equal("Conv 'conv'", d.Target);
        Assert.Equal(0, AffineOps(folded));
        Assert.Equal("y", folded.Proto.Graph.Node.Single().Output[0]);
    }

    [Fact]
    public void Scalar_constants_and_constant_minus_x_fold()
    {
        var g = Conv(bias: false);
        Op(g, "Mul", "c", [], "m", 2, 3);
        Op(g, "Sub", "m", [1, 6, 1, 1], "y", -1, 1, constantFirst: true); // y = c − m: scale −1, shift c
        g.Output("y", F32, null);
        var (folded, r) = FoldChecked(g.Build());
        Assert.Equal(Outcome.Folded, Single(r).Outcome);
        Assert.Equal(0, AffineOps(folded));
        Assert.Equal(3, folded.Proto.Graph.Node.Single().Input.Count); // the bias was created
    }

    [Fact]
    public void Constants_through_Constant_nodes_Unsqueeze_Reshape_and_Identity_fold()
    {
        var g = Conv(opset: 13);
        g.ConstantNode("s6", F32, [6], 0.5, 1.5);
        g.Node("Unsqueeze", ["s6", g.Int64s("axes", 1, 2)], "s611", "unsq");
        g.Node("Mul", ["c", "s611"], "m", "mul");
        g.Init("t6", F32, [6], -1, 1);
        g.Node("Reshape", ["t6", g.Int64s("shape", 1, -1, 1, 1)], "t1611", "reshape");
        g.Node("Identity", ["t1611"], "t_id", "identity");
        g.Node("Add", ["t_id", "m"], "y", "add");
        g.Output("y", F32, null);
        var (folded, r) = FoldChecked(g.Build());
        Assert.Equal(Outcome.Folded, Single(r).Outcome);
        Assert.Equal(["Conv"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    /// <summary>ONNX Runtime's own fusion test models: Conv → BN → Mul → Add and Conv → BN → Add → Mul in float16,
    /// the Mul/Add constants through Unsqueeze. The BN and the ops after it fold in one rounding, one decision.</summary>
    [Theory]
    [InlineData("Mul", "Add")]
    [InlineData("Add", "Mul")]
    public void Ort_fusion_graphs_in_float16_fold_completely(string first, string second)
    {
        var original = OrtStyle(first, second);
        var (folded, r) = FoldChecked(original);
        var d = Single(r);
        Assert.Equal("bn_bn", d.Anchor);
        Assert.Equal("AffineIntoConv", d.Rule);
        Assert.Equal(["Conv"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    [Fact]
    public void Bfloat16_weights_are_the_composed_factors_applied_in_double_and_rounded_once()
    {
        // ORT's CPU provider has no bfloat16 Conv: the algebra is checked directly.
        var g = Conv(type: BF16, bias: true);
        Op(g, "Mul", "c", [1, 6, 1, 1], "m", 0.5, 1.5, BF16);
        Op(g, "Div", "m", [6, 1, 1], "n", 0.5, 1.5, BF16);
        Op(g, "Add", "n", [6, 1, 1], "y", -1, 1, BF16);
        g.Output("y", BF16, null);
        var original = g.Build();
        var (folded, r) = Fold(original);
        Assert.Equal(Outcome.Folded, Single(r).Outcome);
        AssertAuditPasses(original, folded, r);
        double[] Read(NormFold.Onnx.OnnxModel m, string n) => m.ReadDoubles(m.Proto.Graph.Initializer.Single(t => t.Name == n));
        double[] w = Read(original, "w"), b = Read(original, "b"), k1 = Read(original, "m.c"), k2 = Read(original, "n.c"), k3 = Read(original, "y.c");
        var conv = folded.Proto.Graph.Node.Single();
        double[] wNew = Read(folded, conv.Input[1]), bNew = Read(folded, conv.Input[2]);
        double R(double v) => Rounding.FromBFloat16Bits(Rounding.ToBFloat16Bits(v));
        int perRow = w.Length / 6;
        for (int c = 0; c < 6; c++)
        {
            double s = 1.0 / k2[c] * k1[c];
            Assert.Equal(R(s * b[c] + k3[c]), bNew[c]);
            for (int k = 0; k < perRow; k++) Assert.Equal(R(w[c * perRow + k] * s), wNew[c * perRow + k]);
        }
    }

    [Fact]
    public void A_weight_shared_with_another_conv_is_not_changed_in_place()
    {
        var g = new GraphBuilder();
        g.Input("x", F32, [1, 4, 5, 5]);
        g.Init("w", F32, [4, 4, 3, 3]);
        g.Node("Conv", ["x", "w"], "c1", "conv1", ("pads", new long[] { 1, 1, 1, 1 }));
        Op(g, "Mul", "c1", [1, 4, 1, 1], "y1");
        g.Node("Conv", ["x", "w"], "y2", "conv2", ("pads", new long[] { 1, 1, 1, 1 }));
        g.Output("y1", F32, null);
        g.Output("y2", F32, null);
        var original = g.Build();
        var (folded, _) = FoldChecked(original);
        var conv2 = folded.Proto.Graph.Node.Single(n => n.Name == "conv2");
        Assert.Equal("w", conv2.Input[1]);
        Assert.Equal(original.Proto.Graph.Initializer.Single(t => t.Name == "w"), folded.Proto.Graph.Initializer.Single(t => t.Name == "w"));
    }

    [Fact]
    public void A_constant_varying_along_another_axis_is_refused_with_its_shape()
    {
        var g = Conv();
        Op(g, "Mul", "c", [1, 1, 1, 5], "y");
        g.Output("y", F32, null);
        var (folded, r) = FoldChecked(g.Build());
        var d = AssertLeft(r, SkipReason.ChannelAxisMismatch);
        Assert.Contains("[1,1,1,5]", d.Detail);
        Assert.Equal(1, Count(folded, "Mul"));
    }

    [Fact]
    public void A_constant_of_higher_rank_is_refused_with_its_shape()
    {
        var g = Conv();
        Op(g, "Add", "c", [1, 1, 6, 1, 1], "y");
        g.Output("y", F32, null);
        var (_, r) = FoldChecked(g.Build());
        Assert.Contains("[1,1,6,1,1]", AssertLeft(r, SkipReason.ShapeMismatch).Detail);
    }

    [Fact]
    public void Division_by_zero_is_refused_as_non_finite()
    {
        var g = Conv();
        Op(g, "Div", "c", [1, 6, 1, 1], "y");
        g.SetInit("y.c", F32, [1, 6, 1, 1], [1, 2, 0, 4, 5, 6]);
        g.Output("y", F32, null);
        var (_, r) = Fold(g.Build());
        Assert.Contains("reciprocal", AssertLeft(r, SkipReason.NonFiniteParameter).Detail);
    }

    [Fact]
    public void A_non_finite_constant_is_refused()
    {
        var g = Conv();
        Op(g, "Add", "c", [6, 1, 1], "y");
        g.SetInit("y.c", F32, [6, 1, 1], [1, 2, double.NaN, 4, 5, 6]);
        g.Output("y", F32, null);
        var (_, r) = Fold(g.Build());
        AssertLeft(r, SkipReason.NonFiniteParameter);
    }

    [Fact]
    public void A_float16_weight_that_would_overflow_is_refused()
    {
        var g = Conv(type: F16);
        Op(g, "Mul", "c", [], "y", 3e4, 4e4, F16); // 8·3e4 > 65504, the largest float16
        g.SetInit("w", F16, [6, 4, 3, 3], Enumerable.Repeat(8.0, 6 * 4 * 9).ToArray());
        g.Output("y", F16, null);
        var (folded, r) = Fold(g.Build());
        Assert.Contains("float16", AssertLeft(r, SkipReason.FoldedValueNotFinite).Detail);
        Assert.Equal(1, Count(folded, "Mul"));
    }

    [Fact]
    public void A_conv_output_read_elsewhere_is_refused()
    {
        var g = Conv();
        Op(g, "Mul", "c", [1, 6, 1, 1], "y");
        g.Node("Relu", ["c"], "r", "relu");
        g.Output("y", F32, null);
        g.Output("r", F32, null);
        var (_, r) = FoldChecked(g.Build());
        Assert.Contains("Relu 'relu'", AssertLeft(r, SkipReason.ProducerHasOtherConsumers).Detail);
    }

    [Fact]
    public void A_conv_output_that_is_a_graph_output_is_refused()
    {
        var g = Conv();
        Op(g, "Mul", "c", [1, 6, 1, 1], "y");
        g.Output("y", F32, null);
        g.Output("c", F32, null);
        var (_, r) = FoldChecked(g.Build());
        AssertLeft(r, SkipReason.ProducerOutputIsGraphOutput);
    }

    [Fact]
    public void A_weight_fed_at_run_time_is_refused()
    {
        var g = new GraphBuilder();
        g.Input("x", F32, [1, 4, 5, 5]);
        g.Input("w", F32, [6, 4, 3, 3]);
        g.Node("Conv", ["x", "w"], "c", "conv");
        Op(g, "Mul", "c", [1, 6, 1, 1], "y");
        g.Output("y", F32, null);
        var (_, r) = FoldChecked(g.Build());
        Assert.Contains("graph input", AssertLeft(r, SkipReason.ParameterNotConstant).Detail);
    }

    /// <summary>A Conv input whose rank nothing declares or proves (Squeeze's output): the Conv's output has its
    /// weight's rank, which is all the fold needs.</summary>
    [Fact]
    public void The_output_rank_comes_from_the_weight()
    {
        var g = new GraphBuilder();
        g.Input("x", F32, [2, 1, 4, 5, 5]);
        g.Node("Squeeze", ["x", g.Int64s("axes", 1)], "s", "squeeze");
        g.Init("w", F32, [6, 4, 3, 3]);
        g.Node("Conv", ["s", "w"], "c", "conv");
        Op(g, "Mul", "c", [6, 1, 1], "y");
        g.Output("y", F32, null);
        var (folded, r) = FoldChecked(g.Build());
        Assert.Equal("AffineIntoConv", Single(r).Rule);
        Assert.Equal(["Squeeze", "Conv"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    [Fact]
    public void The_rule_can_be_disabled_by_name()
    {
        var g = Conv();
        Op(g, "Mul", "c", [1, 6, 1, 1], "y");
        g.Output("y", F32, null);
        var (_, r) = Fold(g.Build(), new PipelineOptions { DisabledRules = new HashSet<string> { "AffineIntoConv" } });
        AssertLeft(r, SkipReason.RuleDisabled);
    }

    /// <summary>x / 1e-39 overflows float for |x| > 0.34 in the original; composed with · 1e-10 in double it would not.</summary>
    [Fact]
    public void A_step_whose_factor_overflows_the_type_is_refused()
    {
        var g = Conv();
        Op(g, "Div", "c", [6, 1, 1], "d");
        g.SetInit("d.c", F32, [6, 1, 1], Enumerable.Repeat(1e-39, 6).ToArray());
        Op(g, "Mul", "d", [6, 1, 1], "y");
        g.SetInit("y.c", F32, [6, 1, 1], Enumerable.Repeat(1e-10, 6).ToArray());
        g.Output("y", F32, null);
        var (folded, r) = Fold(g.Build());
        Assert.Contains("overflows", AssertLeft(r, SkipReason.NonFiniteParameter).Detail);
        Assert.Equal(1, Count(folded, "Div"));
    }
}
