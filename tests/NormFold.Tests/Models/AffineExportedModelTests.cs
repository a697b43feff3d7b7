using NormFold.Onnx;
using NormFold.Rewriting;
using NormFold.Verification;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Models;

/// <summary>
/// Real torch exports with affine ops next to linear ops (tests/models/export.py, AffineStem): input normalisation
/// (x − mean) / std before the stem Conv, a Conv followed by `* 0.5 + 1`, a Linear followed by `x * γ + β`. Folds are
/// equivalent in ORT, bit-identical in the weight audit and match torch's own output; refusals name their reason.
/// </summary>
public class AffineExportedModelTests
{
    static (OnnxModel Original, OnnxModel Folded, FoldResult Result) FoldExport(string name)
    {
        var original = OnnxModel.Load(Path.Combine(ModelsDir, name + ".onnx"));
        var (folded, r) = Fold(original);
        AssertEquivalent(original, folded, shapes: new Dictionary<string, long[]> { ["input"] = [3, 3, 16, 16] });
        AssertAuditPasses(original, folded, r);
        var input = Npy.Read(Path.Combine(ModelsDir, name + ".input.npy"), "input");
        var reference = Npy.Read(Path.Combine(ModelsDir, name + ".output.npy"), "output");
        using var runner = Runner(folded);
        var c = Comparator.Compare(reference, runner.Run([input]).Single());
        Assert.True(c.Passed, $"against torch: max abs {c.MaxAbs} vs atol {c.Tolerance.Atol}");
        return (original, folded, r);
    }

    static Decision For(FoldResult r, string anchor) => r.Log.Decisions.Single(d => d.Anchor == anchor);

    /// <summary>ResNet-style stem (3×3, pad 1): the normalisation's shift would meet the zero padding, so it stays,
    /// refused as PaddedConvolution naming the pads; `* 0.5 + 1` folds into the Conv, `* γ + β` into the Gemm.</summary>
    [Fact]
    public void Padded_stem_keeps_the_normalisation_and_folds_the_rest()
    {
        var (original, folded, r) = FoldExport("affine_stem_padded");
        var sub = For(r, "/Sub");
        Assert.Equal(Outcome.Left, sub.Outcome);
        Assert.Equal(SkipReason.PaddedConvolution, sub.Reason);
        Assert.Contains("pads=[1,1,1,1]", sub.Detail);
        Assert.Equal(("AffineIntoConv", "Conv '/conv/Conv'"), (For(r, "/Mul").Rule, For(r, "/Mul").Target));
        Assert.Equal(("AffineIntoGemm", "Gemm '/fc/Gemm'"), (For(r, "/Mul_1").Rule, For(r, "/Mul_1").Target));
        Assert.Equal(15, original.Proto.Graph.Node.Count);
        Assert.Equal(["Sub", "Div", "Conv", "Relu", "Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm"],
            folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    /// <summary>ConvNeXt-style patchify stem (4×4 stride 4, no padding) with a BN: the BN folds backward and the
    /// normalisation forward into the same Conv, composed and rounded once (the forward fold's records compute the stem
    /// weight from the original and replace the BN fold's); nothing affine is left.</summary>
    [Fact]
    public void Patchify_stem_folds_everything_into_its_neighbours()
    {
        var (_, folded, r) = FoldExport("affine_stem_patchify");
        Assert.All(r.Log.Decisions, d => Assert.Equal(Outcome.Folded, d.Outcome));
        Assert.Equal(("AffineForwardIntoConv", "Conv '/stem/Conv'"), (For(r, "/Sub").Rule, For(r, "/Sub").Target));
        var bn = For(r, "/bn/BatchNormalization");
        Assert.Equal(("BatchNormIntoConv", "Conv '/stem/Conv'"), (bn.Rule, bn.Target));
        // The BN folds first (fold phase), the normalisation after it (forward phase), from the original weight.
        var weight = For(r, "/Sub").Weights.OfType<ScaledWeight>().Single();
        Assert.Equal("stem.weight", weight.Source);
        Assert.Equal(bn.Weights.OfType<ScaledWeight>().Single().Result, weight.Replaces);
        Assert.Equal(["Conv", "Relu", "Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }
}
