using Google.Protobuf;
using NormFold.Onnx;
using NormFold.OnnxSharp;
using NormFold.Rewriting;
using NormFold.Tests.Onnx;
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

    public static TheoryData<string> TypedModels => TypedDataViewTests.Models;

    /// <summary>Each initializer's elements as bits, from whichever field holds them, and which field that is.</summary>
    static (string Field, long[] Bits) Elements(global::Onnx.TensorProto t) =>
        t.FloatData.Count > 0 ? ("float_data", t.FloatData.Select(f => (long)BitConverter.SingleToInt32Bits(f)).ToArray())
        : t.DoubleData.Count > 0 ? ("double_data", t.DoubleData.Select(BitConverter.DoubleToInt64Bits).ToArray())
        : ("raw_data", t.RawData.ToByteArray().Select(b => (long)b).ToArray());

    [Theory]
    [MemberData(nameof(TypedModels))]
    public void Float_and_double_data_weights_go_to_OnnxSharp_and_back_in_their_own_field_with_their_values(string which)
    {
        // Loaded from a file, NormFold holds large float_data / double_data weights as views shown as raw_data.
        string path = TypedDataViewTests.Write(which);
        var asWritten = ReadWithOnnxSharp(path);
        using var model = OnnxModel.Load(path);
        Assert.Contains(model.Proto.Graph.Initializer, t => model.TypedViewField(t) != null);

        var sharp = OnnxSharpModels.ToOnnxSharp(model);

        Assert.Equal(asWritten.Graph.Initializer.Select(t => t.Name), sharp.Graph.Initializer.Select(t => t.Name));
        foreach (var (expected, actual) in asWritten.Graph.Initializer.Zip(sharp.Graph.Initializer))
        {
            var (field, bits) = Elements(expected);
            Assert.Equal(field, Elements(actual).Field);
            Assert.Equal(bits, Elements(actual).Bits);
            if (field != "raw_data") Assert.True(actual.RawData.IsEmpty, actual.Name);
        }
        Assert.Contains(sharp.Graph.Initializer, t => t.FloatData.Count + t.DoubleData.Count > 1000);
        // And back: the same elements, bit for bit.
        using var back = OnnxSharpModels.ToNormFold(sharp);
        using var plain = new OnnxModel(NormFold.Onnx.Proto.ModelProto.Parser.ParseFrom(File.ReadAllBytes(path)));
        foreach (var (t, p) in back.Proto.Graph.Initializer.Zip(plain.Proto.Graph.Initializer))
            Assert.Equal(plain.ReadDoubles(p), back.ReadDoubles(t));
    }

    [Theory]
    [MemberData(nameof(TypedModels))]
    public void Folding_a_float_or_double_data_model_through_the_adapter_keeps_untouched_weights_in_their_field(string which)
    {
        string path = TypedDataViewTests.Write(which);
        var (folded, result) = OnnxSharpModels.Fold(ReadWithOnnxSharp(path));

        var kept = folded.Graph.Initializer.Single(t => t.Name == (which == "float" ? "w2" : "B2"));
        var (_, bits) = Elements(ReadWithOnnxSharp(path).Graph.Initializer.Single(t => t.Name == kept.Name));
        Assert.Equal(which + "_data", Elements(kept).Field);
        Assert.Equal(bits, Elements(kept).Bits);
        using var original = OnnxModel.Load(path);
        using var back = OnnxSharpModels.ToNormFold(folded);
        AssertFoldPasses(original, back, result);
    }

    [Fact]
    public void Weights_a_fold_computes_only_when_saving_are_computed_for_OnnxSharp()
    {
        // Folded with deferred weight arithmetic (as FoldFile and the CLI do): the results exist only when written.
        string path = TypedDataViewTests.Write("float");
        using var model = OnnxModel.Load(path);
        var result = Folding.Fold(model, new PipelineOptions { DeferWeightArithmetic = true });
        Assert.Equal(2, result.Log.Count(Outcome.Folded));

        var sharp = OnnxSharpModels.ToOnnxSharp(model);

        using var original = OnnxModel.Load(path);
        using var back = OnnxSharpModels.ToNormFold(sharp);
        AssertFoldPasses(original, back, result);
    }
}
