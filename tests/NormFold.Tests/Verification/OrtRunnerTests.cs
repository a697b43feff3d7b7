using NormFold.Onnx;
using NormFold.Verification;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Verification;

public class OrtRunnerTests
{
    [Fact]
    public void Outputs_left_in_ORTs_buffers_equal_the_copied_ones_and_are_unreadable_after_disposal()
    {
        using var model = OnnxModel.Load(Path.Combine(ModelsDir, "resnet_tiny.onnx"));
        using var runner = Runner(model);
        var inputs = new InputGenerator(runner.Inputs, 3, new Dictionary<string, long[]>()).Generate(0);
        var copied = runner.Run(inputs);
        var inPlace = runner.RunInPlace(inputs);
        Assert.Equal(copied.Select(t => t.Name), inPlace.Select(t => t.Name));
        for (int i = 0; i < copied.Count; i++)
        {
            Assert.Equal(copied[i].Shape, inPlace[i].Shape);
            Assert.Equal(copied[i].Data.ToArray(), inPlace[i].Data.ToArray());
        }
        Assert.True(copied[0].Data.Length > 0);
        inPlace.Dispose();
        Assert.Throws<ObjectDisposedException>(() => inPlace[0].Data.Span.Length);
        Assert.True(copied[0].Data.Span.Length > 0); // copies stay readable
    }
}
