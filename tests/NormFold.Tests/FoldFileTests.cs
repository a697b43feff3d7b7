using NormFold.Onnx;
using NormFold.Rewriting;
using NormFold.Verification;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests;

/// <summary>Folding.FoldFile with a check: fold, write beside the output, check in ORT, move into place only if
/// equivalent — the library's form of `fold --check`.</summary>
public class FoldFileTests
{
    static string CopyOf(string model)
    {
        string dir = TempDir(), path = Path.Combine(dir, model);
        File.Copy(Path.Combine(ModelsDir, model), path);
        return path;
    }

    [Fact]
    public void A_passing_check_writes_the_same_model_as_an_unchecked_fold_and_leaves_nothing_else()
    {
        string input = CopyOf("resnet_tiny.onnx"), dir = Path.Combine(TempDir(), "out");
        Directory.CreateDirectory(dir);
        string output = Path.Combine(dir, "folded.onnx"), plain = Path.Combine(TempDir(), "plain.onnx");
        var result = Folding.FoldFile(input, output, check: new CheckOptions { AuditWeights = true });
        Assert.True(result.Written);
        Assert.NotNull(result.Check);
        Assert.True(result.Check!.Passed);
        Assert.False(result.Check.NothingToCheck);
        Assert.True(result.Check.Audit!.Passed); // the weight audit replayed this fold's log
        Assert.True(result.Check.Audit.Tensors > 0);
        Assert.Contains(result.Log.Decisions, d => d.Outcome == Outcome.Folded);
        Assert.Equal([output], Directory.GetFileSystemEntries(dir)); // no staging folder left
        var unchecked_ = Folding.FoldFile(input, plain);
        Assert.True(unchecked_.Written);
        Assert.Null(unchecked_.Check);
        Assert.Equal(File.ReadAllBytes(plain), File.ReadAllBytes(output));
        using var original = OnnxModel.Load(input);
        using var folded = OnnxModel.Load(output);
        Assert.Equal(0, Count(folded, "BatchNormalization"));
        AssertEquivalent(original, folded);
    }

    [Fact]
    public void A_failing_check_writes_nothing_and_reports_the_failure()
    {
        string input = CopyOf("resnet_tiny.onnx"), dir = Path.Combine(TempDir(), "out");
        Directory.CreateDirectory(dir);
        string output = Path.Combine(dir, "folded.onnx");
        // No tolerance at all: a correct fold still rounds differently from the original, so the check fails.
        var zero = new Dictionary<string, double> { [""] = 0 };
        var result = Folding.FoldFile(input, output, check: new CheckOptions { Atol = zero, Rtol = zero, DetectDrift = false });
        Assert.False(result.Written);
        Assert.False(result.Check!.Passed);
        Assert.NotNull(result.Check.FirstFailure);
        Assert.Contains(result.Log.Decisions, d => d.Outcome == Outcome.Folded);
        Assert.Empty(Directory.GetFileSystemEntries(dir)); // no output, no partial file, no staging folder
    }

    [Fact]
    public void A_checked_fold_never_overwrites_its_input()
    {
        string input = CopyOf("resnet_tiny.onnx");
        var before = File.ReadAllBytes(input);
        var e = Assert.Throws<InvalidModelException>(() => Folding.FoldFile(input, input, check: new CheckOptions()));
        Assert.Contains("refusing to overwrite the input model", e.Message);
        Assert.Equal(before, File.ReadAllBytes(input));
        Assert.Equal([input], Directory.GetFileSystemEntries(Path.GetDirectoryName(input)!));
    }

    [Fact]
    public void A_written_model_ORT_rejects_is_an_internal_error_and_nothing_is_written()
    {
        string input = Path.Combine(ModelsDir, "resnet_tiny.onnx");
        using var broken = OnnxModel.Load(input);
        // What a buggy rewrite could leave: a Conv reading a weight of the wrong rank.
        var conv = broken.Proto.Graph.Node.First(n => n.OpType == "Conv");
        var w = broken.Proto.Graph.Initializer.First(t => t.Name == conv.Input[1]);
        long elements = w.RawData.Length / 4;
        w.Dims.Clear();
        w.Dims.Add(elements);
        string output = Path.Combine(TempDir(), "out.onnx");
        var e = Assert.Throws<InvalidOperationException>(() => Folding.SaveIfEquivalent(broken, output, new SaveOptions(), (staged, label) =>
        {
            using var reference = OnnxModel.Load(input);
            using var candidate = OnnxModel.Load(staged, label);
            return EquivalenceChecker.Check(reference, candidate, new CheckOptions { ReferenceLabel = "the original", CandidateLabel = label });
        }));
        Assert.Contains("the folded model", e.Message);
        Assert.False(NormFold.Cli.Cli.IsInputError(e));
        Assert.False(File.Exists(output));
        Assert.Empty(Directory.GetFileSystemEntries(Path.GetDirectoryName(output)!));
    }
}
