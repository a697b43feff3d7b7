using NormFold.Onnx.Proto;
using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting;

/// <summary>What every BN rule requires of the BatchNormalization itself, across its opset versions.</summary>
public class BatchNormParametersTests
{
    static readonly PipelineOptions Keep = new() { KeepStandaloneBatchNorm = true };

    /// <summary>Conv → BN at the given opset; <paramref name="configure"/> adjusts the BN node.</summary>
    static GraphBuilder ConvBn(long opset, Action<GraphBuilder, NodeProto>? configure = null, string[]? bnOutputs = null)
    {
        var g = new GraphBuilder(opset);
        g.Input("x", F32, [1, 3, 5, 5]);
        g.Init("w", F32, [4, 3, 3, 3]);
        g.Node("Conv", ["x", "w"], "c", "conv");
        var p = g.BnParams("bn", 4);
        var bn = g.NodeMulti("BatchNormalization", ["c", .. p], bnOutputs ?? ["y"], "bn");
        configure?.Invoke(g, bn);
        g.Output("y");
        return g;
    }

    [Theory]
    [InlineData(7)]
    [InlineData(9)]
    [InlineData(13)]
    [InlineData(14)]
    [InlineData(15)]
    [InlineData(21)]
    public void Folds_eval_mode_bn_of_every_ort_supported_version(long opset)
    {
        FoldAndCheck(ConvBn(opset).Build());
    }

    [Fact]
    public void Bn6_with_is_test_and_consumed_inputs_folds()
    {
        // ORT has no BatchNormalization-6 kernel, so this checks the decision only; the arithmetic is shared.
        var g = ConvBn(6, (_, bn) => { bn.Attribute.Add(Attr("is_test", 1L)); bn.Attribute.Add(Attr("spatial", 1L)); });
        var (_, r) = Fold(g.Build());
        Assert.Equal(Outcome.Folded, Single(r).Outcome);
    }

    [Fact]
    public void Bn6_without_is_test_is_training_mode()
    {
        var (_, r) = Fold(ConvBn(6).Build(), Keep);
        var d = AssertLeft(r, SkipReason.TrainingMode);
        Assert.Contains("is_test=0", d.Detail);
    }

    [Fact]
    public void Bn14_training_mode_is_refused()
    {
        var (_, r) = Fold(ConvBn(14, (_, bn) => bn.Attribute.Add(Attr("training_mode", 1L))).Build(), Keep);
        AssertLeft(r, SkipReason.TrainingMode);
    }

    [Fact]
    public void Bn9_with_five_outputs_is_the_training_form()
    {
        var (_, r) = Fold(ConvBn(9, bnOutputs: ["y", "m", "v", "sm", "sv"]).Build(), Keep);
        var d = AssertLeft(r, SkipReason.TrainingMode);
        Assert.Contains("5 outputs", d.Detail);
    }

    [Fact]
    public void Bn15_optional_output_read_is_refused()
    {
        var g = ConvBn(15, bnOutputs: ["y", "running_mean", "running_var"]);
        g.Output("running_mean");
        var (_, r) = Fold(g.Build(), Keep);
        var d = AssertLeft(r, SkipReason.OptionalOutputsUsed);
        Assert.Contains("running_mean", d.Detail);
    }

    [Fact]
    public void Bn15_unread_optional_outputs_do_not_block_folding()
    {
        var (folded, r) = Fold(ConvBn(15, bnOutputs: ["y", "running_mean", "running_var"]).Build());
        Assert.Equal(Outcome.Folded, Single(r).Outcome);
        Assert.Equal(0, Count(folded, "BatchNormalization"));
    }

    [Fact]
    public void Bn7_spatial_0_is_refused()
    {
        var (_, r) = Fold(ConvBn(7, (_, bn) => bn.Attribute.Add(Attr("spatial", 0L))).Build(), Keep);
        AssertLeft(r, SkipReason.NonSpatial);
    }

    [Fact]
    public void Unknown_future_opset_is_refused()
    {
        var (_, r) = Fold(ConvBn(99).Build());
        var d = AssertLeft(r, SkipReason.UnsupportedOpsetVersion);
        Assert.Contains("99", d.Detail);
    }

    [Fact]
    public void Statistics_fed_at_run_time_are_not_constant()
    {
        var g = new GraphBuilder(15);
        g.Input("x", F32, [1, 3, 5, 5]);
        g.Input("mean", F32, [4]);
        g.Init("w", F32, [4, 3, 3, 3]);
        g.Node("Conv", ["x", "w"], "c", "conv");
        var p = g.BnParams("bn", 4);
        g.Node("BatchNormalization", ["c", p[0], p[1], "mean", p[3]], "y", "bn");
        g.Output("y");
        var (_, r) = Fold(g.Build());
        var d = AssertLeft(r, SkipReason.ParameterNotConstant);
        Assert.Contains("mean: 'mean' is a graph input", d.Detail);
    }

    [Fact]
    public void Nan_parameter_is_refused()
    {
        var g = ConvBn(15);
        g.SetInit("bn.var", F32, [4], [1, double.NaN, 1, 1]);
        var (_, r) = Fold(g.Build());
        var d = AssertLeft(r, SkipReason.NonFiniteParameter);
        Assert.Contains("var 'bn.var'[1]", d.Detail);
    }

    [Fact]
    public void Variance_plus_epsilon_not_positive_is_refused()
    {
        var g = ConvBn(15);
        g.SetInit("bn.var", F32, [4], [1, 1, -1e-5f, 1]);
        var (_, r) = Fold(g.Build());
        var d = AssertLeft(r, SkipReason.NonPositiveVariance);
        Assert.Contains("var[2]", d.Detail);
    }

    [Fact]
    public void Parameters_of_different_lengths_are_refused()
    {
        var g = ConvBn(15);
        g.SetInit("bn.beta", F32, [5], [0, 0, 0, 0, 0]);
        var (_, r) = Fold(g.Build());
        var d = AssertLeft(r, SkipReason.ShapeMismatch);
        Assert.Contains("B 'bn.beta' has shape [5]", d.Detail);
    }

    [Fact]
    public void Integer_parameters_are_refused()
    {
        var g = ConvBn(15);
        var mean = g.Graph.Initializer.Single(t => t.Name == "bn.mean");
        mean.ClearRawData();
        mean.DataType = (int)TensorProto.Types.DataType.Int32;
        mean.Int32Data.AddRange([0, 0, 0, 0]);
        var (_, r) = Fold(g.Build());
        AssertLeft(r, SkipReason.UnsupportedDataType);
    }

    [Fact]
    public void Epsilon_is_part_of_the_algebra()
    {
        // A large ε makes ignoring it a visible error: the equivalence check would fail.
        var g = new GraphBuilder(15);
        g.Input("x", F32, [1, 3, 5, 5]);
        g.Init("w", F32, [4, 3, 3, 3]);
        g.Node("Conv", ["x", "w"], "c", "conv");
        g.Bn("c", 4, "y", epsilon: 0.5f);
        g.Output("y");
        FoldAndCheck(g.Build());
    }
}
