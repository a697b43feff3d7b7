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

    /// <summary>x → Conv → BN → y → Relu → r → Add(r, y) → s → Relu → out: y is what the fold changes; r and s are
    /// made by nodes both models define alike from tensors both make.</summary>
    static OnnxModel ConvBnThenAlike()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [2, 3, 8, 8]);
        g.Init("w", F32, [4, 3, 3, 3]);
        g.Node("Conv", ["x", "w"], "c", "conv");
        g.Bn("c", 4, "y");
        g.Node("Relu", ["y"], "r");
        g.Node("Add", ["r", "y"], "s");
        g.Node("Relu", ["s"], "out");
        g.Output("out");
        return g.Build();
    }

    [Fact]
    public void Tensors_carried_from_a_compared_rewrite_are_skipped_and_counted_unless_asked()
    {
        var original = ConvBnThenAlike();
        var (folded, _) = Fold(original);
        var report = EquivalenceChecker.Check(original, folded);
        Assert.True(report.Passed, report.FirstFailure?.Name);
        Assert.Equal(["y"], report.Intermediates.Select(c => c.Name)); // the folded Conv's output, under the BN's name
        Assert.Equal(2, report.SkippedCarried); // r, s
        Assert.Contains(report.Notes, n => n.StartsWith("2 intermediate(s) not compared"));
        foreach (var all in new[] { new CheckOptions { CompareCarried = true }, new CheckOptions { CompareUnchanged = true } })
        {
            var every = EquivalenceChecker.Check(original, folded, all);
            Assert.Equal(["y", "r", "s"], every.Intermediates.Select(c => c.Name));
            Assert.Equal(0, every.SkippedCarried);
        }
        // A tolerance named for a carried tensor compares it.
        var named = EquivalenceChecker.Check(original, folded, new CheckOptions { Atol = new Dictionary<string, double> { ["s"] = 1 } });
        Assert.Equal(["y", "s"], named.Intermediates.Select(c => c.Name));
    }

    [Fact]
    public void A_node_defined_alike_is_compared_when_an_input_or_a_constant_differs()
    {
        // The Add reads 'r' made by a node in one model and an initializer 'r' in the other; the second Relu reads a
        // constant whose value differs: both compared, as is everything after them.
        var original = ConvBnThenAlike();
        var (folded, _) = Fold(original);
        var g = folded.Proto.Graph;
        var relu = g.Node.Single(n => n.OpType == "Relu" && n.Output[0] == "r");
        g.Node.Remove(relu);
        g.Initializer.Add(NormFold.Tensors.TensorData.Create("r", F32, [2, 4, 6, 6], new double[2 * 4 * 6 * 6]));
        var report = EquivalenceChecker.Check(original, new OnnxModel(folded.Proto));
        Assert.Contains(report.Intermediates, c => c.Name == "s");
        Assert.Equal(0, report.SkippedCarried);
        Assert.False(report.Passed); // r is 0 in the candidate: s and out differ
    }

    [Fact]
    public void A_fault_in_a_rewrite_is_caught_where_it_is_with_the_carried_tensors_skipped()
    {
        var original = ConvBnThenAlike();
        var (folded, _) = Fold(original);
        var g = folded.Proto.Graph;
        var w = g.Initializer.Single(t => t.Name == g.Node.Single(n => n.OpType == "Conv").Input[1]);
        var v = folded.ReadDoubles(w);
        for (int k = 0; k < v.Length / 4; k++) v[k] *= 1.01; // output channel 0's scale 1 % off
        g.Initializer[g.Initializer.IndexOf(w)] = NormFold.Tensors.TensorData.Create(w.Name, F32, w.Dims, v);
        var report = EquivalenceChecker.Check(original, new OnnxModel(folded.Proto));
        Assert.False(report.Passed);
        Assert.Equal("y", report.FirstDrifting?.Name);
        Assert.Equal(2, report.SkippedCarried);
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
        Assert.DoesNotContain("Max abs", stdout); // no empty table of compared tensors
        Assert.Equal(File.ReadAllBytes(input), File.ReadAllBytes(output));
    }

    [Fact]
    public void Nothing_to_check_says_nothing_about_inputs_it_never_made()
    {
        // resnet_tiny's batch dim is dynamic: a run would note it is bound to 1; with nothing run, no such note.
        string dir = TempDir(), once = Path.Combine(dir, "once.onnx"), twice = Path.Combine(dir, "twice.onnx");
        Assert.Equal(0, NormFold.Tests.Cli.CliRunner.Run("fold", Path.Combine(ModelsDir, "resnet_tiny.onnx"), "-o", once).Code);
        var (code, stdout, _) = NormFold.Tests.Cli.CliRunner.Run("fold", once, "-o", twice, "--check");
        Assert.Equal(0, code);
        Assert.Contains("nothing to check", stdout);
        Assert.DoesNotContain("unbound", stdout);
        (code, stdout, _) = NormFold.Tests.Cli.CliRunner.Run("fold", Path.Combine(ModelsDir, "resnet_tiny.onnx"), "-o", twice, "--check");
        Assert.Equal(0, code);
        Assert.Contains("unbound", stdout); // the note itself still comes where inputs are made
    }

    /// <summary>README: the exit 0 of "nothing to check" says the models are the same computation, not that ONNX
    /// Runtime can run them — it holds for a model ORT cannot load (here a custom-domain op).</summary>
    [Fact]
    public void Nothing_to_check_passes_without_onnx_runtime_even_on_a_model_it_cannot_load()
    {
        string dir = TempDir(), input = Path.Combine(dir, "custom.onnx"), output = Path.Combine(dir, "out.onnx");
        var g = new GraphBuilder(13);
        g.Input("x", F32, [1, 4]);
        g.Node("Relu", ["x"], "t");
        g.Node("FooBar", ["t"], "y");
        g.Output("y", F32, [1, 4]);
        g.Proto.Graph.Node.Single(n => n.OpType == "FooBar").Domain = "my.custom";
        g.Proto.OpsetImport.Add(new NormFold.Onnx.Proto.OperatorSetIdProto { Domain = "my.custom", Version = 1 });
        var model = g.Build();
        ModelWriter.Save(model, input);
        Assert.ThrowsAny<Exception>(() => new OrtRunner(input).Dispose()); // ORT cannot load it
        var (code, stdout, _) = NormFold.Tests.Cli.CliRunner.Run("fold", input, "-o", output, "--check");
        Assert.Equal(0, code);
        Assert.Contains("nothing to check", stdout);
        Assert.Equal(File.ReadAllBytes(input), File.ReadAllBytes(output));
        (code, stdout, _) = NormFold.Tests.Cli.CliRunner.Run("check", input, input);
        Assert.Equal(0, code);
        Assert.Contains("ONNX Runtime not run", stdout);
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
