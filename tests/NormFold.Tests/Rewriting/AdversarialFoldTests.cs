using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.Rewriting.Affine.AffineTestGraphs;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting;

/// <summary>
/// Adversarial cases for the affine rules (issue 11) and the BN folds around them: broadcasting that changes a shape or
/// a rank, constants on the left, legacy broadcast, padding, groups, transposed weights, subgraphs, shared tensors.
/// Each asserts the correct behaviour: the rewritten model computes what the original computes in ORT (shapes
/// included) and the weight audit replays the log bit for bit; where the fold must not happen, the named reason.
/// </summary>
public class AdversarialFoldTests
{
    /// <summary>Folds; whatever was decided, the outputs agree in ORT and the audit passes; a refusal has a detail.</summary>
    static (OnnxModel Folded, FoldResult Result) FoldSafely(OnnxModel original, PipelineOptions? options = null)
    {
        var (folded, result) = Fold(original, options);
        AssertEquivalent(original, folded);
        AssertAuditPasses(original, folded, result);
        Assert.All(result.Log.Decisions.Where(d => d.Outcome == Outcome.Left), d => Assert.False(string.IsNullOrWhiteSpace(d.Detail)));
        return (folded, result);
    }

    static string[] Ops(OnnxModel m) => m.Proto.Graph.Node.Select(n => n.OpType).ToArray();

    static bool AnyRewrite(FoldResult r) => r.Log.Decisions.Any(d => d.Outcome != Outcome.Left);

    // ---------------------------------------------------------------- backward: shapes and axes

    /// <summary>A [C] constant on an NCHW output broadcasts along W, not the channels (W = C here, so ORT accepts both).</summary>
    [Fact]
    public void A_vector_of_C_values_on_a_4d_conv_output_runs_along_W_and_is_refused()
    {
        var g = new GraphBuilder();
        g.Input("x", F32, [2, 4, 5, 6]);
        g.Init("w", F32, [6, 4, 3, 3]);
        g.Node("Conv", ["x", "w"], "c", "conv", ("pads", new long[] { 1, 1, 1, 1 }));
        Op(g, "Mul", "c", [6], "y");
        g.Output("y", F32, null);
        var (folded, r) = FoldSafely(g.Build());
        Assert.Contains("[6]", AssertLeft(r, SkipReason.ChannelAxisMismatch).Detail);
        Assert.Equal(["Conv", "Mul"], Ops(folded));
    }

    /// <summary>X [N, C, 1, 1] · c [1, C, H, W] is [N, C, H, W]: folding c into the conv would shrink the output.</summary>
    [Theory]
    [InlineData("Mul")]
    [InlineData("Add")]
    public void A_constant_that_widens_the_conv_output_is_refused(string op)
    {
        var g = new GraphBuilder();
        g.Input("x", F32, [2, 4, 3, 3]);
        g.Init("w", F32, [6, 4, 3, 3]);
        g.Init("b", F32, [6]);
        g.Node("Conv", ["x", "w", "b"], "c", "conv");
        Op(g, op, "c", [1, 6, 4, 4], "y");
        g.Output("y", F32, null);
        var (folded, r) = FoldSafely(g.Build());
        Assert.Contains("[1,6,4,4]", AssertLeft(r, SkipReason.ChannelAxisMismatch).Detail);
        Assert.Equal(["Conv", op], Ops(folded));
    }

    /// <summary>A [1] constant of rank 5 after a rank-4 conv output makes it rank 5.</summary>
    [Fact]
    public void A_scalar_like_constant_of_higher_rank_after_a_conv_is_refused()
    {
        var g = Conv();
        Op(g, "Mul", "c", [1, 1, 1, 1, 1], "y");
        g.Output("y", F32, null);
        var (folded, r) = FoldSafely(g.Build());
        AssertLeft(r, SkipReason.ShapeMismatch);
        Assert.Equal(["Conv", "Mul"], Ops(folded));
    }

    /// <summary>c / x is not affine in x: no fold, no merge.</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Constant_divided_by_the_output_is_never_folded(bool thenAdd)
    {
        var g = Conv();
        string c = g.Init("k", F32, [1, 6, 1, 1], 0.5, 1.5);
        g.Node("Div", [c, "c"], thenAdd ? "d" : "y", "div");
        if (thenAdd) Op(g, "Add", "d", [6, 1, 1], "y");
        g.Output("y", F32, null);
        var (folded, _) = FoldSafely(g.Build());
        Assert.Equal(1, Count(folded, "Div"));
        Assert.Equal(thenAdd ? 1 : 0, Count(folded, "Add"));
    }

    /// <summary>c − x then x − c then c·x, all with the constant on the left where the op allows it.</summary>
    [Fact]
    public void Constants_on_the_left_fold_with_the_right_signs()
    {
        var g = Conv();
        string k1 = g.Init("k1", F32, [6, 1, 1], -1, 1);
        g.Node("Sub", [k1, "c"], "a", "sub1");
        string k2 = g.Init("k2", F32, [1, 6, 1, 1], -1, 1);
        g.Node("Mul", [k2, "a"], "p", "mul");
        Op(g, "Sub", "p", [6, 1, 1], "d", -1, 1);
        string k3 = g.Init("k3", F32, [], [0.25]);
        g.Node("Add", [k3, "d"], "y", "add");
        g.Output("y", F32, null);
        var (folded, r) = FoldSafely(g.Build());
        Assert.Equal(Outcome.Folded, Single(r).Outcome);
        Assert.Equal(["Conv"], Ops(folded));
    }

    /// <summary>Dividing by tiny (subnormal) values: the reciprocal alone overflows float, the composed scale does not.</summary>
    [Fact]
    public void Division_by_a_subnormal_followed_by_a_tiny_scale_keeps_the_outputs()
    {
        var g = Conv();
        Op(g, "Div", "c", [6, 1, 1], "d");
        g.SetInit("d.c", F32, [6, 1, 1], Enumerable.Repeat(1e-39, 6).ToArray());
        Op(g, "Mul", "d", [6, 1, 1], "y");
        g.SetInit("y.c", F32, [6, 1, 1], Enumerable.Repeat(1e-10, 6).ToArray());
        g.Output("y", F32, null);
        FoldSafely(g.Build());
    }

    // ---------------------------------------------------------------- backward: Gemm, MatMul, ConvTranspose

    [Theory]
    [InlineData(false, false, new long[] { 3, 1 })]
    [InlineData(true, true, new long[] { 1 })]
    [InlineData(true, false, new long[0])]
    [InlineData(false, true, new long[] { 1, 1 })]
    public void Gemm_with_transA_alpha_beta_and_broadcast_C_folds_a_scale_and_shift(bool transA, bool transB, long[] cDims)
    {
        var g = new GraphBuilder(13);
        g.Input("a", F32, transA ? [4, 3] : [3, 4]);
        g.Init("B", F32, transB ? [5, 4] : [4, 5]);
        g.Init("C", F32, cDims);
        g.Node("Gemm", ["a", "B", "C"], "g", "gemm", ("transA", transA ? 1L : 0L), ("transB", transB ? 1L : 0L),
            ("alpha", 0.7f), ("beta", 0.3f));
        Op(g, "Div", "g", [5], "m");
        Op(g, "Sub", "m", [1, 5], "y", -1, 1);
        g.Output("y", F32, null);
        var (folded, r) = FoldSafely(g.Build());
        Assert.Equal(Outcome.Folded, Single(r).Outcome);
        Assert.Equal(["Gemm"], Ops(folded));
    }

    /// <summary>Gemm [M, N] with M = N: a [N, 1] constant runs along the rows.</summary>
    [Fact]
    public void A_square_gemm_with_a_column_constant_is_refused()
    {
        var g = new GraphBuilder(13);
        g.Input("a", F32, [5, 4]);
        g.Init("B", F32, [4, 5]);
        g.Node("Gemm", ["a", "B"], "g", "gemm");
        Op(g, "Mul", "g", [5, 1], "y");
        g.Output("y", F32, null);
        var (_, r) = FoldSafely(g.Build());
        AssertLeft(r, SkipReason.ChannelAxisMismatch);
    }

    [Fact]
    public void A_1d_matmul_input_folds_a_scale_and_shift_into_B_and_one_add()
    {
        var g = new GraphBuilder(13);
        g.Input("a", F32, [4]);
        g.Init("B", F32, [4, 5]);
        g.Node("MatMul", ["a", "B"], "p", "matmul");
        Op(g, "Mul", "p", [5], "m");
        Op(g, "Add", "m", [5], "y", -1, 1);
        g.Output("y", F32, null);
        var (folded, r) = FoldSafely(g.Build());
        Assert.Equal(Outcome.Folded, Single(r).Outcome);
        Assert.Equal(["MatMul", "Add"], Ops(folded));
    }

    /// <summary>A rank-4 MatMul output [2, 3, 5, 5]: a [5, 1] constant runs along axis 2, not the last axis.</summary>
    [Fact]
    public void A_matmul_constant_along_a_square_axis_other_than_the_last_is_refused()
    {
        var g = new GraphBuilder(13);
        g.Input("a", F32, [2, 3, 5, 4]);
        g.Init("B", F32, [4, 5]);
        g.Node("MatMul", ["a", "B"], "p", "matmul");
        Op(g, "Mul", "p", [5, 1], "y");
        g.Output("y", F32, null);
        var (_, r) = FoldSafely(g.Build());
        AssertLeft(r, SkipReason.ChannelAxisMismatch);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void Grouped_conv_transpose_with_strides_and_output_padding_folds_a_chain(long group)
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [2, 4, 4, 4]);
        g.Init("w", F32, [4, 3, 3, 3]);
        g.Init("b", F32, [3 * group]);
        g.Node("ConvTranspose", ["x", "w", "b"], "t", "convT", ("group", group), ("strides", new long[] { 2, 2 }),
            ("pads", new long[] { 1, 1, 1, 1 }), ("output_padding", new long[] { 1, 1 }));
        Op(g, "Add", "t", [1, 3 * group, 1, 1], "a", -1, 1);
        Op(g, "Mul", "a", [3 * group, 1, 1], "m");
        Op(g, "Sub", "m", [], "y", -1, 1);
        g.Output("y", F32, null);
        var (folded, r) = FoldSafely(g.Build());
        Assert.Equal("AffineIntoConvTranspose", Single(r).Rule);
        Assert.Equal(["ConvTranspose"], Ops(folded));
    }

    /// <summary>TF-style exports keep W as [kh, kw, Cin, Cout] behind a Transpose: the fold scales the transposed data.</summary>
    [Fact]
    public void A_conv_weight_behind_a_transpose_folds_with_its_data_moved()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [2, 4, 5, 5]);
        g.Init("w_hwio", F32, [3, 2, 4, 6]);
        g.Node("Transpose", ["w_hwio"], "w", "transpose", ("perm", new long[] { 3, 2, 0, 1 }));
        g.Node("Conv", ["x", "w"], "c", "conv", ("pads", new long[] { 1, 0, 1, 0 }));
        Op(g, "Mul", "c", [6, 1, 1], "m");
        Op(g, "Add", "m", [6, 1, 1], "y", -1, 1);
        g.Output("y", F32, null);
        var (folded, r) = FoldSafely(g.Build());
        Assert.Equal(Outcome.Folded, Single(r).Outcome);
        Assert.Equal(["Conv"], Ops(folded));
    }

    [Fact]
    public void A_gemm_B_behind_a_transpose_folds()
    {
        var g = new GraphBuilder(13);
        g.Input("a", F32, [3, 4]);
        g.Init("Bt", F32, [5, 4]);
        g.Node("Transpose", ["Bt"], "B", "transpose");
        g.Node("Gemm", ["a", "B"], "p", "gemm", ("alpha", 1.5f));
        Op(g, "Mul", "p", [5], "m");
        Op(g, "Add", "m", [5], "y", -1, 1);
        g.Output("y", F32, null);
        var (folded, r) = FoldSafely(g.Build());
        Assert.Equal(Outcome.Folded, Single(r).Outcome);
        Assert.Equal(["Gemm"], Ops(folded));
    }

    // ---------------------------------------------------------------- backward: sharing, graph outputs, types

    [Fact]
    public void A_constant_shared_by_two_muls_after_two_convs_folds_into_both()
    {
        var g = new GraphBuilder();
        g.Input("x", F32, [2, 4, 5, 5]);
        g.Init("w1", F32, [6, 4, 3, 3]);
        g.Init("w2", F32, [6, 4, 1, 1]);
        g.Init("k", F32, [6, 1, 1], 0.5, 1.5);
        g.Node("Conv", ["x", "w1"], "c1", "conv1", ("pads", new long[] { 1, 1, 1, 1 }));
        g.Node("Conv", ["x", "w2"], "c2", "conv2");
        g.Node("Mul", ["c1", "k"], "y1", "mul1");
        g.Node("Mul", ["k", "c2"], "y2", "mul2");
        g.Output("y1", F32, null);
        g.Output("y2", F32, null);
        var (folded, r) = FoldSafely(g.Build());
        Assert.All(r.Log.Decisions, d => Assert.Equal(Outcome.Folded, d.Outcome));
        Assert.Equal(["Conv", "Conv"], Ops(folded));
    }

    /// <summary>A graph output in the middle of a chain: the part before it may fold, the output keeps its value.</summary>
    [Fact]
    public void A_graph_output_in_the_middle_of_a_chain_keeps_its_value()
    {
        var g = Conv();
        Op(g, "Mul", "c", [6, 1, 1], "m");
        Op(g, "Add", "m", [6, 1, 1], "a", -1, 1);
        Op(g, "Mul", "a", [6, 1, 1], "y");
        g.Output("a", F32, null);
        g.Output("y", F32, null);
        FoldSafely(g.Build());
    }

    /// <summary>A weight read by two convs, one of them foldable forward and the other backward.</summary>
    [Fact]
    public void A_weight_shared_by_a_backward_and_a_forward_fold_stays_for_each()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [2, 4, 5, 5]);
        g.Init("w", F32, [4, 4, 1, 1]);
        g.Node("Conv", ["x", "w"], "c1", "conv1");
        Op(g, "Mul", "c1", [4, 1, 1], "m1");
        g.Node("Relu", ["m1"], "r", "relu");
        Op(g, "Mul", "r", [4, 1, 1], "m2");
        Op(g, "Add", "m2", [4, 1, 1], "z", -1, 1);
        g.Node("Conv", ["z", "w"], "y", "conv2");
        g.Output("y", F32, null);
        var (folded, r) = FoldSafely(g.Build());
        Assert.Equal(2, r.Log.Decisions.Count(d => d.Outcome == Outcome.Folded));
        Assert.Equal(["Conv", "Relu", "Conv"], Ops(folded));
    }

    /// <summary>Integer MatMul → Mul by an integer constant: integer arithmetic is never folded.</summary>
    [Fact]
    public void An_integer_matmul_and_mul_are_not_folded()
    {
        var g = new GraphBuilder(13);
        const int I32 = (int)TensorProto.Types.DataType.Int32;
        g.Input("a", I32, [3, 4]);
        var b = new TensorProto { Name = "B", DataType = I32, Dims = { 4, 5 } };
        b.Int32Data.AddRange(Enumerable.Range(0, 20).Select(i => i % 7 - 3));
        g.Graph.Initializer.Add(b);
        var k = new TensorProto { Name = "k", DataType = I32, Dims = { 5 } };
        k.Int32Data.AddRange([2, -1, 3, 0, 5]);
        g.Graph.Initializer.Add(k);
        g.Node("MatMul", ["a", "B"], "p", "matmul");
        g.Node("Mul", ["p", "k"], "y", "mul");
        g.Output("y", I32, null);
        var (folded, r) = Fold(g.Build());
        Assert.False(AnyRewrite(r));
        Assert.Equal(["MatMul", "Mul"], Ops(folded));
    }

    /// <summary>Before opset 7, Mul broadcasts only with broadcast=1: aligned at `axis` when given, else at the end
    /// (W here). ORT has no Mul before opset 7, so the algebra is checked in the audit and by the decision only.</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Legacy_broadcast_folds_only_along_the_channel_axis(bool withAxis)
    {
        var g = new GraphBuilder(6);
        g.Input("x", F32, [2, 4, 5, 6]);
        g.Init("w", F32, [6, 4, 3, 3]);
        g.Node("Conv", ["x", "w"], "c", "conv", ("pads", new long[] { 1, 1, 1, 1 }));
        string k = g.Init("k", F32, [6], 0.5, 1.5);
        if (withAxis) g.Node("Mul", ["c", k], "y", "mul", ("broadcast", 1L), ("axis", 1L));
        else g.Node("Mul", ["c", k], "y", "mul", ("broadcast", 1L));
        g.Output("y", F32, null);
        var original = g.Build();
        var (folded, r) = Fold(original);
        AssertAuditPasses(original, folded, r);
        if (withAxis)
        {
            Assert.Equal(Outcome.Folded, Single(r).Outcome);
            Assert.Equal(["Conv"], Ops(folded));
        }
        else
        {
            AssertLeft(r, SkipReason.ChannelAxisMismatch);
            Assert.Equal(["Conv", "Mul"], Ops(folded));
        }
    }

    // ---------------------------------------------------------------- forward: padding, strides, groups

    [Fact]
    public void A_shift_folds_forward_into_a_strided_dilated_conv_whose_pads_are_all_zero()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [2, 4, 9, 9]);
        Op(g, "Mul", "x", [4, 1, 1], "m");
        Op(g, "Add", "m", [1, 4, 1, 1], "z", -1, 1);
        g.Init("w", F32, [6, 4, 3, 3]);
        g.Init("b", F32, [6]);
        g.Node("Conv", ["z", "w", "b"], "y", "conv", ("pads", new long[] { 0, 0, 0, 0 }), ("strides", new long[] { 2, 1 }),
            ("dilations", new long[] { 2, 3 }));
        g.Output("y", F32, null);
        var (folded, r) = FoldSafely(g.Build());
        Assert.Equal("AffineForwardIntoConv", Single(r).Rule);
        Assert.Equal(["Conv"], Ops(folded));
    }

    [Theory]
    [InlineData("SAME_UPPER", 3L, 1L)]
    [InlineData("SAME_LOWER", 3L, 2L)]
    [InlineData("SAME_UPPER", 1L, 2L)]
    [InlineData("SAME_LOWER", 1L, 3L)]
    public void Same_padding_takes_a_shift_only_with_a_unit_kernel(string autoPad, long kernel, long stride)
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [2, 4, 7, 8]);
        Op(g, "Add", "x", [4, 1, 1], "z", -1, 1);
        g.Init("w", F32, [6, 4, kernel, kernel]);
        g.Node("Conv", ["z", "w"], "y", "conv", ("auto_pad", autoPad), ("strides", new long[] { stride, stride }));
        g.Output("y", F32, null);
        var (folded, r) = FoldSafely(g.Build());
        if (kernel == 1) Assert.Equal(["Conv"], Ops(folded));
        else Assert.Contains("auto_pad=" + autoPad, AssertLeft(r, SkipReason.PaddedConvolution).Detail);
    }

    /// <summary>Depthwise conv with a channel multiplier: W [C·m, 1, k, k], group = C.</summary>
    [Fact]
    public void A_chain_folds_forward_into_a_depthwise_conv_with_a_multiplier()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [2, 4, 6, 6]);
        Op(g, "Sub", "x", [4, 1, 1], "s", -1, 1);
        Op(g, "Mul", "s", [1, 4, 1, 1], "z");
        g.Init("w", F32, [8, 1, 3, 3]);
        g.Init("b", F32, [8]);
        g.Node("Conv", ["z", "w", "b"], "y", "conv", ("group", 4L));
        g.Output("y", F32, null);
        var (folded, r) = FoldSafely(g.Build());
        Assert.Equal("AffineForwardIntoConv", Single(r).Rule);
        Assert.Equal(["Conv"], Ops(folded));
    }

    /// <summary>Conv-1d: a [C, 1] constant is per channel, a [C] one runs along the length.</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_conv1d_takes_a_C_by_1_constant_forward_but_not_a_C_vector(bool columnShape)
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [2, 4, 4]);
        Op(g, "Add", "x", columnShape ? [4, 1] : [4], "z", -1, 1);
        g.Init("w", F32, [6, 4, 3]);
        g.Node("Conv", ["z", "w"], "y", "conv");
        g.Output("y", F32, null);
        var (folded, r) = FoldSafely(g.Build());
        if (columnShape) Assert.Equal(["Conv"], Ops(folded));
        else AssertLeft(r, SkipReason.ChannelAxisMismatch);
    }

    // ---------------------------------------------------------------- forward: broadcasting that changes shapes

    /// <summary>x [2, 1, 5, 5] · c [1, 4, 1, 1] is [2, 4, 5, 5]: the BN after it hides the widening from the channel check.</summary>
    [Fact]
    public void A_mul_widening_one_channel_to_four_before_a_bn_and_conv_is_not_folded_forward()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [2, 1, 5, 5]);
        Op(g, "Mul", "x", [1, 4, 1, 1], "m");
        g.Bn("m", 4, "z");
        g.Init("w", F32, [6, 4, 1, 1]);
        g.Node("Conv", ["z", "w"], "y", "conv");
        g.Output("y", F32, null);
        FoldSafely(g.Build());
    }

    /// <summary>x [3, 4] · c [1, 1, 1] is [1, 3, 4]; MatMul gives [1, 3, 5]. Folding c into B would give [3, 5].</summary>
    [Fact]
    public void A_scalar_of_higher_rank_before_a_matmul_is_not_folded_forward()
    {
        var g = new GraphBuilder(13);
        g.Input("a", F32, [3, 4]);
        Op(g, "Mul", "a", [1, 1, 1], "z");
        g.Init("B", F32, [4, 5]);
        g.Node("MatMul", ["z", "B"], "y", "matmul");
        g.Output("y", F32, null);
        FoldSafely(g.Build());
    }

    /// <summary>x [4] · c [1, 1] is [1, 4], which Gemm takes; Gemm would not take x.</summary>
    [Fact]
    public void A_scalar_that_makes_a_vector_2d_before_a_gemm_is_not_folded_forward()
    {
        var g = new GraphBuilder(13);
        g.Input("a", F32, [4]);
        Op(g, "Mul", "a", [1, 1], "z");
        g.Init("B", F32, [4, 5]);
        g.Node("Gemm", ["z", "B"], "y", "gemm");
        g.Output("y", F32, null);
        FoldSafely(g.Build());
    }

    /// <summary>x [4, 4, 5] (no batch axis) · c [1, 4, 1, 1] is [1, 4, 4, 5]: a conv input only after the Mul.</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_constant_that_adds_the_batch_axis_before_a_conv_is_not_folded_forward(bool perChannel)
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [4, 4, 5]);
        Op(g, "Mul", "x", perChannel ? [1, 4, 1, 1] : [1, 1, 1, 1], "z");
        g.Init("w", F32, [6, 4, 3, 3]);
        g.Node("Conv", ["z", "w"], "y", "conv");
        g.Output("y", F32, null);
        FoldSafely(g.Build());
    }

    /// <summary>The same through the merge: x [2, 1, 5, 5] · c [1, 4, 1, 1] + d keeps its [2, 4, 5, 5] shape.</summary>
    [Fact]
    public void A_merge_of_ops_that_widen_the_channels_keeps_the_shape()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [2, 1, 5, 5]);
        g.Node("Relu", ["x"], "r", "relu");
        Op(g, "Mul", "r", [1, 4, 1, 1], "m");
        Op(g, "Add", "m", [4, 1, 1], "a", -1, 1);
        Op(g, "Mul", "a", [], "y", 2, 3);
        g.Output("y", F32, null);
        var (folded, _) = FoldSafely(g.Build());
        Assert.Equal(["Relu", "Mul", "Add"], Ops(folded));
    }

    [Fact]
    public void A_merge_keeps_a_rank_raising_scalar()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [3, 4]);
        g.Node("Relu", ["x"], "r", "relu");
        Op(g, "Mul", "r", [1, 1, 1], "m");
        Op(g, "Mul", "m", [], "y");
        g.Output("y", F32, null);
        FoldSafely(g.Build());
    }

    /// <summary>A Gemm forward fold with transA (channel axis 0), alpha, transB and a [N] C taken once.</summary>
    [Fact]
    public void A_chain_along_axis_0_folds_forward_into_a_transA_gemm()
    {
        var g = new GraphBuilder(13);
        g.Input("a", F32, [4, 3]);
        Op(g, "Mul", "a", [4, 1], "m");
        Op(g, "Sub", "m", [4, 1], "z", -1, 1);
        g.Init("B", F32, [5, 4]);
        g.Init("C", F32, [5]);
        g.Node("Gemm", ["z", "B", "C"], "y", "gemm", ("transA", 1L), ("transB", 1L), ("alpha", 0.6f));
        g.Output("y", F32, null);
        var (folded, r) = FoldSafely(g.Build());
        Assert.Equal("AffineForwardIntoGemm", Single(r).Rule);
        Assert.Equal(["Gemm"], Ops(folded));
    }

    /// <summary>Rank-3 MatMul input: the chain runs along K (last axis) and becomes B and an Add.</summary>
    [Fact]
    public void A_rank_3_chain_folds_forward_into_a_matmul()
    {
        var g = new GraphBuilder(13);
        g.Input("a", F32, [2, 3, 4]);
        Op(g, "Mul", "a", [4], "m");
        Op(g, "Add", "m", [1, 1, 4], "z", -1, 1);
        g.Init("B", F32, [4, 5]);
        g.Node("MatMul", ["z", "B"], "y", "matmul");
        g.Output("y", F32, null);
        var (folded, r) = FoldSafely(g.Build());
        Assert.Equal("AffineForwardIntoMatMul", Single(r).Rule);
        Assert.Equal(["MatMul", "Add"], Ops(folded));
    }

    // ---------------------------------------------------------------- merges

    [Fact]
    public void Subtractions_in_both_orders_merge_with_the_right_signs()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [2, 4, 5, 5]);
        g.Node("Relu", ["x"], "r", "relu");
        Op(g, "Sub", "r", [4, 1, 1], "a", -1, 1);
        Op(g, "Sub", "a", [4, 1, 1], "b", -1, 1, constantFirst: true);
        Op(g, "Div", "b", [1, 4, 1, 1], "y");
        g.Output("y", F32, null);
        var (folded, r) = FoldSafely(g.Build());
        Assert.Equal(Outcome.Replaced, Single(r).Outcome);
        Assert.Equal(["Relu", "Mul", "Add"], Ops(folded));
    }

    [Fact]
    public void A_float16_merge_of_many_ops_stays_within_float16_noise()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F16, [2, 4, 5, 5]);
        g.Node("Relu", ["x"], "r", "relu");
        string cur = "r";
        for (int i = 0; i < 6; i++) cur = Op(g, i % 2 == 0 ? "Mul" : "Add", cur, [4, 1, 1], i == 5 ? "y" : $"t{i}", 0.5, 1.5, F16);
        g.Output("y", F16, null);
        var (folded, r) = FoldSafely(g.Build());
        Assert.Equal(["Relu", "Mul", "Add"], Ops(folded));
    }

    // ---------------------------------------------------------------- subgraphs

    /// <summary>Conv → Mul in an If branch, with the weight and the constant from the enclosing graph.</summary>
    [Fact]
    public void A_chain_in_an_if_branch_with_outer_weights_folds_and_the_outer_weight_stays()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [2, 4, 5, 5]);
        g.Input("cond", (int)TensorProto.Types.DataType.Bool, []);
        g.Init("w", F32, [6, 4, 3, 3]);
        g.Init("k", F32, [6, 1, 1], 0.5, 1.5);
        var then = g.Body("then");
        then.Node("Conv", ["x", "w"], "tc", "then_conv", ("pads", new long[] { 1, 1, 1, 1 }));
        then.Node("Mul", ["tc", "k"], "tm", "then_mul");
        Op(then, "Add", "tm", [6, 1, 1], "ty", -1, 1);
        then.Output("ty", F32, null);
        var els = g.Body("else");
        els.Node("Conv", ["x", "w"], "ec", "else_conv", ("pads", new long[] { 1, 1, 1, 1 }));
        els.Node("Mul", ["k", "ec"], "ey", "else_mul");
        els.Output("ey", F32, null);
        g.Node("If", ["cond"], "y", "if", ("then_branch", then.Graph), ("else_branch", els.Graph));
        g.Node("Mul", ["x", "x"], "x2", "outer_use"); // an outer reader of nothing folded
        g.Output("y", F32, null);
        g.Output("x2", F32, null);
        var original = g.Build();
        var (folded, r) = Fold(original);
        Assert.Equal(2, r.Log.Decisions.Count(d => d.Outcome == Outcome.Folded));
        AssertAuditPasses(original, folded, r);
        AssertBothBranches(original, folded);
    }

    static void AssertBothBranches(OnnxModel original, OnnxModel folded)
    {
        // Equivalence with cond fixed each way: the condition becomes a constant of the outer graph.
        foreach (bool c in new[] { true, false })
        {
            OnnxModel Fix(OnnxModel m)
            {
                var p = m.Proto.Clone();
                var input = p.Graph.Input.Single(i => i.Name == "cond");
                p.Graph.Input.Remove(input);
                var t = new TensorProto { Name = "cond", DataType = (int)TensorProto.Types.DataType.Bool };
                t.Int32Data.Add(c ? 1 : 0);
                p.Graph.Initializer.Add(t);
                return new OnnxModel(p, m.SourcePath);
            }
            AssertEquivalent(Fix(original), Fix(folded));
        }
    }
}
