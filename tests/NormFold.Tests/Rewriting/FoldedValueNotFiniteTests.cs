using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting;

/// <summary>A rewrite whose stored values would overflow their type is refused (issue 9: γ = 3e38 with var = 0.01
/// folded into non-finite weights, exit 0).</summary>
public class FoldedValueNotFiniteTests
{
    /// <summary>Producer → BN (BN "y" on "c"), γ[0] and var[0] and β[0], mean[0] set as given, all of <paramref name="type"/>.</summary>
    static GraphBuilder WithBn(string producer, int type, double gamma, double variance, double beta = 0, double mean = 0)
    {
        var g = new GraphBuilder(15);
        switch (producer)
        {
            case "Conv":
                g.Input("x", type, [1, 3, 5, 5]);
                g.Init("w", type, [4, 3, 3, 3], 0.5, 1);
                g.Node("Conv", ["x", "w"], "c", "conv");
                break;
            case "ConvTranspose": // the fuzzer's case (bn-params:1000119): NaN where the original gives +Inf
                g.Input("x", type, [1, 3, 5, 5]);
                g.Init("w", type, [3, 4, 3, 3], 0.5, 1);
                g.Node("ConvTranspose", ["x", "w"], "c", "convT");
                break;
            case "Gemm":
                g.Input("x", type, [2, 3]);
                g.Init("w", type, [3, 4], 0.5, 1);
                g.Node("Gemm", ["x", "w"], "c", "gemm");
                break;
            default:
                g.Input("x", type, [1, 4, 5, 5]);
                g.Node("Relu", ["x"], "c", "relu");
                break;
        }
        g.Bn("c", 4, "y", type);
        g.SetInit("y.gamma", type, [4], [gamma, 1, 1, 1]);
        g.SetInit("y.var", type, [4], [variance, 1, 1, 1]);
        g.SetInit("y.beta", type, [4], [beta, 0, 0, 0]);
        g.SetInit("y.mean", type, [4], [mean, 0, 0, 0]);
        g.Output("y", type, null);
        return g;
    }

    [Theory]
    [InlineData("Conv")]
    [InlineData("ConvTranspose")]
    [InlineData("Gemm")]
    public void Weights_that_overflow_float_are_refused(string producer)
    {
        var (folded, r) = Fold(WithBn(producer, F32, gamma: 3e38, variance: 0.01).Build());
        var d = AssertLeft(r, SkipReason.FoldedValueNotFinite);
        Assert.Contains("'w'", d.Detail);
        Assert.Equal(1, Count(folded, "BatchNormalization"));
        Assert.All(folded.Proto.Graph.Initializer, t => Assert.All(folded.ReadDoubles(t), v => Assert.True(double.IsFinite(v))));
    }

    [Fact]
    public void Weights_that_overflow_float16_are_refused()
    {
        // s = 1000/√0.0001 = 1e5 > 65504: finite in double and float, not in float16.
        var (_, r) = Fold(WithBn("Conv", F16, gamma: 1000, variance: 0.0001).Build());
        Assert.Contains("float16", AssertLeft(r, SkipReason.FoldedValueNotFinite).Detail);
    }

    [Fact]
    public void A_bias_that_overflows_is_refused_even_when_the_weights_fit()
    {
        // s = 1, t = β − mean·s = 3e38 + 3e38: the weights stay as they are, the new bias would be +inf.
        var (_, r) = Fold(WithBn("Conv", F32, gamma: 1, variance: 1 - 1e-5, beta: 3e38, mean: -3e38).Build());
        Assert.Contains("bias", AssertLeft(r, SkipReason.FoldedValueNotFinite).Detail);
    }

    [Fact]
    public void A_standalone_bn_whose_mul_constant_overflows_stays_a_bn()
    {
        var (folded, r) = Fold(WithBn("Relu", F16, gamma: 1000, variance: 0.0001).Build());
        Assert.Contains("Mul constant", AssertLeft(r, SkipReason.FoldedValueNotFinite).Detail);
        Assert.Equal(1, Count(folded, "BatchNormalization"));
        Assert.Equal(0, Count(folded, "Mul"));
    }

    [Fact]
    public void Large_but_finite_factors_still_fold_exactly()
    {
        // s = 3e4/√0.01 = 3e5 with |W| ≤ 1: finite in float (the bound max|W|·max|s| is what is checked first).
        var original = WithBn("Conv", F32, gamma: 3e4, variance: 0.01).Build();
        FoldAndCheck(original);
    }
}
