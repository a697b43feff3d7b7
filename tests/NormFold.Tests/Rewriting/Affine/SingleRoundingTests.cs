using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Rewriting;
using NormFold.Tensors;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.Rewriting.Affine.AffineTestGraphs;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting.Affine;

/// <summary>
/// Several folds into one linear op (Conv → BN → BN, X → Mul → Conv → BN, BN → BN → Conv, Gemm → BN → Mul → BN) give
/// the bits of ONE rounding of the composed map, computed in double from the original weights: float16 makes the
/// difference with rounding after each fold visible (asserted, so each test can fail). The weight audit replays the
/// composed records bit for bit; outputs are equivalent in ORT.
/// </summary>
public class SingleRoundingTests
{
    /// <summary>γ / sqrt(var + ε) and β − mean·s, in double from the stored parameters.</summary>
    static (double[] S, double[] T) Bn(OnnxModel m, string prefix, float epsilon = 1e-5f)
    {
        double[] V(string n) => m.ReadDoubles(m.Proto.Graph.Initializer.Single(t => t.Name == prefix + n));
        double[] gamma = V(".gamma"), beta = V(".beta"), mean = V(".mean"), variance = V(".var");
        var s = gamma.Select((g, c) => g / Math.Sqrt(variance[c] + epsilon)).ToArray();
        return (s, beta.Select((b, c) => b - mean[c] * s[c]).ToArray());
    }

    static double[] Init(OnnxModel m, string name) => m.ReadDoubles(m.Proto.Graph.Initializer.Single(t => t.Name == name));
    static ushort[] Bits(double[] v) => v.Select(x => BitConverter.HalfToUInt16Bits(Rounding.ToHalf(x))).ToArray();
    static ushort[] Bits(OnnxModel m, string name) => Bits(Init(m, name));
    static double H(double x) => Rounding.FromHalf(Rounding.ToHalf(x));

    /// <summary>Folds, asserts ORT equivalence and the audit; returns the folded model and its single linear node.</summary>
    static (OnnxModel Folded, NodeProto Linear, FoldResult Result) FoldOne(OnnxModel original, string op)
    {
        var (folded, r) = FoldAndCheck(original);
        Assert.All(r.Log.Decisions, d => Assert.Equal(Outcome.Folded, d.Outcome));
        return (folded, Assert.Single(folded.Proto.Graph.Node, n => n.OpType == op), r);
    }

    [Fact]
    public void Conv_then_two_BNs_round_once()
    {
        var g = Conv(F16, bias: false);
        g.Bn("c", 6, "b1", F16);
        g.Bn("b1", 6, "y", F16);
        g.Output("y", F16, null);
        var original = g.Build();
        var (s1, t1) = Bn(original, "b1");
        var (s2, t2) = Bn(original, "y");
        var w = Init(original, "w");
        int per = w.Length / 6;
        var once = w.Select((v, i) => v * (s2[i / per] * s1[i / per])).ToArray();
        var twice = w.Select((v, i) => H(H(v * s1[i / per]) * s2[i / per])).ToArray();
        Assert.NotEqual(Bits(once), Bits(twice)); // the values make the two differ

        var (folded, conv, r) = FoldOne(original, "Conv");
        Assert.Equal(2, r.Log.Decisions.Count);
        Assert.Equal(Bits(once), Bits(folded, conv.Input[1]));
        Assert.Equal(Bits(s2.Select((s, c) => s * t1[c] + t2[c]).ToArray()), Bits(folded, conv.Input[2]));
        // The second decision's records compute from the original weight and replace the first's tensors.
        var last = r.Log.Decisions[^1].Weights;
        Assert.Equal("w", Assert.IsType<ScaledWeight>(last[0]).Source);
        Assert.Equal(r.Log.Decisions[0].Weights[0].Result, last[0].Replaces);
    }

    [Fact]
    public void Conv_BN_Mul_BN_Add_rounds_once()
    {
        var g = Conv(F16);
        g.Bn("c", 6, "b1", F16);
        Op(g, "Mul", "b1", [6, 1, 1], "m", type: F16);
        g.Bn("m", 6, "b2", F16);
        Op(g, "Add", "b2", [6, 1, 1], "y", type: F16);
        g.Output("y", F16, null);
        var original = g.Build();
        var (s1, t1) = Bn(original, "b1");
        var (s2, t2) = Bn(original, "b2");
        double[] k = Init(original, "m.c"), a = Init(original, "y.c"), w = Init(original, "w"), b = Init(original, "b");
        // Composed in order: BN1, Mul k, BN2, Add a.
        var s = new double[6];
        var t = new double[6];
        for (int c = 0; c < 6; c++)
        {
            double sc = s1[c], tc = t1[c];
            (sc, tc) = (k[c] * sc, k[c] * tc);
            (sc, tc) = (s2[c] * sc, s2[c] * tc + t2[c]);
            (s[c], t[c]) = (sc, tc + a[c]);
        }
        int per = w.Length / 6;
        var (folded, conv, _) = FoldOne(original, "Conv");
        Assert.Equal(Bits(w.Select((v, i) => v * s[i / per]).ToArray()), Bits(folded, conv.Input[1]));
        Assert.Equal(Bits(b.Select((v, c) => s[c] * 1.0 * v + t[c]).ToArray()), Bits(folded, conv.Input[2]));
    }

    /// <summary>Backward (BN, fold phase) then forward (Mul, forward phase) into one Conv: W'[m, k] = W·s_bn[m]·s_mul[k].</summary>
    [Fact]
    public void Mul_before_and_BN_after_one_conv_round_once()
    {
        var g = new GraphBuilder(15);
        g.Input("x", F16, [2, 4, 5, 5]);
        Op(g, "Mul", "x", [4, 1, 1], "xm", type: F16);
        g.Init("w", F16, [6, 4, 3, 3]);
        g.Node("Conv", ["xm", "w"], "c", "conv");
        g.Bn("c", 6, "y", F16);
        g.Output("y", F16, null);
        var original = g.Build();
        var (s, t) = Bn(original, "y");
        double[] k = Init(original, "xm.c"), w = Init(original, "w");
        var once = w.Select((v, i) => v * (s[i / 36] * k[i / 9 % 4])).ToArray();
        var twice = w.Select((v, i) => H(H(v * s[i / 36]) * k[i / 9 % 4])).ToArray();
        Assert.NotEqual(Bits(once), Bits(twice));
        var (folded, conv, r) = FoldOne(original, "Conv");
        Assert.Equal(["AffineForwardIntoConv", "BatchNormIntoConv"], r.Log.Decisions.Select(d => d.Rule).Order());
        Assert.Equal(Bits(once), Bits(folded, conv.Input[1]));
        Assert.Equal(Bits(t), Bits(folded, conv.Input[2]));
        // The report says what the weight's factors are: one per (output, input) channel block, not per row.
        var scaled = r.Log.Decisions.SelectMany(d => Reports.ReportBuilder.Entry(d).Weights).Single(e => e.Result == conv.Input[1]);
        Assert.Equal("outputs rows × inputs convInputs(outputChannels 6, inputsPerGroup 4, groups 1): one factor per block of elements sharing both channels", scaled.Layout);
        Assert.Equal(24, scaled.Channels);
    }

    /// <summary>Two pieces folded forward one after the other (the BN nearest the Conv first): W' = W·(s2·s1)[k],
    /// b' = Σ W·(s2·t1 + t2)[k].</summary>
    [Fact]
    public void Two_BNs_folded_forward_into_an_unpadded_conv_round_once()
    {
        var g = new GraphBuilder(15);
        g.Input("x", F16, [2, 4, 5, 5]);
        g.Bn("x", 4, "b1", F16);
        g.Bn("b1", 4, "b2", F16);
        g.Init("w", F16, [6, 4, 3, 3]);
        g.Node("Conv", ["b2", "w"], "y", "conv");
        g.Output("y", F16, null);
        var original = g.Build();
        var (s1, t1) = Bn(original, "b1");
        var (s2, t2) = Bn(original, "b2");
        var w = Init(original, "w");
        var once = w.Select((v, i) => v * (1.0 * s2[i / 9 % 4] * s1[i / 9 % 4])).ToArray();
        var twice = w.Select((v, i) => H(H(v * s2[i / 9 % 4]) * s1[i / 9 % 4])).ToArray();
        Assert.NotEqual(Bits(once), Bits(twice));
        var (folded, conv, _) = FoldOne(original, "Conv");
        Assert.Equal(Bits(once), Bits(folded, conv.Input[1]));
        var shift = new double[4];
        for (int k = 0; k < 4; k++) shift[k] = 0.0 + 1.0 * (1.0 * s2[k] * t1[k]) + 1.0 * (1.0 * t2[k]);
        var bias = new double[6];
        for (int i = 0; i < w.Length; i++) bias[i / 36] += w[i] * shift[i / 9 % 4];
        Assert.Equal(Bits(bias.Select(v => 1.0 * v + 0.0).ToArray()), Bits(folded, conv.Input[2]));
    }

    [Fact]
    public void Gemm_then_two_BNs_round_once()
    {
        var g = new GraphBuilder(15);
        g.Input("a", F16, [3, 5]);
        g.Init("B", F16, [5, 4]);
        g.Init("C", F16, [4]);
        g.Node("Gemm", ["a", "B", "C"], "g", "gemm", ("beta", 0.75f));
        g.Bn("g", 4, "b1", F16);
        g.Bn("b1", 4, "y", F16);
        g.Output("y", F16, null);
        var original = g.Build();
        var (s1, t1) = Bn(original, "b1");
        var (s2, t2) = Bn(original, "y");
        double[] B = Init(original, "B"), C = Init(original, "C");
        var once = B.Select((v, i) => v * (s2[i % 4] * s1[i % 4])).ToArray();
        var (folded, gemm, _) = FoldOne(original, "Gemm");
        Assert.Equal(Bits(once), Bits(folded, gemm.Input[1]));
        Assert.Equal(Bits(C.Select((v, n) => s2[n] * s1[n] * 0.75 * v + (s2[n] * t1[n] + t2[n])).ToArray()), Bits(folded, gemm.Input[2]));
    }

    /// <summary>MatMul → BN → BN → Mul (rank 2): the first BN makes MatMul → Add(b); then Add → BN → Mul folds with
    /// that Add taken as the MatMul's bias (the earlier fold's unrounded state), not as a constant to compose.</summary>
    [Fact]
    public void MatMul_then_two_BNs_and_a_mul_round_once()
    {
        var g = new GraphBuilder(15);
        g.Input("a", F16, [3, 5]);
        g.Init("B", F16, [5, 4]);
        g.Node("MatMul", ["a", "B"], "mm", "matmul");
        g.Bn("mm", 4, "b1", F16);
        g.Bn("b1", 4, "b2", F16);
        Op(g, "Mul", "b2", [4], "y", type: F16);
        g.Output("y", F16, null);
        var original = g.Build();
        var (s1, t1) = Bn(original, "b1");
        var (s2, t2) = Bn(original, "b2");
        double[] k = Init(original, "y.c"), B = Init(original, "B");
        var s = s1.Select((v, n) => k[n] * (s2[n] * v)).ToArray();
        var t = t1.Select((v, n) => k[n] * (s2[n] * v + t2[n])).ToArray();
        var twice = t1.Select((v, n) => H(k[n] * H(s2[n] * H(v) + t2[n]))).ToArray();
        Assert.NotEqual(Bits(t), Bits(twice));
        var (folded, matmul, r) = FoldOne(original, "MatMul");
        Assert.Equal(["BatchNormIntoMatMul", "AffineIntoMatMul"], r.Log.Decisions.Select(d => d.Rule));
        Assert.Equal(Bits(B.Select((v, i) => v * s[i % 4]).ToArray()), Bits(folded, matmul.Input[1]));
        var add = Assert.Single(folded.Proto.Graph.Node, n => n.OpType == "Add");
        Assert.Equal(Bits(t), Bits(folded, add.Input[1]));
    }

    /// <summary>X → Mul/Sub → MatMul → BN (rank 2): the BN folds first (MatMul → Add(b)), then the Mul or Sub forward
    /// into the same MatMul, composed with it (B' = B·s_bn[n]·k[k]); a shift goes into that Add, no new node.</summary>
    [Theory]
    [InlineData("Mul")]
    [InlineData("Sub")]
    public void An_op_before_a_matmul_whose_bn_folded_rounds_once(string op)
    {
        var g = new GraphBuilder(15);
        g.Input("a", F16, [3, 5]);
        Op(g, op, "a", [5], "x", type: F16);
        g.Init("B", F16, [5, 4]);
        g.Node("MatMul", ["x", "B"], "mm", "matmul");
        g.Bn("mm", 4, "y", F16);
        g.Output("y", F16, null);
        var original = g.Build();
        var (s, t) = Bn(original, "y");
        double[] k = Init(original, "x.c"), B = Init(original, "B");
        var (folded, matmul, r) = FoldOne(original, "MatMul");
        Assert.Equal(["AffineForwardIntoMatMul", "BatchNormIntoMatMul"], r.Log.Decisions.Select(d => d.Rule).Order());
        var add = Assert.Single(folded.Proto.Graph.Node, n => n.OpType == "Add");
        Assert.Equal(2, folded.Proto.Graph.Node.Count);
        if (op == "Mul")
        {
            var once = B.Select((v, i) => v * (s[i % 4] * (1.0 * k[i / 4]))).ToArray();
            var twice = B.Select((v, i) => H(H(v * s[i % 4]) * k[i / 4])).ToArray();
            Assert.NotEqual(Bits(once), Bits(twice));
            Assert.Equal(Bits(once), Bits(folded, matmul.Input[1]));
            Assert.Equal(Bits(t), Bits(folded, add.Input[1]));
        }
        else
        {
            var forward = new double[4];
            for (int i = 0; i < B.Length; i++) forward[i % 4] += B[i] * (0.0 + 1.0 * (1.0 * -k[i / 4]));
            Assert.Equal(Bits(B.Select((v, i) => v * s[i % 4]).ToArray()), Bits(folded, matmul.Input[1]));
            Assert.Equal(Bits(forward.Select((f, n) => s[n] * f + t[n]).ToArray()), Bits(folded, add.Input[1]));
        }
    }

    /// <summary>ConvTranspose (groups 2) → BN → Mul → BN and Gemm (transB) → BN → BN: the last fold's weight record
    /// computes from the original weight with the composed factors (one rounding) and replaces the first fold's.</summary>
    [Theory]
    [InlineData("ConvTranspose")]
    [InlineData("Gemm")]
    public void Later_folds_compute_from_the_original_weight(string op)
    {
        var g = new GraphBuilder(15);
        if (op == "Gemm")
        {
            g.Input("a", F16, [3, 5]);
            g.Init("w", F16, [6, 5]);
            g.Node("Gemm", ["a", "w"], "p", "lin", ("transB", 1L), ("alpha", 0.5f));
        }
        else
        {
            g.Input("a", F16, [2, 4, 5, 5]);
            g.Init("w", F16, [4, 3, 3, 3]);
            g.Node("ConvTranspose", ["a", "w", g.Init("b", F16, [6])], "p", "lin", ("group", 2L));
        }
        g.Bn("p", 6, "b1", F16);
        string next = "b1";
        if (op == "ConvTranspose") next = Op(g, "Mul", "b1", [6, 1, 1], "m", type: F16);
        g.Bn(next, 6, "y", F16);
        g.Output("y", F16, null);
        var (_, _, r) = FoldOne(g.Build(), op);
        Assert.Equal(2, r.Log.Decisions.Count);
        var first = r.Log.Decisions[0].Weights.OfType<ScaledWeight>().Single();
        var last = r.Log.Decisions[1].Weights.OfType<ScaledWeight>().Single();
        Assert.Equal(("w", "w"), (first.Source, last.Source));
        Assert.Equal(first.Result, last.Replaces);
    }
}
