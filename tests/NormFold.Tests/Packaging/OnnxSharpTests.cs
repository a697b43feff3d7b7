using Google.Protobuf;
using NormFold.Onnx;
using NormFold.OnnxSharp;
using NormFold.Rewriting;
using NormFold.Verification;
using static NormFold.Tests.TestSupport;
using OnnxSharpModel = global::Onnx.ModelProto;

namespace NormFold.Tests.Packaging;

/// <summary>The OnnxSharp adapter: an Onnx.ModelProto in, a folded Onnx.ModelProto out.</summary>
public class OnnxSharpTests
{
    static OnnxSharpModel ReadWithOnnxSharp(string path) => OnnxSharpModel.Parser.ParseFrom(File.ReadAllBytes(path));

    [Fact]
    public void Folds_an_OnnxSharp_model_and_returns_an_equivalent_one_with_exact_weights()
    {
        string path = Path.Combine(ModelsDir, "resnet_tiny.onnx");
        var input = ReadWithOnnxSharp(path);
        byte[] before = input.ToByteArray();

        var (folded, result) = OnnxSharpModels.Fold(input);

        Assert.Equal(12, result.Log.Count(Outcome.Folded));
        Assert.DoesNotContain(folded.Graph.Node, n => n.OpType == "BatchNormalization");
        Assert.Equal(before, input.ToByteArray()); // the argument is not changed
        using var original = OnnxModel.Load(path);
        using var back = OnnxModel.FromBytes(folded.ToByteArray());
        var report = EquivalenceChecker.Check(original, back, new() { Iterations = 2, AuditWeights = true, FoldLog = result.Log });
        Assert.True(report.Passed);
        Assert.NotNull(report.Audit);
        Assert.Equal(24, report.Audit.Tensors); // 12 weights, 12 biases
        Assert.Equal(0, report.Audit.Inexact);
    }

    [Fact]
    public void External_data_is_read_from_the_folder_given()
    {
        string path = Path.Combine(ModelsDir, "external", "mlp_bn1d.onnx");
        var input = ReadWithOnnxSharp(path);
        Assert.Contains(input.Graph.Initializer, t => t.DataLocation == global::Onnx.TensorProto.Types.DataLocation.External);

        var (folded, result) = OnnxSharpModels.Fold(input, externalDataDirectory: Path.GetDirectoryName(path));

        Assert.NotEmpty(result.Log.Decisions);
        Assert.All(result.Log.Decisions, d => Assert.Equal(Outcome.Folded, d.Outcome));
        using var original = OnnxModel.Load(path);
        using var back = OnnxSharpModels.ToNormFold(folded, Path.GetDirectoryName(path));
        Assert.Equal(0, Count(back, "BatchNormalization"));
        AssertEquivalent(original, back, shapes: new Dictionary<string, long[]> { ["input"] = [4, 32] });
    }

    [Fact]
    public void External_data_without_its_folder_is_a_one_line_error_naming_the_tensor()
    {
        var input = ReadWithOnnxSharp(Path.Combine(ModelsDir, "external", "mlp_bn1d.onnx"));
        var e = Assert.ThrowsAny<NormFoldException>(() => OnnxSharpModels.Fold(input));
        Assert.DoesNotContain('\n', e.Message);
    }
}
