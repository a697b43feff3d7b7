using NormFold.Onnx;
using NormFold.Tests.Builders;
using NormFold.Verification;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Verification;

/// <summary>No needless work: tensors equal by construction are skipped; nothing changed → ORT not run; large checks
/// compare in batches, with the same verdicts.</summary>
[Collection("Console")]
public class CheckWorkTests
{
    /// <summary>x → Relu → Conv → BN → y: the Relu's output is upstream of the fold.</summary>
    static OnnxModel ReluConvBn()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [2, 3, 8, 8]);
        g.Node("Relu", ["x"], "r");
        g.Init("w", F32, [4, 3, 3, 3]);
        g.Node("Conv", ["r", "w"], "c", "conv");
        g.Bn("c", 4, "y");
        g.Output("y");
        return g.Build();
    }

    [Fact]
    public void Tensors_upstream_of_every_rewrite_are_skipped_and_counted()
    {
        var original = ReluConvBn();
        var (folded, _) = Fold(original);
        var report = EquivalenceChecker.Check(original, folded);
        Assert.True(report.Passed);
        Assert.Equal(1, report.SkippedUnchanged); // 'r'
        Assert.DoesNotContain(report.Intermediates, c => c.Name == "r");
        Assert.Single(report.Outputs);
        var all = EquivalenceChecker.Check(original, folded, new CheckOptions { CompareUnchanged = true });
        Assert.Contains(all.Intermediates, c => c.Name == "r");
        Assert.Equal(0, all.SkippedUnchanged);
    }

    [Fact]
    public void A_changed_weight_upstream_is_not_skipped()
    {
        var original = ReluConvBn();
        var changed = new OnnxModel(original.Proto.Clone());
        var w = changed.Proto.Graph.Initializer.Single(t => t.Name == "w");
        var v = changed.ReadDoubles(w);
        v[0] += 1;
        changed.Proto.Graph.Initializer[changed.Proto.Graph.Initializer.IndexOf(w)] = NormFold.Tensors.TensorData.Create("w", F32, w.Dims, v);
        var report = EquivalenceChecker.Check(original, changed);
        Assert.False(report.NothingToCheck);
        Assert.False(report.Passed);
    }

    [Fact]
    public void Identical_models_are_not_run_and_say_so()
    {
        var m = OnnxModel.Load(Path.Combine(ModelsDir, "resnet_tiny.onnx"));
        var report = EquivalenceChecker.Check(m, OnnxModel.Load(Path.Combine(ModelsDir, "resnet_tiny.onnx")));
        Assert.True(report.Passed);
        Assert.True(report.NothingToCheck);
        Assert.Equal("not run", report.OrtVersion);
        Assert.Contains(report.Notes, n => n.StartsWith("nothing to check"));
        // A raised opset changes what the same nodes mean: not "unchanged".
        var raised = OnnxModel.Load(Path.Combine(ModelsDir, "resnet_tiny.onnx"));
        raised.Proto.OpsetImport.Single(o => o.Domain == "").Version = 14;
        Assert.False(EquivalenceChecker.Check(m, raised).NothingToCheck);
    }

    [Fact]
    public void Fold_check_of_a_model_the_fold_does_not_change_writes_it_and_says_there_was_nothing_to_check()
    {
        string dir = TempDir(), input = Path.Combine(dir, "relu.onnx"), output = Path.Combine(dir, "out.onnx");
        var g = new GraphBuilder(13);
        g.Input("x", F32, [1, 4]);
        g.Node("Relu", ["x"], "y");
        g.Output("y");
        ModelWriter.Save(g.Build(), input);
        var (code, stdout, _) = NormFold.Tests.Cli.CliRunner.Run("fold", input, "-o", output, "--check");
        Assert.Equal(0, code);
        Assert.Contains("nothing to check", stdout);
        Assert.Equal(File.ReadAllBytes(input), File.ReadAllBytes(output));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void Batched_comparison_gives_the_same_statistics_as_one_run(int batch)
    {
        var original = OnnxModel.Load(Path.Combine(ModelsDir, "resnet_tiny.onnx"));
        var (folded, _) = Fold(original);
        var one = EquivalenceChecker.Check(original, folded, new CheckOptions { Iterations = 2 });
        var batched = EquivalenceChecker.Check(original, folded, new CheckOptions { Iterations = 2, SegmentAboveBytes = 0, BatchBytes = batch });
        Assert.Equal(1, one.Batches);
        Assert.True(batched.Batches > 2);
        Assert.True(batched.Passed);
        Assert.Equal(one.Intermediates.Select(c => c.Name), batched.Intermediates.Select(c => c.Name));
        foreach (var (x, y) in one.Outputs.Concat(one.Intermediates).Zip(batched.Outputs.Concat(batched.Intermediates)))
            Assert.Equal(x.MaxAbs, y.MaxAbs);
        // and a broken fold fails the same way
        var broken = new OnnxModel(folded.Proto.Clone());
        var bias = broken.Proto.Graph.Initializer.First(t => t.Dims.Count == 1 && t.Name.Contains("bnfold"));
        var v = broken.ReadDoubles(bias);
        v[0] += 0.5;
        broken.Proto.Graph.Initializer[broken.Proto.Graph.Initializer.IndexOf(bias)] = NormFold.Tensors.TensorData.Create(bias.Name, F32, bias.Dims, v);
        var a = EquivalenceChecker.Check(original, broken, new CheckOptions { Iterations = 2 });
        var b = EquivalenceChecker.Check(original, broken, new CheckOptions { Iterations = 2, SegmentAboveBytes = 0, BatchBytes = batch });
        Assert.False(a.Passed);
        Assert.False(b.Passed);
        Assert.Equal(a.FirstDrifting?.Name, b.FirstDrifting?.Name);
    }
}
