using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting;

public class IntoConvTransposeTests
{
    static GraphBuilder ConvTBn(long cin, long outPerGroup, long group, bool bias, int spatial = 2)
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [2, cin, .. Enumerable.Repeat(4L, spatial)]);
        g.Init("w", F32, [cin, outPerGroup, .. Enumerable.Repeat(3L, spatial)]);
        string[] inputs = bias ? ["x", "w", g.Init("b", F32, [outPerGroup * group])] : ["x", "w"];
        g.Node("ConvTranspose", inputs, "c", "convT", ("group", group), ("strides", Enumerable.Repeat(2L, spatial).ToArray()));
        g.Bn("c", outPerGroup * group, "y");
        g.Output("y");
        return g;
    }

    [Theory]
    [InlineData(4, 3, 1, false, 2)]
    [InlineData(4, 3, 1, true, 2)]
    [InlineData(6, 2, 3, true, 2)]   // 3 groups: output channel = (i / 2)·2 + j
    [InlineData(4, 5, 2, false, 2)]
    [InlineData(4, 1, 4, true, 2)]   // depthwise transpose
    [InlineData(4, 3, 2, true, 1)]
    [InlineData(2, 3, 2, true, 3)]
    public void Folds_convtranspose_with_any_group(long cin, long outPerGroup, long group, bool bias, int spatial)
    {
        var (_, r) = FoldAndCheck(ConvTBn(cin, outPerGroup, group, bias, spatial).Build());
        Assert.Equal("BatchNormIntoConvTranspose", Single(r).Rule);
    }

    [Fact]
    public void Refuses_when_output_channels_differ_from_the_bn()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [1, 4, 4, 4]);
        g.Init("w", F32, [4, 3, 3, 3]);
        g.Node("ConvTranspose", ["x", "w"], "c", "convT", ("group", 2L)); // 6 output channels
        g.Bn("c", 3, "y");
        g.Output("y");
        var (_, r) = Fold(g.Build(), new PipelineOptions { KeepStandaloneBatchNorm = true });
        var d = AssertLeft(r, SkipReason.ShapeMismatch);
        Assert.Contains("3×2 output channels", d.Detail);
    }

    [Fact]
    public void Refuses_a_bias_computed_at_run_time()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [1, 4, 4, 4]);
        g.Input("bias", F32, [3]);
        g.Init("w", F32, [4, 3, 3, 3]);
        g.Node("ConvTranspose", ["x", "w", "bias"], "c", "convT");
        g.Bn("c", 3, "y");
        g.Output("y");
        var (_, r) = Fold(g.Build(), new PipelineOptions { KeepStandaloneBatchNorm = true });
        var d = AssertLeft(r, SkipReason.ParameterNotConstant);
        Assert.Contains("'bias' is a graph input", d.Detail);
    }
}
