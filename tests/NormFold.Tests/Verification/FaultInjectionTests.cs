using NormFold.Graph;
using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Rewriting;
using NormFold.Rewriting.BatchNorm;
using NormFold.Tensors;
using NormFold.Tests.Builders;
using NormFold.Verification;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Verification;

/// <summary>
/// The check must fail folds broken the way real bugs break them, with its default tolerances, and pass correct
/// ones. A broken fold is made by folding a model whose BN parameters carry the bug (ε = 0 is exactly "ε ignored"),
/// or by replacing the weights a correct fold wrote with the buggy arithmetic's result.
/// </summary>
public class FaultInjectionTests
{
    public enum Fault { EpsilonIgnored, OneChannelScaleOff, GammaBetaSwapped, MeanSignFlipped }

    static readonly string[] Models = ["resnet_tiny", "resnet_tiny_op15", "mlp_bn1d", "decoder_convtranspose", "conv1d_conv3d", "resnet_tiny_constants", "resnet_tiny_fp16"];

    public static IEnumerable<object[]> ModelFaults() =>
        from m in Models from f in Enum.GetValues<Fault>() select new object[] { m, f };

    static OnnxModel Load(string name) => OnnxModel.Load(Path.Combine(ModelsDir, name + ".onnx"));

    /// <summary>The original with the bug planted in its BN parameters; folding it gives the buggy fold.</summary>
    static OnnxModel Plant(OnnxModel original, Fault fault)
    {
        var copy = new OnnxModel(original.Proto.Clone(), original.SourcePath);
        var index = new GraphIndex(copy.Proto.Graph, copy);
        var bns = copy.Proto.Graph.Node.Where(n => n.OpType == "BatchNormalization").ToList();
        foreach (var bn in fault == Fault.OneChannelScaleOff ? bns.Take(1) : bns)
        {
            switch (fault)
            {
                case Fault.EpsilonIgnored:
                    Attributes.SetFloat(bn, "epsilon", 0f);
                    break;
                case Fault.GammaBetaSwapped:
                    (bn.Input[1], bn.Input[2]) = (bn.Input[2], bn.Input[1]);
                    break;
                case Fault.MeanSignFlipped:
                case Fault.OneChannelScaleOff:
                    int slot = fault == Fault.MeanSignFlipped ? 3 : 1;
                    Assert.True(index.TryGetConstant(bn.Input[slot], out var t, out _));
                    var v = copy.ReadDoubles(t);
                    if (fault == Fault.MeanSignFlipped) for (int i = 0; i < v.Length; i++) v[i] = -v[i];
                    else v[StrongestChannel(index, bn)] *= 1.01;
                    var replacement = TensorData.Create(t.Name + "_fault", t.DataType, t.Dims, v);
                    copy.Proto.Graph.Initializer.Add(replacement);
                    bn.Input[slot] = replacement.Name;
                    break;
            }
        }
        return copy;
    }

    /// <summary>The channel with the largest |s|: a 1% error in a channel that contributes 1e-4 of a tensor's magnitude
    /// changes results by 1e-6 — no float32 tolerance can see it, and no user would call it broken.</summary>
    static int StrongestChannel(GraphIndex index, NodeProto bn)
    {
        Assert.Null(BatchNormParameters.TryRead(index, bn, out var p));
        return Array.IndexOf(p.Scale, p.Scale.MaxBy(Math.Abs));
    }

    static CheckReport CheckAgainst(OnnxModel original, OnnxModel candidate, RewriteLog? audit = null) =>
        EquivalenceChecker.Check(original, candidate, new CheckOptions { Iterations = 2, AuditWeights = audit != null, FoldLog = audit });

    [Theory]
    [MemberData(nameof(ModelFaults))]
    public void Check_fails_every_planted_fault_on_every_bundled_model(string model, Fault fault)
    {
        var original = Load(model);
        var (broken, r) = Fold(Plant(original, fault));
        Assert.All(r.Log.Decisions, d => Assert.Equal(Outcome.Folded, d.Outcome));
        var report = CheckAgainst(original, broken);
        Assert.False(report.Passed, $"{fault} on {model} went unnoticed: worst {report.Outputs.Concat(report.Intermediates).Max(o => o.RelativeToMagnitude):G3} of magnitude");
    }

    [Theory]
    [MemberData(nameof(CorrectModels))]
    public void Check_passes_every_correct_fold_of_a_bundled_model(string model)
    {
        var original = Load(model);
        var (folded, r) = Fold(original);
        var report = CheckAgainst(original, folded, audit: r.Log);
        Assert.True(report.Passed, report.FirstFailure?.Name);
        Assert.True(report.Audit!.Tensors > 0);
        Assert.Equal(0, report.Audit.Inexact); // every folded weight is the exact fold, bit for bit
    }

    public static IEnumerable<object[]> CorrectModels() => Models.Select(m => new object[] { m });

    public static IEnumerable<object[]> BatchCases() =>
        from m in Models from f in new Fault?[] { null, Fault.OneChannelScaleOff, Fault.MeanSignFlipped } select new object?[] { m, f };

    [Theory]
    [MemberData(nameof(BatchCases))]
    public void A_check_in_batches_finds_exactly_what_one_run_finds(string model, Fault? fault)
    {
        var original = Load(model);
        var (candidate, _) = Fold(fault is { } f ? Plant(original, f) : original);
        var options = new CheckOptions { Iterations = 2 };
        var one = EquivalenceChecker.Check(original, candidate, options);
        // A one-byte budget: every intermediate in a batch of its own, each model run in as many segments.
        var batched = EquivalenceChecker.Check(original, candidate, options with { SegmentAboveBytes = 0, BatchBytes = 1 });
        Assert.Equal(1, one.Batches);
        // float16 is never cut: ORT passes it between nodes as float32 within a session, rounded at a cut.
        Assert.Equal(model.EndsWith("fp16") ? 1 : batched.Intermediates.Count + 1, batched.Batches);
        Assert.Equal(fault is null, one.Passed);
        Assert.Equal(one.Passed, batched.Passed);
        Assert.Equal(one.FirstFailure?.Name, batched.FirstFailure?.Name);
        Assert.Equal(one.FirstFailingIteration, batched.FirstFailingIteration);
        Assert.Equal(one.FirstReplayFailure?.Name, batched.FirstReplayFailure?.Name);
        Assert.Equal(one.ReplayedNodes, batched.ReplayedNodes);
        var x = one.Outputs.Concat(one.Intermediates).Concat(one.Replays).ToList();
        var y = batched.Outputs.Concat(batched.Intermediates).Concat(batched.Replays).ToList();
        Assert.Equal(x.Select(c => c.Name), y.Select(c => c.Name));
        foreach (var (p, q) in x.Zip(y))
        {
            Assert.Equal((p.Passed, p.Problem, p.Shape, p.MaxAbs, p.MeanAbs, p.MedianAbs, p.P99Abs, p.MaxRel, p.Cosine, p.FailedElements),
                (q.Passed, q.Problem, q.Shape, q.MaxAbs, q.MeanAbs, q.MedianAbs, q.P99Abs, q.MaxRel, q.Cosine, q.FailedElements));
            Assert.Equal(p.WorstIndex, q.WorstIndex);
            Assert.Equal((p.ChannelsTested, p.DriftingChannels, p.WorstChannel), (q.ChannelsTested, q.DriftingChannels, q.WorstChannel));
            Assert.Equal(p.Drift, q.Drift);
        }
    }

    [Fact]
    public void Check_fails_convtranspose_scaled_along_the_wrong_axis()
    {
        // Two classic bugs: treating ConvTranspose's W like Conv's (channel on axis 0), and forgetting the group offset.
        foreach (var (cin, perGroup, group, bug) in new[] { (6L, 6L, 1L, "axis0"), (8L, 6L, 2L, "no-group-offset") })
        {
            var g = new GraphBuilder(13);
            g.Input("x", F32, [1, cin, 4, 4]);
            g.Init("w", F32, [cin, perGroup, 3, 3]);
            g.Node("ConvTranspose", ["x", "w"], "c", "convT", ("group", group));
            g.Bn("c", perGroup * group, "y");
            g.Output("y");
            var original = g.Build();
            var (folded, r) = Fold(original);
            var created = Single(r).Created[0];
            Assert.True(BatchNormParameters.TryRead(new GraphIndex(original.Proto.Graph, original), original.Proto.Graph.Node[1], out var p) is null);
            var w = original.ReadDoubles(original.Proto.Graph.Initializer.Single(t => t.Name == "w"));
            int kernel = 9;
            for (int i = 0; i < cin; i++)
                for (int j = 0; j < perGroup; j++)
                    for (int k = 0; k < kernel; k++)
                        w[(i * perGroup + j) * kernel + k] *= p.Scale[bug == "axis0" ? i : j];
            var tensor = folded.Proto.Graph.Initializer.Single(t => t.Name == created);
            folded.Proto.Graph.Initializer[folded.Proto.Graph.Initializer.IndexOf(tensor)] = TensorData.Create(created, F32, tensor.Dims, w);
            Assert.False(CheckAgainst(original, folded).Passed, bug);
        }
    }

    [Fact]
    public void Float16_drift_of_a_correct_fold_is_real_but_inside_the_float16_tolerance()
    {
        // Measured on resnet_tiny_fp16: a correct fold drifts by ~2.5e-3 of the magnitude (β − mean·s stored in float16
        // loses what cancels); a fold done step by step in float16 arithmetic drifts by ~4.7e-3. No output tolerance
        // can separate the two; the weight audit can (the two tests below).
        var original = Load("resnet_tiny_fp16");
        var (folded, _) = Fold(original);
        var report = CheckAgainst(original, folded);
        Assert.True(report.Passed);
        double worst = report.Outputs.Concat(report.Intermediates).Max(o => o.RelativeToMagnitude);
        Assert.InRange(worst, 1e-4, Tolerance.RelativeFor(F16) / 2);
    }

    /// <summary>Rewrites every folded Conv weight of a float16 fold with <paramref name="buggy"/>(W, s) instead.</summary>
    static (OnnxModel, RewriteLog) Refold(OnnxModel original, Func<double, double, Half> buggy)
    {
        var (folded, r) = Fold(original);
        var index = new GraphIndex(original.Proto.Graph, original);
        var bns = original.Proto.Graph.Node.Where(n => n.OpType == "BatchNormalization").ToDictionary(n => n.Name);
        foreach (var d in r.Log.Decisions)
        {
            var bn = bns[d.Anchor];
            var conv = index.Producer(bn.Input[0])!;
            Assert.Null(BatchNormParameters.TryRead(index, bn, out var p));
            Assert.True(index.TryGetConstant(conv.Input[1], out var wt, out _));
            var w = original.ReadDoubles(wt);
            int perRow = w.Length / p.Channels;
            var bad = new double[w.Length];
            for (int i = 0; i < w.Length; i++) bad[i] = (double)buggy(w[i], p.Scale[i / perRow]);
            var t = folded.Proto.Graph.Initializer.Single(x => x.Name == d.Created[0]);
            folded.Proto.Graph.Initializer[folded.Proto.Graph.Initializer.IndexOf(t)] = TensorData.Create(t.Name, F16, t.Dims, bad);
        }
        return (folded, r.Log);
    }

    [Fact]
    public void The_weight_audit_catches_float16_weights_rounded_twice_which_outputs_cannot_show()
    {
        var original = Load("resnet_tiny_fp16");
        var (twice, log) = Refold(original, (w, s) => (Half)(float)(w * s)); // double → float → half: two roundings
        var plain = CheckAgainst(original, twice);
        Assert.True(plain.Passed); // inside float16 noise: no output comparison can see it
        var audited = CheckAgainst(original, twice, audit: log);
        Assert.False(audited.Passed);
        Assert.InRange(audited.Audit!.Inexact, 1, audited.Audit.Elements / 100);
        Assert.Equal(1, audited.Audit.MaxUlp);
    }

    [Fact]
    public void The_weight_audit_catches_a_float16_fold_done_in_float16_arithmetic()
    {
        var original = Load("resnet_tiny_fp16");
        var (halfMath, log) = Refold(original, (w, s) => (Half)((float)(Half)w * (float)(Half)s)); // s itself rounded to float16
        var audited = CheckAgainst(original, halfMath, audit: log);
        Assert.False(audited.Passed);
        Assert.True(audited.Audit!.MaxUlp >= 1);
    }
}
