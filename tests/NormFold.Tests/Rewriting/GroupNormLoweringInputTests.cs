using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting;

/// <summary>Lowering GroupNormalization whose scale and bias are graph inputs (as in the ONNX node tests): they are
/// reshaped to [C, 1, …] at run time instead of being constants.</summary>
public class GroupNormLoweringInputTests
{
    static readonly PipelineOptions Lower = new() { LowerGroupNorm = true };

    /// <summary>GroupNormalization(x [2, 6, 4, 4], scale, bias; 3 groups); per-channel parameters at opset 21, per-group
    /// ones at 18. The scale is a graph input; the bias a graph input or a constant.</summary>
    static GraphBuilder Model(long opset, bool biasInput, int type = F32, bool declareShape = true)
    {
        var g = new GraphBuilder(opset);
        g.Proto.IrVersion = 10;
        g.Input("x", type, [2, 6, 4, 4]);
        long n = opset >= 21 ? 6 : 3;
        g.Input("scale", type, declareShape ? [n] : null);
        if (biasInput) g.Input("bias", type, [n]); else g.Init("bias", type, [n], -1, 1);
        g.Node("GroupNormalization", ["x", "scale", "bias"], "y", "gn", ("num_groups", 3L), ("epsilon", 1e-3f));
        g.Output("y", type, null);
        return g;
    }

    [Theory]
    [InlineData(21, true)]
    [InlineData(21, false)]
    [InlineData(18, true)]
    [InlineData(18, false)]
    public void Scale_and_bias_from_graph_inputs_are_reshaped_at_run_time(long opset, bool biasInput)
    {
        var original = Model(opset, biasInput).Build();
        var (lowered, r) = Fold(original, Lower);
        Assert.Equal("GroupNormLowering", Single(r).Rule);
        Assert.Equal(0, Count(lowered, "GroupNormalization"));
        Assert.Contains(lowered.Proto.Graph.Node, n => n.OpType == "Reshape" && n.Input[0] == "scale");
        Assert.Equal(opset < 21, lowered.Proto.Graph.Node.Any(n => n.OpType == "Expand"));
        AssertEquivalent(original, lowered);
        AssertAuditPasses(original, lowered, r);
    }

    [Fact]
    public void Float16_graph_inputs_lower()
    {
        var original = Model(21, true, F16).Build();
        var (lowered, r) = Fold(original, Lower);
        Assert.Equal(Outcome.Replaced, Single(r).Outcome);
        AssertEquivalent(original, lowered);
    }

    [Fact]
    public void A_scale_of_undeclared_shape_is_refused()
    {
        var (_, r) = Fold(Model(21, true, declareShape: false).Build(), Lower);
        Assert.Contains("'scale'", AssertLeft(r, SkipReason.ParameterNotConstant).Detail);
    }
}
