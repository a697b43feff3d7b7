using NormFold.Onnx;
using NormFold.Rewriting;
using NormFold.Rewriting.Affine;
using NormFold.Tensors;
using NormFold.Tests.Builders;
using NormFold.Tests.Cli;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting;

/// <summary>
/// Folding a file (Folding.FoldFile, the CLI's fold) leaves the finite-result pre-check of scaled weights to the
/// scaling itself, which runs as the output is written; when a weight overflows there, the file is folded again with the
/// pre-check. The decisions, the output and the files left behind are those of the pre-checked fold.
/// </summary>
[Collection("Console")]
public class FiniteCheckWhenComputedTests
{
    public static TheoryData<string, int, double, double, double> Overflowing => new()
    {
        { "Conv", F32, 1e38, 1 - 1e-5, 8 },
        { "ConvTranspose", F32, 1e38, 1 - 1e-5, 8 },
        { "Gemm", F32, 1e38, 1 - 1e-5, 8 },
        { "Conv", F16, 100, 1, 1000 },   // s ≈ 100, |W| ≤ 1000: 1e5 > 65504
        { "Conv", BF16, 1e30, 1, 1e9 },  // 1e39 > bfloat16's 3.39e38 (ONNX Runtime has no bfloat16 Conv: bytes compared only)
        { "Gemm", F64, 1e306, 1, 1e3 },
    };

    [Theory]
    [MemberData(nameof(Overflowing))]
    public void An_overflow_found_while_writing_folds_again_with_the_pre_check(string producer, int type, double gamma, double variance, double w)
    {
        var original = FoldedValueNotFiniteTests.WithBn(producer, type, gamma, variance, w: w).Build();
        string dir = TempDir(), input = Path.Combine(dir, "m.onnx"), output = Path.Combine(dir, "out.onnx");
        ModelWriter.Save(original, input);
        var (exact, exactResult) = Fold(OnnxModel.Load(input));
        Assert.Contains(exactResult.Log.Decisions, d => d.Reason == SkipReason.FoldedValueNotFinite && d.Outcome != Outcome.Folded);

        // Without the pre-check the fold goes ahead, and writing it throws; the output file is not made.
        using (var optimistic = OnnxModel.Load(input))
        {
            var log = Folding.Fold(optimistic, new PipelineOptions { DeferWeightArithmetic = true, CheckFiniteWhenComputed = true }).Log;
            Assert.Contains(log.Decisions, d => d.Outcome == Outcome.Folded);
            Assert.Throws<ScaledWeightOverflow>(() => ModelWriter.Save(optimistic, output));
            Assert.Throws<ScaledWeightOverflow>(optimistic.CheckDeferredFinite);
        }
        Assert.Equal(["m.onnx"], Directory.GetFiles(dir).Select(Path.GetFileName));

        var result = Folding.FoldFile(input, output);
        Assert.Equal(Summary(exactResult), Summary(result));
        string expected = Path.Combine(dir, "exact.onnx");
        ModelWriter.Save(exact, expected);
        Assert.Equal(File.ReadAllBytes(expected), File.ReadAllBytes(output));
        if (type != BF16) AssertEquivalent(OnnxModel.Load(input), OnnxModel.Load(output));
    }

    /// <summary>A fold the gate stops is not written, so nothing computes its weights: the deferred checks run before
    /// the decisions are reported (the BN is reported left for FoldedValueNotFinite, not folded).</summary>
    [Fact]
    public void A_fold_stopped_by_a_gate_reports_the_pre_checked_decisions()
    {
        // Conv → BN (overflows once folded) → Relu → BN (no linear op next to it: the gate fails whatever happens to the first).
        var g = FoldedValueNotFiniteTests.WithBn("Conv", F32, 1e38, 1 - 1e-5, w: 8);
        g.Graph.Output.Clear();
        g.Node("Relu", ["y"], "r", "relu");
        g.Bn("r", 4, "z", F32);
        g.Output("z", F32, null);
        var original = g.Build();
        string dir = TempDir(), input = Path.Combine(dir, "m.onnx"), output = Path.Combine(dir, "out.onnx"), json = Path.Combine(dir, "r.json");
        ModelWriter.Save(original, input);
        var (code, _, err) = CliRunner.Run("fold", input, "-o", output, "--require-all-folded", "--json", json, "-q");
        Assert.Equal(4, code);
        Assert.False(File.Exists(output));
        Assert.Contains("FoldedValueNotFinite", File.ReadAllText(json));
        Assert.Contains("require-all-folded", err);
    }

    [Fact]
    public void A_fold_that_fits_is_written_in_one_attempt_with_the_same_bytes()
    {
        var original = FoldedValueNotFiniteTests.WithBn("Conv", F32, 3e4, 0.01).Build(); // s = 3e5, |W| ≤ 1: finite
        string dir = TempDir(), input = Path.Combine(dir, "m.onnx"), output = Path.Combine(dir, "out.onnx");
        ModelWriter.Save(original, input);
        using (var optimistic = OnnxModel.Load(input))
        {
            Folding.Fold(optimistic, new PipelineOptions { DeferWeightArithmetic = true, CheckFiniteWhenComputed = true });
            ModelWriter.Save(optimistic, output);
        }
        var (exact, _) = Fold(OnnxModel.Load(input));
        string expected = Path.Combine(dir, "exact.onnx");
        ModelWriter.Save(exact, expected);
        Assert.Equal(File.ReadAllBytes(expected), File.ReadAllBytes(output));
        Assert.Equal(0, Count(OnnxModel.Load(output), "BatchNormalization"));
        AssertEquivalent(OnnxModel.Load(input), OnnxModel.Load(output));
    }

    /// <summary>The check made while scaling throws exactly when the pre-check refuses: random weights with a few
    /// elements near the overflow threshold (and ±∞/NaN, which stay as they are), factors around 1 and large, each
    /// type and layout, tensors of any length (vector tails).</summary>
    [Theory]
    [InlineData(F32)]
    [InlineData(F64)]
    [InlineData(F16)]
    [InlineData(BF16)]
    public void The_check_while_scaling_agrees_with_the_pre_check(int type)
    {
        double max = type switch { F32 => float.MaxValue, F64 => double.MaxValue, F16 => 65504.0, _ => 3.3895313892515355e38 };
        var rng = new Random(type * 7 + 1);
        int agreedThrow = 0, agreedPass = 0;
        for (int trial = 0; trial < 400; trial++)
        {
            int channels = rng.Next(1, 9), perChannel = rng.Next(1, 70);
            ChannelLayout layout = (trial % 3) switch
            {
                0 => new ChannelLayout.Rows(),
                1 => new ChannelLayout.Columns(),
                _ => new ChannelLayout.TransposedConv(channels, 1, 1),
            };
            int count = channels * perChannel;
            var values = Enumerable.Range(0, count).Select(_ => (rng.NextDouble() - 0.5) * 2).ToArray();
            double f = Math.Pow(2, rng.Next(0, 12)) * (0.5 + rng.NextDouble());
            for (int k = rng.Next(0, 3); k > 0; k--) values[rng.Next(count)] = (rng.Next(2) == 0 ? -1 : 1) * max / f * (0.98 + 0.04 * rng.NextDouble());
            if (rng.Next(5) == 0) values[rng.Next(count)] = rng.Next(3) switch { 0 => double.NaN, 1 => double.PositiveInfinity, _ => double.NegativeInfinity };
            var s = Enumerable.Range(0, channels).Select(_ => rng.Next(3) == 0 ? f * (rng.Next(2) == 0 ? -1 : 1) : 0.25 + rng.NextDouble()).ToArray();
            long[] dims = layout is ChannelLayout.Columns ? [perChannel, channels] : [channels, perChannel];
            var g = new GraphBuilder(15);
            g.Init("w", type, dims);
            g.SetInit("w", type, dims, values);
            var model = g.Build();
            var w = model.Proto.Graph.Initializer.Single();
            bool refused = FoldedValues.ScaledWeightNotFinite(model, w, layout, s) is not null;
            model.CheckFiniteWhenComputed = true;
            var scaling = ChannelScaling.Prepare(model, w, layout, s)!;
            Assert.True(scaling.CheckFinite);
            bool threw = false;
            try { scaling.CheckAllFinite(); } catch (ScaledWeightOverflow) { threw = true; }
            bool threwScaling = false;
            try { scaling.Materialize(); } catch (ScaledWeightOverflow) { threwScaling = true; }
            Assert.True(refused == threw && threw == threwScaling, $"trial {trial}: pre-check {refused}, check {threw}, while scaling {threwScaling}");
            if (refused) agreedThrow++; else agreedPass++;
        }
        Assert.True(agreedThrow > 40 && agreedPass > 40, $"{agreedThrow} overflowing, {agreedPass} finite: the trials must cover both");
    }

    static List<string> Summary(FoldResult r) => r.Log.Decisions.Select(d => $"{d.Anchor} {d.Outcome} {d.Reason} {d.Detail}").ToList();
}
