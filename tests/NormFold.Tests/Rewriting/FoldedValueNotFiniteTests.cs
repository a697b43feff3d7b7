using NormFold.Onnx;
using NormFold.Rewriting;
using NormFold.Rewriting.Affine;
using NormFold.Tensors;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting;

/// <summary>A rewrite whose stored values would overflow their type is refused (issue 9: γ = 3e38 with var = 0.01
/// folded into non-finite weights, exit 0).</summary>
public class FoldedValueNotFiniteTests
{
    /// <summary>Producer → BN (BN "y" on "c"), γ[0] and var[0] and β[0], mean[0] set as given, all of <paramref name="type"/>.</summary>
    internal static GraphBuilder WithBn(string producer, int type, double gamma, double variance, double beta = 0, double mean = 0,
        double w = 1)
    {
        var g = new GraphBuilder(15);
        switch (producer)
        {
            case "Conv":
                g.Input("x", type, [1, 3, 5, 5]);
                g.Init("w", type, [4, 3, 3, 3], 0.5 * w, w);
                g.Node("Conv", ["x", "w"], "c", "conv");
                break;
            case "ConvTranspose": // the fuzzer's case (bn-params:1000119): NaN where the original gives +Inf
                g.Input("x", type, [1, 3, 5, 5]);
                g.Init("w", type, [3, 4, 3, 3], 0.5 * w, w);
                g.Node("ConvTranspose", ["x", "w"], "c", "convT");
                break;
            case "Gemm":
                g.Input("x", type, [2, 3]);
                g.Init("w", type, [3, 4], 0.5 * w, w);
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
        // s = 1e38/√(1 − 1e-5 + 1e-5) = 1e38 is finite in float; W·s with W in [4, 8] is not. The BN stays out of
        // the weights (as a BN, or as Mul + Add by s and t, which are finite).
        var original = WithBn(producer, F32, gamma: 1e38, variance: 1 - 1e-5, w: 8).Build();
        var (folded, r) = Fold(original);
        var d = AssertNotFolded(r, SkipReason.FoldedValueNotFinite);
        Assert.Contains("'w'", d.Detail);
        Assert.Contains(folded.Proto.Graph.Initializer, t => t.Name == "w");
        Assert.All(folded.Proto.Graph.Initializer, t => Assert.All(folded.ReadDoubles(t), v => Assert.True(double.IsFinite(v))));
        AssertEquivalent(original, folded);
    }

    /// <summary>The pre-check max|W|·max|s| (vectorised) must see one large weight among many small ones, in float and
    /// double: channel 0's last element (index 143 of 2304) overflows once scaled, every other W·s is finite.</summary>
    [Theory]
    [InlineData(F32, 1e37, 100.0)]
    [InlineData(F64, 1e306, 1e3)]
    public void One_overflowing_weight_among_many_is_found(int type, double scale, double large)
    {
        var g = new GraphBuilder(15);
        g.Input("x", type, [1, 16, 5, 5]);
        var w = Enumerable.Range(0, 16 * 16 * 3 * 3).Select(i => 0.5 + (i % 7) / 14.0).ToArray();
        w[143] = large;
        g.Init("w", type, [16, 16, 3, 3]);
        g.SetInit("w", type, [16, 16, 3, 3], w);
        g.Node("Conv", ["x", "w"], "c", "conv");
        g.Bn("c", 16, "y", type);
        g.SetInit("y.gamma", type, [16], [scale, .. Enumerable.Repeat(1.0, 15)]);
        g.SetInit("y.var", type, [16], [1 - 1e-5, .. Enumerable.Repeat(1.0, 15)]);
        g.Output("y", type, null);
        var (folded, r) = Fold(g.Build());
        var d = AssertNotFolded(r, SkipReason.FoldedValueNotFinite);
        Assert.Contains("'w'", d.Detail);
        Assert.All(folded.Proto.Graph.Initializer, t => Assert.All(folded.ReadDoubles(t), v => Assert.True(double.IsFinite(v))));
    }

    /// <summary>The same from a model file whose weight spans several read chunks (read on every core at once): the
    /// large element in the last chunk, after 1.2 MB of small ones.</summary>
    [Fact]
    public void One_overflowing_weight_in_a_mapped_multi_chunk_weight_is_found()
    {
        var g = new GraphBuilder(15);
        g.Input("x", F32, [1, 1024]);
        var w = Enumerable.Range(0, 1024 * 300).Select(i => 0.5 + (i % 7) / 14.0).ToArray();
        w[^2] = 100.0; // row 1022, column 298: channel 298
        g.Init("w", F32, [1024, 300]);
        g.SetInit("w", F32, [1024, 300], w);
        g.Node("MatMul", ["x", "w"], "c", "mm");
        g.Bn("c", 300, "y", F32);
        var gamma = Enumerable.Repeat(1.0, 300).ToArray();
        gamma[298] = 1e37;
        g.SetInit("y.gamma", F32, [300], gamma);
        g.Output("y", F32, null);
        string path = Path.Combine(TempDir(), "m.onnx");
        ModelWriter.Save(g.Build(), path);
        using var model = OnnxModel.Load(path);
        var r = Folding.Fold(model);
        var d = AssertNotFolded(r, SkipReason.FoldedValueNotFinite);
        Assert.Contains("'w'", d.Detail);
    }

    /// <summary>max|W| read ahead of the rules (for a conv whose BN scales up) is used only while the weight holds the
    /// bytes it was read from: new bytes are read again.</summary>
    [Fact]
    public void A_prefetched_max_is_not_used_once_the_weight_holds_other_bytes()
    {
        var model = WithBn("Conv", F32, gamma: 1e37, variance: 1 - 1e-5, w: 1).Build();
        var index = new NormFold.Graph.GraphIndex(model.Proto.Graph, model);
        FoldedValues.Prefetch(index);
        var w = model.Proto.Graph.Initializer.Single(t => t.Name == "w");
        Assert.Equal(model.ReadDoubles(w).Max(Math.Abs), model.MaxAbsCache[w].Max);
        double[] s = [1e37, 1, 1, 1];
        Assert.Null(FoldedValues.ScaledWeightNotFinite(model, w, new NormFold.Tensors.ChannelLayout.Rows(), s));
        var values = model.ReadDoubles(w);
        values[0] = 100; // channel 0: 100·1e37 overflows float
        w.RawData = Google.Protobuf.ByteString.CopyFrom(TensorData.Encode(F32, values));
        Assert.Equal(0, FoldedValues.ScaledWeightNotFinite(model, w, new NormFold.Tensors.ChannelLayout.Rows(), s));
    }

    /// <summary>max|W| is read from sign-cleared bit patterns (an integer max): equal to the magnitudes' max in every
    /// type, NaN when any element is NaN, ∞ when one is infinite, at every length (vector tails included).</summary>
    [Theory]
    [InlineData(F32)]
    [InlineData(F64)]
    [InlineData(F16)]
    [InlineData(BF16)]
    public void Max_magnitude_from_bit_patterns_matches_the_values(int type)
    {
        var rng = new Random(type);
        foreach (int n in new[] { 0, 1, 3, 7, 16, 33, 64, 129, 1000, 4099 })
            foreach (string special in new[] { "", "nan", "inf", "-inf", "-max", "subnormal" })
            {
                var values = Enumerable.Range(0, n).Select(_ => (rng.NextDouble() - 0.5) * Math.Pow(2, rng.Next(-30, 30))).ToArray();
                if (n > 0 && special != "")
                    values[rng.Next(n)] = special switch
                    {
                        "nan" => double.NaN,
                        "inf" => double.PositiveInfinity,
                        "-inf" => double.NegativeInfinity,
                        "-max" => -(type switch { F32 => float.MaxValue, F64 => double.MaxValue, F16 => 65504.0, _ => 3.3895313892515355e38 }),
                        _ => -(type switch { F32 => float.Epsilon, F64 => double.Epsilon, F16 => Math.Pow(2, -24), _ => Math.Pow(2, -133) }),
                    };
                var bytes = TensorData.Encode(type, values);
                var stored = TensorData.ReadDoubles(new NormFold.Onnx.Proto.TensorProto { DataType = type, Dims = { n } }, bytes);
                double expected = stored.Any(double.IsNaN) ? double.NaN : stored.Select(Math.Abs).DefaultIfEmpty(0).Max();
                Assert.Equal(expected, FoldedValues.MaxAbs(bytes, type));
            }
    }

    /// <summary>The decision for the only anchor: not folded into a weight, for <paramref name="reason"/>.</summary>
    static Decision AssertNotFolded(FoldResult r, SkipReason reason)
    {
        var d = Single(r);
        Assert.True(d.Outcome != Outcome.Folded && d.Reason == reason, $"expected {reason}, got {d.Outcome} {d.Reason}: {d.Detail}");
        return d;
    }

    /// <summary>The long fuzz campaign's bn-params:7001571: ConvTranspose + BN with γ = 3e38, var = 0.01. s = 3e39 overflows
    /// float, so ONNX Runtime's BN gives ±Inf/NaN on that channel, while W·s with small weights is finite: the fold gave
    /// finite values where the original gives NaN, exit 0. Every BN rule now leaves such a BN (and the original's output).</summary>
    [Theory]
    [InlineData("Conv")]
    [InlineData("ConvTranspose")]
    [InlineData("Gemm")]
    [InlineData("Relu")]
    public void A_bn_whose_own_factor_overflows_is_left_as_it_is(string producer)
    {
        var original = WithBn(producer, F32, gamma: 3e38, variance: 0.01, w: 1e-3).Build();
        var (folded, r) = Fold(original);
        var d = AssertLeft(r, SkipReason.FoldedValueNotFinite);
        Assert.Contains("γ/√(var + ε)", d.Detail);
        Assert.Contains("the original computes ±Inf or NaN", d.Detail);
        Assert.Equal(1, Count(folded, "BatchNormalization"));
        AssertEquivalent(original, folded);
    }

    [Fact]
    public void A_bn_whose_shift_overflows_is_left_as_it_is()
    {
        // s = 1e30 is finite; t = β − mean·s = −1e39 is not.
        var (_, r) = Fold(WithBn("Conv", F32, gamma: 1e30, variance: 1 - 1e-5, mean: 1e9, w: 1e-3).Build());
        Assert.Contains("β − mean", AssertLeft(r, SkipReason.FoldedValueNotFinite).Detail);
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
        // s = 1, t = β − mean·s = 3e38 − 1e38, finite: the conv's own bias 3e38 plus t overflows.
        var g = WithBn("Conv", F32, gamma: 1, variance: 1 - 1e-5, beta: 2e38, mean: -1e38);
        g.Init("b", F32, [4], [3e38, 0, 0, 0]);
        g.Graph.Node.Single(n => n.OpType == "Conv").Input.Add("b");
        var (_, r) = Fold(g.Build());
        Assert.Contains("bias", AssertNotFolded(r, SkipReason.FoldedValueNotFinite).Detail);
    }

    [Fact]
    public void A_standalone_bn_whose_mul_constant_overflows_stays_a_bn()
    {
        var (folded, r) = Fold(WithBn("Relu", F16, gamma: 1000, variance: 0.0001).Build());
        Assert.Contains("γ/√(var + ε)[0] = 95339", AssertLeft(r, SkipReason.FoldedValueNotFinite).Detail);
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
