using NormFold.Onnx;
using NormFold.Rewriting;
using NormFold.Tests.Builders;
using NormFold.Tests.Cli;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.Rewriting.Affine.AffineTestGraphs;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting.Affine;

/// <summary>An affine op inside an activation x·f(x + k) is left as PartOfActivation, which "all folded" does not count;
/// any other refusal of an affine candidate still counts.</summary>
[Collection("Console")]
public class PartOfActivationTests
{
    /// <summary>paddle2onnx's HardSwish after a Conv + BN (PP-OCR): c = Conv → BN; c·clip(c + 3, 0, 6) / 6 → Conv.</summary>
    static GraphBuilder PaddleHardSwish()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [1, 4, 6, 6]);
        g.Node("Conv", ["x", g.Init("w1", F32, [6, 4, 3, 3])], "c", "conv1", ("pads", new long[] { 1, 1, 1, 1 }));
        g.Bn("c", 6, "bn", name: "batch_norm_0");
        g.Node("Add", ["bn", g.Init("three", F32, [], [3])], "a", "p2o.Add.1");
        g.Node("Clip", ["a", g.Init("lo", F32, [], [0]), g.Init("hi", F32, [], [6])], "cl", "p2o.Clip.0");
        g.Node("Mul", ["bn", "cl"], "m", "p2o.Mul.0");
        g.Node("Div", ["m", g.Init("six", F32, [], [6])], "hs", "p2o.Div.0");
        g.Node("Conv", ["hs", g.Init("w2", F32, [5, 6, 1, 1])], "y", "conv2");
        g.Output("y", F32, [1, 5, 6, 6]);
        return g;
    }

    static void AssertNothingCounted(FoldResult r) =>
        Assert.DoesNotContain(r.Log.Decisions, d => SkipReasons.IsFoldCandidate(d) && d.Outcome != Outcome.Folded);

    [Fact]
    public void Paddle_hardswish_add_after_a_folded_bn_is_part_of_an_activation_and_not_counted()
    {
        var (folded, r) = FoldChecked(PaddleHardSwish().Build());
        Assert.Equal(Outcome.Folded, r.Log.Decisions.Single(d => d.Anchor == "batch_norm_0").Outcome);
        var add = AssertLeft(r, SkipReason.PartOfActivation, "p2o.Add.1");
        Assert.Contains("Mul 'p2o.Mul.0'", add.Detail);
        Assert.Contains("through Clip 'p2o.Clip.0'", add.Detail);
        Assert.DoesNotContain("forward phase", add.Detail); // every affine rule says the same
        Assert.Equal(Outcome.Folded, r.Log.Decisions.Single(d => d.Anchor == "p2o.Div.0").Outcome); // / 6 into conv2
        Assert.Equal(0, Count(folded, "BatchNormalization"));
        AssertNothingCounted(r);
    }

    /// <summary>Swish x·σ(βx) and GELU x·(1 + erf(x/√2))·0.5 after a Conv: the scale by β and by 1/√2 are part of them.</summary>
    [Theory]
    [InlineData("swish")]
    [InlineData("gelu")]
    public void Swish_and_gelu_scales_are_part_of_an_activation(string form)
    {
        var g = Conv(opset: 13);
        if (form == "swish")
        {
            g.Node("Mul", ["c", g.Init("beta", F32, [], [1.702])], "s", "scale");
            g.Node("Sigmoid", ["s"], "sg", "sigmoid");
            g.Node("Mul", ["c", "sg"], "y", "swish");
        }
        else
        {
            g.Node("Div", ["c", g.Init("sqrt2", F32, [], [Math.Sqrt(2)])], "s", "scale");
            g.Node("Erf", ["s"], "e", "erf");
            g.Node("Add", ["e", g.Init("one", F32, [], [1])], "e1", "plus1");
            g.Node("Mul", ["c", "e1"], "p", "gelu");
            g.Node("Mul", ["p", g.Init("half", F32, [], [0.5])], "y", "half");
        }
        g.Output("y", F32, null);
        var (_, r) = FoldChecked(g.Build());
        Assert.Contains(form == "swish" ? "Mul 'swish'" : "Mul 'gelu'", AssertLeft(r, SkipReason.PartOfActivation, "scale").Detail);
        AssertNothingCounted(r);
    }

    /// <summary>A per-channel op whose result reaches the other reader of x only through a Conv (a residual) is no activation:
    /// it is left for another reason, and counted.</summary>
    [Fact]
    public void A_residual_through_a_conv_is_a_candidate_and_counted()
    {
        var g = Conv(opset: 13);
        Op(g, "Add", "c", [6, 1, 1], "a");
        g.Node("Conv", ["a", g.Init("w2", F32, [6, 6, 3, 3])], "c2", "conv2", ("pads", new long[] { 1, 1, 1, 1 }));
        g.Node("Add", ["c", "c2"], "y", "residual");
        g.Output("y", F32, null);
        var (_, r) = FoldChecked(g.Build());
        var d = r.Log.Decisions.Single(x => x.Anchor == "a_node");
        Assert.Equal(Outcome.Left, d.Outcome);
        Assert.NotEqual(SkipReason.PartOfActivation, d.Reason);
        Assert.True(SkipReasons.IsFoldCandidate(d));
    }

    /// <summary>torch GroupNorm(affine=False)'s Mul(ones) → Add(zeros): removed (they change no value), nothing left to fold.</summary>
    [Fact]
    public void Ops_that_change_no_value_once_removed_are_not_counted()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [2, 4, 3, 3]);
        g.Node("Conv", ["x", g.Init("w", F32, [4, 4, 1, 1])], "c", "conv");
        g.Node("Relu", ["c"], "r", "relu");
        g.Node("Mul", ["r", g.Init("ones", F32, [4, 1, 1], [1, 1, 1, 1])], "m", "mul");
        g.Node("Add", ["m", g.Init("zeros", F32, [4, 1, 1], [0, 0, 0, 0])], "a", "add");
        g.Node("Relu", ["a"], "y", "relu2");
        g.Output("y", F32, null);
        var (folded, r) = FoldChecked(g.Build());
        var d = r.Log.Decisions.Single(x => x.Anchor == "mul");
        Assert.Equal(Outcome.Replaced, d.Outcome);
        Assert.StartsWith("removed Mul → Add", d.Detail);
        Assert.Equal(0, Count(folded, "Mul") + Count(folded, "Add"));
        AssertNothingCounted(r);
        Assert.Equal(0, CliRunner.Run("inspect", Save(g), "--require-all-folded", "-q").Code);
    }

    /// <summary>Attention's scale: MatMul(Q, Kᵀ) → Div(√d) → Softmax. A MatMul of two computed tensors takes no constant
    /// in, so the Div is no candidate (no decision); with a constant B it is one (and folds).</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_scale_after_a_matmul_of_two_activations_is_no_candidate(bool constantB)
    {
        var g = new GraphBuilder(13);
        g.Input("q", F32, [2, 4, 8]);
        string k = constantB ? g.Init("k", F32, [8, 4]) : "kt";
        if (!constantB)
        {
            g.Input("k", F32, [2, 4, 8]);
            g.Node("Transpose", ["k"], "kt", "transpose", ("perm", new long[] { 0, 2, 1 }));
        }
        g.Node("MatMul", ["q", k], "s", "qk");
        g.Node("Div", ["s", g.Init("sqrt_d", F32, [], [Math.Sqrt(8)])], "sd", "scale");
        g.Node("Softmax", ["sd"], "y", "softmax", ("axis", -1L));
        g.Output("y", F32, null);
        var (_, r) = FoldChecked(g.Build());
        if (constantB) Assert.Equal(Outcome.Folded, r.Log.Decisions.Single(d => d.Anchor == "scale").Outcome);
        else Assert.DoesNotContain(r.Log.Decisions, d => d.Anchor == "scale");
    }

    /// <summary>ViT's MLP: LayerNorm's γ/β fold forward into the MatMul, whose new bias Add sits before the original one
    /// (read twice, by GELU): that Add is the fold's result, no candidate (vit_small failed the gate on it).</summary>
    [Fact]
    public void The_bias_add_a_forward_fold_made_is_no_candidate()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [2, 3, 4]);
        g.Node("Relu", ["x"], "r", "relu");
        Op(g, "Mul", "r", [4], "gamma");
        Op(g, "Add", "gamma", [4], "beta", -0.5, 0.5);
        g.Node("MatMul", ["beta", g.Init("w", F32, [4, 5])], "mm", "matmul");
        g.Node("Add", ["mm", g.Init("b", F32, [5])], "h", "bias");
        g.Node("Sigmoid", ["h"], "s", "sigmoid");
        g.Node("Mul", ["h", "s"], "y", "swish");
        g.Output("y", F32, null);
        var (_, r) = FoldChecked(g.Build());
        Assert.Equal(Outcome.Folded, r.Log.Decisions.Single(d => d.Anchor == "gamma_node").Outcome);
        AssertNothingCounted(r);
    }

    static string Save(GraphBuilder g)
    {
        string path = Path.Combine(TempDir(), "m.onnx");
        File.WriteAllBytes(path, Google.Protobuf.MessageExtensions.ToByteArray(g.Proto));
        return path;
    }

    [Fact]
    public void Require_all_folded_passes_on_hardswish_and_still_fails_on_a_blocked_candidate()
    {
        string model = Save(PaddleHardSwish());
        string output = Path.Combine(TempDir(), "out.onnx");
        Assert.Equal(0, CliRunner.Run("inspect", model, "--require-all-folded", "-q").Code);
        Assert.Equal(0, CliRunner.Run("fold", model, "-o", output, "--check", "--require-all-folded", "-q").Code);
        Assert.True(File.Exists(output));

        // The same model with a per-channel Mul on conv2's output, which is a graph output: that one is counted.
        var g = PaddleHardSwish();
        Op(g, "Mul", "y", [5, 1, 1], "blocked");
        g.Output("blocked", F32, null);
        var (code, _, stderr) = CliRunner.Run("inspect", Save(g), "--require-all-folded", "-q");
        Assert.Equal(NormFold.Cli.ExitCodes.GateFailed, code);
        Assert.Contains("Mul 'blocked_node'", stderr);
        Assert.Contains("ProducerOutputIsGraphOutput", stderr);
        Assert.DoesNotContain("p2o.Add.1", stderr);
    }

    /// <summary>The JUnit fold case counts what the gate counts: the BN, the / 6 and the blocked Mul (1 of 3), not the Add
    /// inside the HardSwish (it said 1 of 4).</summary>
    [Fact]
    public void Junit_counts_the_candidates_the_gate_counts()
    {
        var g = PaddleHardSwish();
        Op(g, "Mul", "y", [5, 1, 1], "blocked");
        g.Output("blocked", F32, null);
        string junit = Path.Combine(TempDir(), "j.xml");
        Assert.Equal(NormFold.Cli.ExitCodes.GateFailed, CliRunner.Run("inspect", Save(g), "--require-all-folded", "--junit", junit, "-q").Code);
        var failure = System.Xml.Linq.XDocument.Load(junit).Descendants("testcase").Single(c => (string?)c.Attribute("name") == "fold").Element("failure")!;
        Assert.StartsWith("1 of 3 candidate(s) not folded", (string?)failure.Attribute("message"));
        var (_, r) = Fold(g.Build());
        Assert.Equal(3, r.Log.Decisions.Count(SkipReasons.IsFoldCandidate));
        Assert.Equal(4, r.Log.Decisions.Count);
    }
}
