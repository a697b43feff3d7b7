using NormFold.Graph;
using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Tensors;
using NormFold.Verification;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Verification;

/// <summary>
/// The per-channel drift detector: a one-channel 1 % γ fault in a middle BN and an offset of 1 % of a channel's spread
/// are caught with default settings (float16 and float32 in ORT; bfloat16, which ORT's CPU provider cannot run as
/// Conv, on tensors rounded the way a fold rounds them), and correct folds are never flagged.
/// </summary>
public class ChannelDriftTests
{
    static OnnxModel Load(string name) => OnnxModel.Load(Path.Combine(ModelsDir, name + ".onnx"));

    /// <summary>The bundled ResNets have a dynamic batch; bound to 8 (as with a shape option), their deepest BNs see 8
    /// elements per channel, the middle one 32. Models with fixed inputs keep theirs.</summary>
    static CheckOptions Options(OnnxModel m, int seed = 0, bool detect = true) => new()
    {
        Iterations = 2, Seed = seed, DetectDrift = detect,
        Shapes = ModelInputs.Of(m).Where(i => i.Dims.Length == 4 && i.Dims[0] < 0)
            .ToDictionary(i => i.Name, i => new long[] { 8, i.Dims[1], i.Dims[2], i.Dims[3] }),
    };

    static CheckReport Check(OnnxModel original, OnnxModel candidate, int seed = 0) =>
        EquivalenceChecker.Check(original, candidate, Options(original, seed));

    /// <summary>A copy of <paramref name="original"/> whose BN <paramref name="bn"/> has parameter
    /// <paramref name="slot"/> (1 = γ, 2 = β) of channel <paramref name="channel"/> changed by <paramref name="change"/>.</summary>
    static OnnxModel Plant(OnnxModel original, string bn, int slot, int channel, Func<double, double> change)
    {
        var copy = new OnnxModel(original.Proto.Clone(), original.SourcePath);
        var index = new GraphIndex(copy.Proto.Graph, copy);
        var node = copy.Proto.Graph.Node.Single(n => n.Name == bn);
        Assert.True(index.TryGetConstant(node.Input[slot], out var t, out _));
        var v = copy.ReadDoubles(t);
        v[channel] = change(v[channel]);
        var replacement = TensorData.Create(t.Name + "_fault", t.DataType, t.Dims, v);
        copy.Proto.Graph.Initializer.Add(replacement);
        node.Input[slot] = replacement.Name;
        return copy;
    }

    static NodeProto MiddleBn(OnnxModel m)
    {
        var bns = m.Proto.Graph.Node.Where(n => n.OpType == "BatchNormalization").ToList();
        return bns[bns.Count / 2];
    }

    static long Channels(OnnxModel m, NodeProto bn) =>
        new GraphIndex(m.Proto.Graph, m).TryGetConstant(bn.Input[1], out var t, out _) ? t.Dims[0] : throw new InvalidOperationException();

    /// <summary>The finding for <paramref name="tensor"/>: it failed by systematic drift in <paramref name="channel"/>.</summary>
    static ChannelDrift AssertDrift(CheckReport report, string tensor, int channel)
    {
        Assert.False(report.Passed);
        var c = report.Outputs.Concat(report.Intermediates).Single(o => o.Name == tensor);
        Assert.False(c.Passed, $"{tensor} passed; worst channel {c.WorstChannel}");
        var d = c.Drift.FirstOrDefault(x => x.Channel == channel);
        Assert.True(d != null, $"{tensor}: channel {channel} not flagged; flagged: {string.Join(", ", c.Drift)}; worst {c.WorstChannel}; {c.FailedElements} elements failed");
        Assert.True(d.Flagged);
        return d;
    }

    public static IEnumerable<object[]> GammaFaults() =>
        from m in new[] { "resnet_tiny", "resnet_tiny_fp16" } from f in new[] { 0.0, 0.5, 1.0 } select new object[] { m, f };

    [Theory]
    [MemberData(nameof(GammaFaults))]
    public void A_one_percent_gamma_fault_in_one_channel_of_a_middle_bn_is_caught(string model, double where)
    {
        var original = Load(model);
        var bn = MiddleBn(original);
        int channel = (int)Math.Round(where * (Channels(original, bn) - 1));
        var (broken, _) = Fold(Plant(original, bn.Name, 1, channel, g => g * 1.01));
        var d = AssertDrift(Check(original, broken), bn.Output[0], channel);
        Assert.InRange(d.Gain, 1.005, 1.015);
    }

    [Fact]
    public void In_float16_the_gamma_fault_passes_the_elementwise_tolerance_and_only_the_detector_sees_it()
    {
        var original = Load("resnet_tiny_fp16");
        var bn = MiddleBn(original);
        var (broken, _) = Fold(Plant(original, bn.Name, 1, 0, g => g * 1.01));
        var report = EquivalenceChecker.Check(original, broken, Options(original, detect: false));
        Assert.True(report.Passed); // the issue's finding: under the float16 allowance
        AssertDrift(Check(original, broken), bn.Output[0], 0);
    }

    /// <summary>Standard deviation of channel <paramref name="channel"/> of <paramref name="tensor"/> in the original,
    /// on the check's first generated inputs.</summary>
    static double Spread(OnnxModel original, string tensor, int channel)
    {
        using var runner = SharedTensors.Runner(original, [tensor], OrtLevel.Disable);
        var inputs = new InputGenerator(ModelInputs.Of(original), 0, Options(original).Shapes).Generate(0);
        var t = runner.Run(inputs, [tensor])[0];
        var v = t.ToDoubles();
        long channels = t.Shape[1], inner = t.Count / t.Shape[0] / channels;
        var x = new List<double>();
        for (long o = 0; o < t.Shape[0]; o++)
            for (long j = 0; j < inner; j++) x.Add(v[(o * channels + channel) * inner + j]);
        double mean = x.Average();
        return Math.Sqrt(x.Sum(e => (e - mean) * (e - mean)) / x.Count);
    }

    [Theory]
    [InlineData("resnet_tiny", 0)]
    [InlineData("resnet_tiny", 1)]
    [InlineData("resnet_tiny_fp16", 0)]
    [InlineData("resnet_tiny_fp16", 1)]
    public void An_offset_of_one_percent_of_a_channels_spread_is_caught(string model, int channel)
    {
        var original = Load(model);
        var bn = MiddleBn(original);
        double spread = Spread(original, bn.Output[0], channel);
        var (broken, _) = Fold(Plant(original, bn.Name, 2, channel, b => b + 0.01 * spread));
        var d = AssertDrift(Check(original, broken), bn.Output[0], channel);
        Assert.InRange(d.Offset / spread, 0.005, 0.015);
    }

    public static IEnumerable<object[]> CorrectFolds() =>
        from m in new[] { "resnet_tiny", "resnet_tiny_op15", "mlp_bn1d", "decoder_convtranspose", "conv1d_conv3d", "resnet_tiny_constants", "resnet_tiny_fp16" }
        from seed in new[] { 0, 1, 2, 3, 4 }
        select new object[] { m, seed };

    [Theory]
    [MemberData(nameof(CorrectFolds))]
    public void No_correct_fold_of_a_bundled_model_is_flagged(string model, int seed)
    {
        var original = Load(model);
        var (folded, _) = Fold(original);
        var report = Check(original, folded, seed);
        var flagged = report.Outputs.Concat(report.Intermediates).Where(o => o.DriftingChannels > 0).ToList();
        Assert.True(flagged.Count == 0, string.Join("; ", flagged.Select(o => o.Name + ": " + o.Problem)));
        Assert.True(report.Passed, report.FirstFailure?.Name);
    }

    [Theory]
    [InlineData("resnet_tiny")]
    [InlineData("resnet_tiny_fp16")]
    [InlineData("decoder_convtranspose")]
    public void A_model_folded_twice_is_not_flagged(string model)
    {
        var original = Load(model);
        var (once, _) = Fold(original);
        var (twice, _) = Fold(once);
        Assert.True(Check(original, twice).Passed);
        Assert.True(Check(once, twice).Passed);
        // and with Mul + Add for every BN first (a second, different rounding path)
        var (standalone, _) = Fold(original, new NormFold.Rewriting.PipelineOptions { DisabledRules = new HashSet<string> { "BatchNormIntoConv", "BatchNormIntoConvTranspose" } });
        Assert.True(Check(original, standalone).Passed);
    }

    // bfloat16: ORT's CPU provider runs no bfloat16 Conv, so the tensors are made here the way each side rounds them.
    // reference = round(round(x)·s + t) (BN after a rounded conv output), candidate = round(x·round(s) + round(t)) (the
    // fold's rounded weight and bias), x ~ N(μ, 1) per element, [2, C, 8, 8].

    static (NamedTensor Reference, NamedTensor Candidate) Bf16Pair(int seed, int faultChannel = -1, double gain = 1, double offsetOfSpread = 0)
    {
        const int C = 16, outer = 2;
        var rng = new Random(seed);
        double Round(double v) => Rounding.FromBFloat16Bits(Rounding.ToBFloat16Bits(v));
        var s = Enumerable.Range(0, C).Select(_ => 0.2 + 2 * rng.NextDouble()).ToArray();
        var t = Enumerable.Range(0, C).Select(_ => rng.NextDouble() - 0.5).ToArray();
        var mu = Enumerable.Range(0, C).Select(_ => 2 * rng.NextDouble() - 1).ToArray();
        return Pair(BF16, [outer, C, 8, 8], c =>
        {
            double x = mu[c] + Gaussian(rng);
            double sc = c == faultChannel ? s[c] * gain : s[c], tc = c == faultChannel ? t[c] + offsetOfSpread * s[c] : t[c];
            return (Round(Round(x) * s[c] + t[c]), Round(x * Round(sc) + Round(tc)));
        });
    }

    /// <summary>A reference and a candidate tensor of <paramref name="shape"/> [outer, C, …], element by element in
    /// order: <paramref name="element"/> gets the element's channel and gives both values.</summary>
    internal static (NamedTensor, NamedTensor) Pair(int type, long[] shape, Func<int, (double R, double A)> element)
    {
        long channels = shape[1], inner = shape.Skip(2).Aggregate(1L, (p, d) => p * d);
        var r = new double[shape.Aggregate(1L, (p, d) => p * d)];
        var a = new double[r.Length];
        for (int i = 0; i < r.Length; i++) (r[i], a[i]) = element((int)(i / inner % channels));
        return (NamedTensor.FromDoubles("y", type, shape, r), NamedTensor.FromDoubles("y", type, shape, a));
    }

    internal static double Gaussian(Random rng) => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());

    [Fact]
    public void Bfloat16_correct_folds_pass_and_a_one_percent_gamma_fault_or_a_three_percent_offset_is_caught()
    {
        for (int seed = 0; seed < 200; seed++)
        {
            var (r, a) = Bf16Pair(seed);
            var ok = Comparator.Compare(r, a);
            Assert.True(ok.DriftingChannels == 0, $"seed {seed}: {ok.Problem}");
        }
        for (int seed = 0; seed < 20; seed++)
        {
            var (r, a) = Bf16Pair(seed, faultChannel: 3, gain: 1.01);
            var bad = Comparator.Compare(r, a);
            Assert.True(bad.Drift.Any(d => d.Channel == 3), $"seed {seed}: gain fault missed, worst {bad.WorstChannel}");
            Assert.False(bad.Passed);
            // bfloat16's own noise is ~0.3 % of a channel's spread here, and the offset must clear 6σ (README): 3 %.
            (r, a) = Bf16Pair(seed, faultChannel: 5, offsetOfSpread: 0.03);
            bad = Comparator.Compare(r, a);
            Assert.True(bad.Drift.Any(d => d.Channel == 5), $"seed {seed}: offset fault missed, worst {bad.WorstChannel}");
        }
    }

    /// <summary>A channel that barely varies (torchvision mobilenet_v2: a depthwise conv whose input is mostly ReLU6-clipped
    /// to 0, so most BN outputs are β − mean·s ≈ −0.286 and a few spread over 1e-3): a difference of one ulp in the
    /// constant elements tilts the fitted gain by ulp / spread ≈ 1e-4. Arithmetic errors, and those a correct fold
    /// propagates from upstream, scale with the values (M), a gain with the channel's spread (S): the arithmetic
    /// allowance of the gain is a·max(1, M/S). A gain fault of a normally spread channel is still caught.</summary>
    [Fact]
    public void A_channel_that_barely_varies_is_not_flagged_for_an_ulp_in_its_constant_elements()
    {
        const int inner = 512;
        var r = new double[2 * inner];
        var a = new double[r.Length];
        float constant = -0.286f;
        for (int j = 0; j < inner; j++)
        {
            r[j] = j % 40 == 7 ? (float)(constant + 1e-4 * (j / 40 + 1)) : constant;
            a[j] = r[j] == constant ? MathF.BitIncrement(constant) : r[j];
            r[inner + j] = Math.Sin(j * 0.37) + 0.1; // a normal channel: a 1 % gain is caught
            a[inner + j] = (float)(r[inner + j] * 1.01);
        }
        var c = Comparator.Compare(NamedTensor.FromDoubles("y", F32, [1, 2, 16, 32], r), NamedTensor.FromDoubles("y", F32, [1, 2, 16, 32], a));
        Assert.Equal(1, Assert.Single(c.Drift).Channel);
    }

    [Fact]
    public void Float32_synthetic_faults_are_caught_and_exact_equality_is_not_drift()
    {
        // Channel 2 is weak (values 1e-3 of the others'): its 1 % gain fault is inside the elementwise tolerance.
        var x = Enumerable.Range(0, 2 * 4 * 25).Select(i => (Math.Sin(i * 0.37) + 0.1) * (i / 25 % 4 == 2 ? 1e-3 : 1)).ToArray();
        var r = NamedTensor.FromDoubles("y", F32, [2, 4, 5, 5], x);
        Assert.Equal(0, Comparator.Compare(r, r).DriftingChannels);
        var scaled = x.Select((v, i) => i / 25 % 4 == 2 ? v * 1.01 : v).ToArray();
        var c = Comparator.Compare(r, NamedTensor.FromDoubles("y", F32, [2, 4, 5, 5], scaled));
        Assert.Equal(0, c.FailedElements);
        Assert.Equal(2, Assert.Single(c.Drift).Channel);
        Assert.Contains("systematic drift", c.Problem);
        // 0.4 %, as far as error carried from upstream rewrites has been measured to reach as a gain: not drift.
        var small = x.Select((v, i) => i / 25 % 4 == 2 ? v * 1.004 : v).ToArray();
        Assert.Equal(0, Comparator.Compare(r, NamedTensor.FromDoubles("y", F32, [2, 4, 5, 5], small)).DriftingChannels);
    }

    /// <summary>review (04:25): float16 faults of 1 % in late channels pass at batch 1 (a [1,256,4,4] channel has 16
    /// elements); the check says so when it tested a half tensor over fewer than 64 elements per channel, and how to
    /// test more.</summary>
    [Fact]
    public void A_float16_check_over_few_elements_per_channel_says_how_to_test_more()
    {
        var original = Load("resnet_tiny_fp16");
        var (folded, _) = Fold(original);
        static string? Note(CheckReport r) => r.Notes.FirstOrDefault(n => n.Contains("element(s) per channel"));
        var few = EquivalenceChecker.Check(original, folded, new CheckOptions());
        Assert.True(few.Passed);
        var note = Note(few);
        Assert.NotNull(note);
        Assert.StartsWith("float16 tensor '", note);
        Assert.Contains("has 1 element(s) per channel over the run(s) (under 8: not tested for drift)", note);
        Assert.EndsWith($"more iterations or a larger batch test more ({InputGenerator.ShapeHint})", note);
        // 64 elements per channel in every compared tensor (the deepest is [N, 64, 1, 1]): nothing to say.
        var enough = EquivalenceChecker.Check(original, folded, new CheckOptions { Iterations = 2, Shapes = new Dictionary<string, long[]> { ["input"] = [32, 3, 32, 32] } });
        Assert.Null(Note(enough));
        Assert.NotNull(Note(EquivalenceChecker.Check(original, folded, new CheckOptions { Shapes = new Dictionary<string, long[]> { ["input"] = [32, 3, 32, 32] } })));
        // float32: its noise is 2¹³ times smaller, no note.
        var f32 = Load("resnet_tiny");
        Assert.Null(Note(EquivalenceChecker.Check(f32, Fold(f32).Folded, new CheckOptions())));
    }
}

public class StudentCriticalTests
{
    [Theory]
    [InlineData(1, 2.0, 0.5)]      // Cauchy: P(|T| > 1) = 1/2 (t = 1)
    [InlineData(2, 4.303, 0.05)]   // tables: t_{0.975, 2} = 4.303
    [InlineData(30, 2.042, 0.05)]  // t_{0.975, 30} = 2.042
    public void Tail_probability_matches_tables(long dof, double t, double p)
    {
        var m = typeof(ChannelDriftDetector).GetMethod("StudentTail", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!;
        double tail = (double)m.Invoke(null, [dof == 1 ? 1.0 : t, (double)dof])!;
        Assert.Equal(p, tail, 3);
    }

    [Fact]
    public void Critical_values_fall_toward_z_as_elements_grow()
    {
        double few = ChannelDriftDetector.StudentCritical(6), many = ChannelDriftDetector.StudentCritical(10_000);
        Assert.InRange(few, 165, 180); // 172.5 by numerical integration of the t density
        Assert.InRange(ChannelDriftDetector.StudentCritical(30), 11.0, 11.6); // 11.3 likewise
        Assert.InRange(many, ChannelDriftDetector.Z, ChannelDriftDetector.Z * 1.01);
    }
}

/// <summary>The detector's findings as a user meets them: exit 2, the channel named, the JSON report's fields.</summary>
[Collection("Console")]
public class ChannelDriftCliTests
{
    /// <summary>The note of a float16 check over few elements per channel, as the CLI prints it: it names the option.
    /// (Here, not in ChannelDriftTests: the CLI swaps Console.Error, which only the "Console" collection may do — from a
    /// parallel class it stole the fuzz harness's error output, which then failed a case for an empty message.)</summary>
    [Fact]
    public void The_float16_few_elements_note_names_the_option()
    {
        string dir = TempDir(), output = Path.Combine(dir, "out.onnx");
        var (code, stdout, _) = NormFold.Tests.Cli.CliRunner.Run("fold", Path.Combine(ModelsDir, "resnet_tiny_fp16.onnx"), "-o", output, "--check");
        Assert.Equal(0, code);
        Assert.Contains("more iterations or a larger batch test more (bind it with --shape NAME:DxDx…)", stdout.Replace("\n  ", " "));
    }

    [Fact]
    public void Check_of_a_float16_fold_with_one_channel_off_exits_2_and_the_json_names_channel_gain_and_threshold()
    {
        string dir = TempDir();
        var original = OnnxModel.Load(Path.Combine(ModelsDir, "resnet_tiny_fp16.onnx"));
        var bns = original.Proto.Graph.Node.Where(n => n.OpType == "BatchNormalization").ToList();
        var bn = bns[bns.Count / 2];
        var copy = new OnnxModel(original.Proto.Clone(), original.SourcePath);
        var index = new NormFold.Graph.GraphIndex(copy.Proto.Graph, copy);
        var node = copy.Proto.Graph.Node.Single(n => n.Name == bn.Name);
        Assert.True(index.TryGetConstant(node.Input[1], out var t, out _));
        var v = copy.ReadDoubles(t);
        v[2] *= 1.01;
        var replacement = NormFold.Tensors.TensorData.Create(t.Name + "_fault", t.DataType, t.Dims, v);
        copy.Proto.Graph.Initializer.Add(replacement);
        node.Input[1] = replacement.Name;
        var (broken, _) = Fold(copy);
        string brokenPath = Path.Combine(dir, "broken.onnx"), json = Path.Combine(dir, "r.json");
        ModelWriter.Save(broken, brokenPath);
        var (code, stdout, _) = NormFold.Tests.Cli.CliRunner.Run("check", Path.Combine(ModelsDir, "resnet_tiny_fp16.onnx"), brokenPath,
            "--shape", "input:8x3x32x32", "--iterations", "2", "--json", json);
        Assert.Equal(NormFold.Cli.ExitCodes.CheckFailed, code);
        Assert.Contains("systematic drift", stdout);
        string text = File.ReadAllText(json);
        NormFold.Tests.Cli.ReportFormatTests.AssertValid("check-report", text);
        using var doc = System.Text.Json.JsonDocument.Parse(text);
        var finding = doc.RootElement.GetProperty("check").GetProperty("channelFindings")[0];
        Assert.Equal(bn.Output[0], finding.GetProperty("tensor").GetString());
        Assert.Equal(2, finding.GetProperty("channel").GetInt64());
        Assert.InRange(finding.GetProperty("gain").GetDouble(), 1.005, 1.015);
        Assert.True(finding.GetProperty("gainThreshold").GetDouble() <= ChannelDriftDetector.MinGain);
        Assert.True(finding.GetProperty("flagged").GetBoolean());
        // The check's own figures: the detector ran, one run (float16 is never cut), what was skipped as unchanged.
        var check = doc.RootElement.GetProperty("check");
        Assert.True(check.GetProperty("channelDrift").GetBoolean());
        Assert.Equal(1, check.GetProperty("batches").GetInt32());
        Assert.False(check.GetProperty("nothingToCheck").GetBoolean());
        Assert.True(check.GetProperty("skippedUnchanged").GetInt32() >= 0);
        // Per tensor, the channel nearest its thresholds with every figure: the faulty one for the BN's output, an
        // unflagged one (ratio below 1) for a tensor upstream of it.
        var tensors = check.GetProperty("intermediates").EnumerateArray().ToList();
        var faulty = tensors.Single(e => e.GetProperty("name").GetString() == bn.Output[0]).GetProperty("worstChannel");
        Assert.Equal(2, faulty.GetProperty("channel").GetInt64());
        Assert.True(faulty.GetProperty("flagged").GetBoolean());
        var upstream = tensors.First().GetProperty("worstChannel");
        Assert.False(upstream.GetProperty("flagged").GetBoolean());
        Assert.True(upstream.GetProperty("gainThreshold").GetDouble() > 0);
        Assert.True(tensors.First().GetProperty("worstChannelRatio").GetDouble() < 1);
        // --no-channel-drift: the elementwise check alone passes it (float16 allowance)
        Assert.Equal(0, NormFold.Tests.Cli.CliRunner.Run("check", Path.Combine(ModelsDir, "resnet_tiny_fp16.onnx"), brokenPath,
            "--shape", "input:8x3x32x32", "--iterations", "2", "--no-channel-drift").Code);
    }
}

/// <summary>
/// Channels whose elements are few or repeated carry less evidence than their element count suggests: a channel made
/// of broadcast copies of two values has two points to fit a gain to, and float16's rounding steps over eight elements
/// can line up with the values. Found by the affine fuzz family (affine:5000635 on 'mul2'; 4000498, 5000036, 5000503):
/// correct folds flagged as drifting.
/// </summary>
public class ChannelDriftEvidenceTests
{
    [Fact]
    public void Broadcast_copies_count_once_a_gain_fitted_to_two_values_is_not_drift()
    {
        // [2, 4, 1, 64]: per batch item and channel one value, copied along the last axis (a Mul by a [64] constant of
        // equal values after a [2, 4, 1, 1] tensor). Channel 2 carries a relative error of 1 % in one value and none in
        // the other: two points, whatever their copies, cannot tell a gain from the error of one upstream value.
        long[] shape = [2, 4, 1, 64];
        var r = new double[2 * 4 * 64];
        var a = new double[r.Length];
        for (int o = 0; o < 2; o++)
            for (int c = 0; c < 4; c++)
                for (int j = 0; j < 64; j++)
                {
                    int i = (o * 4 + c) * 64 + j;
                    r[i] = o == 0 ? 0.5 + c : 0.6 + c;
                    a[i] = c == 2 && o == 1 ? r[i] * 1.01 : r[i];
                }
        var dup = Comparator.Compare(NamedTensor.FromDoubles("y", F32, shape, r), NamedTensor.FromDoubles("y", F32, shape, a));
        Assert.True(dup.DriftingChannels == 0, dup.Problem);
        // The same relative error on 128 distinct values along a line is a gain the detector must see.
        for (int i = 0; i < r.Length; i++)
        {
            int c = i / 64 % 4;
            r[i] = c + 0.5 + (i % 128) / 256.0;
            a[i] = c == 2 ? (float)(r[i] * 1.01) : r[i];
        }
        var distinct = Comparator.Compare(NamedTensor.FromDoubles("y", F32, shape, r), NamedTensor.FromDoubles("y", F32, shape, a));
        Assert.Equal(2, Assert.Single(distinct.Drift).Channel);
    }

    // float16, 8 elements a channel ([2, C, 2, 2]: the deepest layers of the bundled ResNets at batch 2). Reference: a
    // Sub of a constant k near the values, then the BN: round(round(x − k)·s + t). Candidate: the merged Mul + Add,
    // round(round(x·s) + round(t − k·s)): exact in real arithmetic, but round(x·s) loses what x − k kept where the
    // result is small against x·s (cancellation), and over 8 elements those rounding steps can line up with the values.
    static (NamedTensor, NamedTensor) MergedFloat16(int seed, double gain = 1)
    {
        const int C = 16, inner = 4, outer = 2;
        var rng = new Random(seed);
        double H(double v) => Rounding.FromHalf(Rounding.ToHalf(v));
        var r = new double[outer * C * inner];
        var a = new double[r.Length];
        var k = Enumerable.Range(0, C).Select(_ => H(1 + 3 * rng.NextDouble())).ToArray();
        var s = Enumerable.Range(0, C).Select(_ => 0.5 + rng.NextDouble()).ToArray();
        var t = Enumerable.Range(0, C).Select(_ => rng.NextDouble() - 0.5).ToArray();
        for (int o = 0; o < outer; o++)
            for (int c = 0; c < C; c++)
                for (int j = 0; j < inner; j++)
                {
                    int i = (o * C + c) * inner + j;
                    double x = H(k[c] + 0.05 * (rng.NextDouble() - 0.5));
                    r[i] = H(H(x - k[c]) * s[c] + t[c]);
                    double sc = s[c] * (c == 7 ? gain : 1);
                    a[i] = H(H(x * H(sc)) + H(t[c] - k[c] * sc));
                }
        long[] shape = [outer, C, 2, 2];
        return (NamedTensor.FromDoubles("y", F16, shape, r), NamedTensor.FromDoubles("y", F16, shape, a));
    }

    // float16 channels of a BN with a large shift (half-numerics fuzz family), [8, 4, 8, 8]: 512 elements a channel,
    // one exact value t per element, the reference round(t), the candidate round(c + (t − c)·gain + d): a correct
    // fold's exact result differs from the reference's by less than an ulp (d), rounded once. Without a pile, t is
    // spread evenly over mean ± √3·spread (c = mean); with one, a share of the elements is c = round(mean) exactly (the
    // BN's t where its input was clipped to 0: the channel's lowest value) and the others c + spread·|N(0, 1)|.
    static (NamedTensor, NamedTensor) FlatFloat16(int seed, double mean, double spread, double d, double gain = 1, double pile = 0)
    {
        const int C = 4, outer = 8;
        var rng = new Random(seed);
        double H(double v) => Rounding.FromHalf(Rounding.ToHalf(v));
        double center = pile > 0 ? H(mean) : mean;
        return ChannelDriftTests.Pair(F16, [outer, C, 8, 8], _ =>
        {
            double t = pile == 0 ? mean + spread * Math.Sqrt(3) * (2 * rng.NextDouble() - 1)
                : rng.NextDouble() < pile ? center : center + spread * Math.Abs(ChannelDriftTests.Gaussian(rng));
            return (H(t), H(center + (t - center) * gain + d));
        });
    }

    /// <summary>half-numerics:m32000445 / m31000000: a channel whose values span under an ulp (mean 25.7, spread
    /// 0.013; the ulp is 0.0156) takes 2–4 grid values, and where the candidate's exact values sit a fraction of an ulp
    /// from the reference's, the two roundings differ in step with r: the fit read gains of 0.67–0.96. The gain band
    /// now holds 2(u·M/S)², what both tensors' own rounding can make of a gain.</summary>
    [Fact]
    public void A_float16_channel_spanning_under_an_ulp_reads_no_gain_from_the_grid()
    {
        for (int seed = 0; seed < 40; seed++)
        {
            var (r, a) = FlatFloat16(seed, 25.68, 0.013, -0.3 * 0.015625);
            var c = Comparator.Compare(r, a);
            Assert.True(c.DriftingChannels == 0, $"seed {seed}: {c.Problem}");
        }
    }

    /// <summary>half-numerics:m31000001, fp16 DenseNet-121 (batch 8, seed 1): half a channel one exact value (a BN's
    /// t where its input was clipped to 0), the rest spread over a few ulps. The pile's one rounding error, weighed by
    /// its 256 copies at its distance from the mean, read as a gain of 1.025; the pile now counts once.</summary>
    [Fact]
    public void A_float16_pile_of_one_value_counts_once()
    {
        for (int seed = 0; seed < 40; seed++)
        {
            var (r, a) = FlatFloat16(seed, 74.19, 0.6, 0.45 * 0.0625, pile: 0.5);
            var c = Comparator.Compare(r, a);
            Assert.True(c.DriftingChannels == 0, $"seed {seed}: {c.Problem}");
        }
    }

    /// <summary>Faults of 1 % in flat float16 channels are still caught: a gain about the mean where the channel spans
    /// many ulps (mean 100, spread 5: 80 ulps), a scale of the whole value (a weight × 1.01) where it spans less than
    /// one (mean 89, spread 0.03: the mean moves by 0.89, 14 ulps), and with half the channel one value.</summary>
    [Fact]
    public void One_percent_faults_in_flat_float16_channels_are_still_caught()
    {
        for (int seed = 0; seed < 20; seed++)
        {
            var (r, a) = FlatFloat16(seed, 100, 5, 0, gain: 1.01);
            var c = Comparator.Compare(r, a);
            Assert.True(c.DriftingChannels == 4, $"seed {seed}: gain about the mean missed, worst {c.WorstChannel}");
            Assert.All(c.Drift, d => Assert.InRange(d.Gain, 1.008, 1.012));
            (r, a) = FlatFloat16(seed, 89, 0.03, 0.01 * 89, gain: 1.01);
            c = Comparator.Compare(r, a);
            Assert.True(c.DriftingChannels == 4, $"seed {seed}: a scale of 1 % missed, worst {c.WorstChannel}");
            (r, a) = FlatFloat16(seed, 100, 5, 0, gain: 1.01, pile: 0.5);
            c = Comparator.Compare(r, a);
            Assert.True(c.DriftingChannels == 4, $"seed {seed}: gain with a pile missed, worst {c.WorstChannel}");
        }
    }

    [Fact]
    public void Float16_rounding_steps_over_eight_elements_are_not_drift()
    {
        for (int seed = 0; seed < 300; seed++)
        {
            var (r, a) = MergedFloat16(seed);
            var c = Comparator.Compare(r, a);
            Assert.True(c.DriftingChannels == 0, $"seed {seed}: {c.Problem}");
        }
    }
}
