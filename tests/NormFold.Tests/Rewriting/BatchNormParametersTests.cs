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
    public void Bn6_optional_output_read_is_refused()
    {
        var g = ConvBn(6, (_, bn) => bn.Attribute.Add(Attr("is_test", 1L)), bnOutputs: ["y", "mean"]);
        g.Output("mean");
        var (_, r) = Fold(g.Build(), Keep);
        Assert.Contains("'mean' is read", AssertLeft(r, SkipReason.OptionalOutputsUsed).Detail);
    }

    /// <summary>BN-14/15 in eval mode naming running_mean/running_var (read or not): ONNX rejects it, ORT does not load
    /// it; folding it as eval turned an invalid model into a valid one silently.</summary>
    [Theory]
    [InlineData(14, null, new[] { "y", "rm", "rv" }, false)]
    [InlineData(14, 0L, new[] { "y", "", "rv" }, false)]
    [InlineData(15, null, new[] { "y", "rm" }, false)]
    [InlineData(15, 0L, new[] { "y", "rm", "rv" }, true)]
    public void Bn14_15_in_eval_mode_naming_training_outputs_is_refused(long opset, long? trainingMode, string[] outputs, bool read)
    {
        var g = ConvBn(opset, (_, bn) => { if (trainingMode is { } t) bn.Attribute.Add(Attr("training_mode", t)); }, outputs);
        if (read) g.Output(outputs[1]);
        var (folded, r) = Fold(g.Build());
        var d = AssertLeft(r, SkipReason.TrainingOutputsInEvalMode);
        foreach (var o in outputs.Skip(1).Where(o => o.Length > 0)) Assert.Contains($"'{o}'", d.Detail);
        Assert.Contains(trainingMode is null ? "training_mode=0 (absent)" : "training_mode=0 but", d.Detail);
        Assert.Equal(1, Count(folded, "BatchNormalization")); // left as it is, not turned into Mul + Add
    }

    /// <summary>An empty output name is an absent output: such a BN is the eval form at every version and folds.</summary>
    [Theory]
    [InlineData(9, new[] { "y", "", "", "", "" })]
    [InlineData(13, new[] { "y", "", "", "", "" })]
    [InlineData(14, new[] { "y", "", "" })]
    [InlineData(15, new[] { "y", "" })]
    public void Bn_with_empty_optional_output_names_folds(long opset, string[] outputs)
    {
        FoldAndCheck(ConvBn(opset, bnOutputs: outputs).Build());
    }

    /// <summary>BN-7..13: the extra outputs exist only in the training form, so naming any, read or not, is training mode.</summary>
    [Theory]
    [InlineData(7, new[] { "y", "m" })]
    [InlineData(9, new[] { "y", "", "v", "", "" })]
    [InlineData(13, new[] { "y", "m", "v", "sm", "sv" })]
    public void Bn7_to_13_naming_an_optional_output_is_training_mode(long opset, string[] outputs)
    {
        var (_, r) = Fold(ConvBn(opset, bnOutputs: outputs).Build(), Keep);
        Assert.Contains($"{outputs.Length} outputs is the training form", AssertLeft(r, SkipReason.TrainingMode).Detail);
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
