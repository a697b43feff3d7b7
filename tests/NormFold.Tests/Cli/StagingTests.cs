using NormFold.Cli.Commands;
using NormFold.Onnx;
using NormFold.Verification;

namespace NormFold.Tests.Cli;

/// <summary>fold --check: a rewritten model ONNX Runtime rejects is NormFold's fault (internal error), not bad input.</summary>
public class StagingTests
{
    [Fact]
    public void A_written_model_ORT_rejects_is_an_internal_error_and_nothing_is_written()
    {
        string input = Path.Combine(TestSupport.ModelsDir, "resnet_tiny.onnx");
        using var broken = OnnxModel.Load(input);
        // What a buggy rewrite could leave: a Conv reading a weight of the wrong rank.
        var conv = broken.Proto.Graph.Node.First(n => n.OpType == "Conv");
        var w = broken.Proto.Graph.Initializer.First(t => t.Name == conv.Input[1]);
        w.Dims.Clear();
        w.Dims.Add(TensorBytesCount(w));
        string output = Path.Combine(TestSupport.TempDir(), "out.onnx");
        var request = new CheckSettings.Request(new CheckOptions(), [], null, null, false);
        var e = Assert.Throws<InvalidOperationException>(() => Staging.SaveChecked(broken, input, output, new SaveOptions(), request));
        Assert.Contains("the folded model", e.Message);
        Assert.False(NormFold.Cli.Cli.IsInputError(e));
        Assert.False(File.Exists(output));
        Assert.Empty(Directory.GetFileSystemEntries(Path.GetDirectoryName(output)!));
    }

    static long TensorBytesCount(NormFold.Onnx.Proto.TensorProto t) => t.RawData.Length / 4;
}
