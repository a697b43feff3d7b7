using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.Rewriting.Affine.AffineTestGraphs;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting.Affine;

public class AffineIntoConvTransposeTests
{
    static GraphBuilder ConvTranspose(long group, bool bias, int type = F32)
    {
        var g = new GraphBuilder();
        g.Input("x", type, [1, 4, 5, 5]);
        string w = g.Init("w", type, [4, 3, 3, 3]); // output channels 3·group
        string[] inputs = bias ? ["x", w, g.Init("b", type, [3 * group])] : ["x", w];
        g.Node("ConvTranspose", inputs, "c", "convT", ("group", group), ("strides", new long[] { 2, 2 }));
        return g;
    }

    [Theory]
    [InlineData(1, true)]
    [InlineData(2, false)]
    [InlineData(4, true)]
    public void Mul_and_add_fold_into_a_conv_transpose_of_any_group(long group, bool bias)
    {
        var g = ConvTranspose(group, bias);
        Op(g, "Mul", "c", [1, 3 * group, 1, 1], "m");
        Op(g, "Sub", "m", [3 * group, 1, 1], "y", -1, 1);
        g.Output("y", F32, null);
        var (folded, r) = FoldChecked(g.Build());
        var d = Single(r);
        Assert.Equal("AffineIntoConvTranspose", d.Rule);
        Assert.Equal(["ConvTranspose"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    [Fact]
    public void Float16_bn_then_mul_folds_into_a_grouped_conv_transpose()
    {
        var g = ConvTranspose(2, true, F16);
        g.Bn("c", 6, "bn", F16);
        Op(g, "Mul", "bn", [6, 1, 1], "y", 0.5, 1.5, F16);
        g.Output("y", F16, null);
        var (folded, r) = FoldChecked(g.Build());
        Assert.Equal("AffineIntoConvTranspose", Single(r).Rule);
        Assert.Equal(0, AffineOps(folded));
    }

    [Fact]
    public void A_constant_with_another_channel_count_is_refused()
    {
        var g = ConvTranspose(2, true);
        Op(g, "Mul", "c", [1, 6, 1, 1], "m");
        g.Node("Relu", ["m"], "y", "relu");
        g.Output("y", F32, null);
        var m = g.Build();
        // Change the constant after building: 3 values cannot broadcast along 6 channels, so the model is invalid
        // for ORT; the rule must refuse with the shape rather than fold.
        var t = m.Proto.Graph.Initializer.Single(x => x.Name == "m.c");
        t.Dims.Clear(); t.Dims.AddRange([1, 3, 1, 1]);
        t.RawData = Google.Protobuf.ByteString.CopyFrom(new byte[12]);
        var (_, r) = Fold(m);
        Assert.Contains("[1,3,1,1]", AssertLeft(r, SkipReason.ShapeMismatch).Detail);
    }
}
