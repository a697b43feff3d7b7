using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting;

public class IntoConvTests
{
    /// <summary>Conv(x, w[, b]) → BN → y, with the given spatial rank and group.</summary>
    static GraphBuilder ConvBn(int spatial, long group, bool bias, long cin = 4, long cout = 6, int type = F32, long opset = 15, bool constantNodes = false)
    {
        var g = new GraphBuilder(opset);
        long[] x = [2, cin, .. Enumerable.Repeat(5L, spatial)];
        g.Input("x", type, x);
        long[] wd = [cout, cin / group, .. Enumerable.Repeat(3L, spatial)];
        string w = constantNodes ? g.ConstantNode("w", type, wd) : g.Init("w", type, wd);
        string[] inputs = bias ? [ "x", w, constantNodes ? g.ConstantNode("b", type, [cout]) : g.Init("b", type, [cout]) ] : ["x", w];
        g.Node("Conv", inputs, "c", "conv", ("group", group), ("pads", Enumerable.Repeat(1L, 2 * spatial).ToArray()));
        g.Bn("c", cout, "y", type);
        g.Output("y", type, null);
        return g;
    }

    [Theory]
    [InlineData(1, 1, true)]
    [InlineData(1, 2, false)]
    [InlineData(2, 1, false)]
    [InlineData(2, 1, true)]
    [InlineData(2, 2, true)]
    [InlineData(3, 1, false)]
    [InlineData(3, 2, true)]
    public void Folds_conv_of_any_rank_and_group(int spatial, long group, bool bias)
    {
        var original = ConvBn(spatial, group, bias).Build();
        var (folded, r) = FoldAndCheck(original);
        var d = Single(r);
        Assert.Equal("BatchNormIntoConv", d.Rule);
        Assert.Equal("Conv 'conv'", d.Target);
        Assert.Equal(3, folded.Proto.Graph.Node[0].Input.Count); // a bias was added when absent
        Assert.Equal("y", folded.Proto.Graph.Node[0].Output[0]);   // the conv took over the BN's output name
    }

    [Fact]
    public void Folds_depthwise_conv()
    {
        var original = ConvBn(2, group: 6, bias: true, cin: 6, cout: 6).Build();
        FoldAndCheck(original);
    }

    [Fact]
    public void Folds_weights_held_in_constant_nodes_and_removes_the_constants()
    {
        var original = ConvBn(2, 1, bias: true, constantNodes: true).Build();
        var (folded, _) = FoldAndCheck(original);
        Assert.Equal(0, Count(folded, "Constant"));
    }

    [Fact]
    public void Folds_float16_weights_with_float32_statistics_bn15()
    {
        // BN-15 allows T = float16 for X/scale/B... here the whole model is fp16 except mean/var.
        var g = new GraphBuilder(15);
        g.Input("x", F16, [1, 4, 6, 6]);
        g.Init("w", F16, [8, 4, 3, 3]);
        g.Node("Conv", ["x", "w"], "c", "conv");
        string[] p = [g.Init("s", F16, [8], 0.5, 1.5), g.Init("b", F16, [8], -0.5, 0.5), g.Init("m", F32, [8], -0.5, 0.5), g.Init("v", F32, [8], 0.2, 2)];
        g.Node("BatchNormalization", ["c", .. p], "y", "bn");
        g.Output("y", F16, null);
        var (folded, _) = FoldAndCheck(g.Build());
        Assert.All(folded.Proto.Graph.Initializer, t => Assert.Equal(F16, t.DataType));
    }

    [Fact]
    public void Float16_weights_are_rounded_once_from_double()
    {
        var original = ConvBn(2, 1, bias: true, type: F16).Build();
        var (folded, _) = FoldAndCheck(original);
        // Recompute W·s in double from the original tensors and round once: the stored bits must be identical.
        var m = original;
        double[] Read(string n) => m.ReadDoubles(m.Proto.Graph.Initializer.Single(t => t.Name == n));
        double[] w = Read("w"), gamma = Read("y.gamma"), v = Read("y.var");
        var wNew = folded.ReadDoubles(folded.Proto.Graph.Initializer.Single(t => t.Name == "w_bnfold"));
        int perRow = w.Length / 6;
        for (int i = 0; i < w.Length; i++)
        {
            double s = gamma[i / perRow] / Math.Sqrt(v[i / perRow] + 1e-5f);
            Assert.Equal((double)NormFold.Tensors.Rounding.ToHalf(w[i] * s), wNew[i]);
        }
    }

    [Fact]
    public void Bfloat16_weights_are_computed_in_double_and_rounded_once()
    {
        // ORT's CPU provider has no bfloat16 Conv, so this case is checked against the algebra directly.
        var original = ConvBn(2, 1, bias: true, type: BF16).Build();
        var (folded, r) = Fold(original);
        Assert.Equal(Outcome.Folded, Single(r).Outcome);
        double[] Read(NormFold.Onnx.OnnxModel mm, string n) => mm.ReadDoubles(mm.Proto.Graph.Initializer.Single(t => t.Name == n));
        double[] w = Read(original, "w"), b = Read(original, "b"), gamma = Read(original, "y.gamma"), beta = Read(original, "y.beta"),
            mean = Read(original, "y.mean"), v = Read(original, "y.var");
        double[] wNew = Read(folded, "w_bnfold"), bNew = Read(folded, "b_bnfold");
        int perRow = w.Length / 6;
        for (int c = 0; c < 6; c++)
        {
            double s = gamma[c] / Math.Sqrt(v[c] + 1e-5f), t = beta[c] - mean[c] * s;
            Assert.Equal(NormFold.Tensors.Rounding.FromBFloat16Bits(NormFold.Tensors.Rounding.ToBFloat16Bits(b[c] * s + t)), bNew[c]);
            for (int k = 0; k < perRow; k++)
                Assert.Equal(NormFold.Tensors.Rounding.FromBFloat16Bits(NormFold.Tensors.Rounding.ToBFloat16Bits(w[c * perRow + k] * s)), wNew[c * perRow + k]);
        }
    }

    [Fact]
    public void A_weight_shared_by_two_convs_is_not_changed_in_place()
    {
        var g = new GraphBuilder();
        g.Input("x", F32, [1, 4, 5, 5]);
        g.Init("w", F32, [4, 4, 3, 3]);
        g.Node("Conv", ["x", "w"], "c1", "conv1", ("pads", new long[] { 1, 1, 1, 1 }));
        g.Bn("c1", 4, "y1");
        g.Node("Conv", ["y1", "w"], "c2", "conv2", ("pads", new long[] { 1, 1, 1, 1 }));
        g.Bn("c2", 4, "y2");
        g.Output("y2");
        var original = g.Build();
        var (folded, r) = FoldAndCheck(original);
        Assert.Equal(2, r.Log.Count(Outcome.Folded));
        var names = folded.Proto.Graph.Initializer.Select(t => t.Name).ToList();
        Assert.Equal(names.Count, names.Distinct().Count());
        Assert.Contains("w_bnfold", names);
        Assert.Contains("w_bnfold_1", names);
        Assert.DoesNotContain("w", names); // no longer read by anyone
    }

    [Fact]
    public void Refuses_when_the_conv_output_is_read_elsewhere()
    {
        var g = ConvBn(2, 1, true);
        g.Node("Relu", ["c"], "r", "relu");
        g.Output("r");
        var (folded, r) = Fold(g.Build(), new PipelineOptions { KeepStandaloneBatchNorm = true });
        var d = AssertLeft(r, SkipReason.ProducerHasOtherConsumers);
        Assert.Contains("Relu 'relu'", d.Detail);
        Assert.Equal(1, Count(folded, "BatchNormalization"));
    }

    [Fact]
    public void Refuses_when_the_conv_output_is_a_graph_output()
    {
        var g = ConvBn(2, 1, true);
        g.Output("c");
        var (_, r) = Fold(g.Build(), new PipelineOptions { KeepStandaloneBatchNorm = true });
        AssertLeft(r, SkipReason.ProducerOutputIsGraphOutput);
    }

    [Fact]
    public void Refuses_a_weight_that_is_also_a_graph_input()
    {
        var g = ConvBn(2, 1, true);
        g.Input("w", F32, [6, 4, 3, 3]); // initializer that can be overridden at run time
        var (_, r) = Fold(g.Build(), new PipelineOptions { KeepStandaloneBatchNorm = true });
        var d = AssertLeft(r, SkipReason.ParameterNotConstant);
        Assert.Contains("replaced at run time", d.Detail);
    }

    [Fact]
    public void Refuses_when_channel_counts_differ()
    {
        var g = new GraphBuilder();
        g.Input("x", F32, [1, 4, 5, 5]);
        g.Init("w", F32, [6, 4, 3, 3]);
        g.Node("Conv", ["x", "w"], "c", "conv");
        // A BN whose parameters have 5 values after a 6-channel conv (an invalid model ORT would reject at run time).
        g.Bn("c", 5, "y");
        g.Output("y");
        var (_, r) = Fold(g.Build(), new PipelineOptions { KeepStandaloneBatchNorm = true });
        var d = AssertLeft(r, SkipReason.ShapeMismatch);
        Assert.Contains("6 output channels", d.Detail);
    }

    [Fact]
    public void Refuses_a_disabled_rule_and_keeps_the_bn()
    {
        var (folded, r) = Fold(ConvBn(2, 1, true).Build(), new PipelineOptions { DisabledRules = new HashSet<string> { "BatchNormIntoConv" } });
        AssertLeft(r, SkipReason.RuleDisabled);
        Assert.Equal(1, Count(folded, "BatchNormalization"));
    }

    [Fact]
    public void Refuses_an_integer_weight()
    {
        var g = new GraphBuilder();
        g.Input("x", F32, [1, 4, 5, 5]);
        var w = new NormFold.Onnx.Proto.TensorProto { Name = "w", DataType = 6, Dims = { 6, 4, 3, 3 } };
        w.Int32Data.AddRange(new int[6 * 4 * 9]);
        g.Graph.Initializer.Add(w);
        g.Node("Conv", ["x", "w"], "c", "conv");
        g.Bn("c", 6, "y");
        g.Output("y");
        var (_, r) = Fold(g.Build(), new PipelineOptions { KeepStandaloneBatchNorm = true });
        AssertLeft(r, SkipReason.UnsupportedDataType);
    }
}
