using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting;

public class IntoGemmTests
{
    const long M = 3, K = 5, N = 4;

    /// <summary>Gemm(A, B, C?) → BN with C of the given shape (null: absent).</summary>
    static GraphBuilder GemmBn(bool transA, bool transB, float alpha, float beta, long[]? cShape, int type = F32, long opset = 13)
    {
        var g = new GraphBuilder(opset);
        g.Input("a", type, transA ? [K, M] : [M, K]);
        g.Init("b", type, transB ? [N, K] : [K, N]);
        string[] inputs = cShape is null ? ["a", "b"] : ["a", "b", g.Init("c", type, cShape)];
        g.Node("Gemm", inputs, "g", "gemm", ("transA", transA ? 1L : 0L), ("transB", transB ? 1L : 0L), ("alpha", alpha), ("beta", beta));
        g.Bn("g", N, "y", type);
        g.Output("y", type, null);
        return g;
    }

    public static IEnumerable<object?[]> Cases()
    {
        long[]?[] shapes = [null, [], [1], [N], [1, N], [M, 1], [M, N]];
        foreach (var c in shapes)
            yield return [false, false, 1f, 1f, c];
        yield return [true, false, 0.5f, 2f, new long[] { N }];
        yield return [false, true, 1.5f, -0.5f, new long[] { M, N }];
        yield return [true, true, -2f, 0.25f, new long[] { 1, N }];
        yield return [false, true, 1f, 0f, new long[] { N }];
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Folds_gemm_with_any_transposition_alpha_beta_and_c(bool transA, bool transB, float alpha, float beta, long[]? c)
    {
        var (folded, r) = FoldAndCheck(GemmBn(transA, transB, alpha, beta, c).Build());
        Assert.Equal("BatchNormIntoGemm", Single(r).Rule);
        var gemm = folded.Proto.Graph.Node.Single();
        Assert.Equal(3, gemm.Input.Count);
        float newBeta = NormFold.Graph.Attributes.Float(gemm, "beta", 1f);
        Assert.Equal(1f, newBeta);
    }

    [Fact]
    public void Folds_double_gemm()
    {
        FoldAndCheck(GemmBn(false, true, 1f, 1f, [N], F64).Build());
    }

    [Fact]
    public void Folds_float16_gemm()
    {
        FoldAndCheck(GemmBn(false, true, 1f, 1f, [N], F16).Build());
    }

    [Fact]
    public void Refuses_gemm_before_opset_7()
    {
        var g = new GraphBuilder(6);
        g.Input("a", F32, [M, K]);
        g.Init("b", F32, [K, N]);
        g.Init("c", F32, [M, N]);
        g.Node("Gemm", ["a", "b", "c"], "g", "gemm");
        var p = g.BnParams("bn", N);
        g.Node("BatchNormalization", ["g", .. p], "y", "bn", ("is_test", 1L));
        g.Output("y");
        var (_, r) = Fold(g.Build(), new PipelineOptions { KeepStandaloneBatchNorm = true });
        var d = AssertLeft(r, SkipReason.UnsupportedOpsetVersion);
        Assert.Contains("Gemm-6", d.Detail);
    }

    [Fact]
    public void Refuses_a_c_that_does_not_broadcast_along_the_channels()
    {
        var g = GemmBn(false, false, 1, 1, [M, 2]);
        var (_, r) = Fold(g.Build(), new PipelineOptions { KeepStandaloneBatchNorm = true });
        var d = AssertLeft(r, SkipReason.ShapeMismatch);
        Assert.Contains("does not broadcast", d.Detail);
    }
}
