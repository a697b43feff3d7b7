using NormFold.Onnx;
using NormFold.Rewriting;
using NormFold.Rewriting.Normalization;
using NormFold.Tests.Builders;
using NormFold.Verification;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting;

/// <summary>
/// Raising the default opset: every node whose op changed in (model opset, target] blocks unless an exemption shows the
/// change cannot alter it. Positive cases raise a copy and check it in ORT against the original.
/// </summary>
public class OpsetUpgradeTests
{
    const int I64 = 7, Bool = 9;

    /// <summary>Raises a copy (asserting nothing blocks) and checks both in ORT.</summary>
    static OnnxModel RaiseAndCheck(OnnxModel original, long target)
    {
        var blockers = OpsetUpgrade.Blockers(original, target);
        Assert.True(blockers.Count == 0, string.Join("\n", blockers));
        var raised = new OnnxModel(original.Proto.Clone(), original.SourcePath);
        OpsetUpgrade.Raise(raised, target);
        Assert.Equal(target, raised.DefaultOpset);
        AssertEquivalent(original, raised);
        return raised;
    }

    /// <summary>An int64 initializer of any shape (GraphBuilder.Int64s makes 1-D ones).</summary>
    static void Int64Init(GraphBuilder g, string name, long[] dims, params long[] values)
    {
        var t = new NormFold.Onnx.Proto.TensorProto { Name = name, DataType = I64 };
        t.Dims.AddRange(dims);
        t.Int64Data.AddRange(values);
        g.Graph.Initializer.Add(t);
    }

    static string Blocked(OnnxModel model, long target) => Assert.Single(OpsetUpgrade.Blockers(model, target));

    /// <summary>One node <paramref name="op"/> on x [2, 3, 4, 5] at <paramref name="opset"/>.</summary>
    static OnnxModel One(long opset, string op, int outputs = 1, string[]? extraInputs = null, long[]? dims = null,
        params (string, object)[] attrs)
    {
        var g = new GraphBuilder(opset);
        g.Input("x", F32, dims ?? [2, 3, 4, 5]);
        string[] outs = Enumerable.Range(0, outputs).Select(i => $"y{i}").ToArray();
        g.NodeMulti(op, ["x", .. extraInputs ?? []], outs, "n", attrs);
        foreach (var o in outs) g.Output(o);
        return g.Build();
    }

    // ---- the two regressions of issue 9 ----

    /// <summary>opset 11: x → Conv → decomposed GroupNorm → Softmax(axis).</summary>
    internal static OnnxModel ConvGroupNormSoftmax(long softmaxAxis)
    {
        var g = new GraphBuilder(11);
        g.Input("x", F32, [1, 3, 6, 6]);
        g.Init("w", F32, [8, 3, 3, 3]);
        g.Init("b", F32, [8]);
        g.Node("Conv", ["x", "w", "b"], "c", "conv", ("pads", new long[] { 1, 1, 1, 1 }));
        g.Int64s("gshape", 0, 2, -1);
        g.Node("Reshape", ["c", "gshape"], "r1", "reshape1");
        g.Init("in_scale", F32, [2], [1, 1]);
        g.Init("in_bias", F32, [2], [0, 0]);
        g.Node("InstanceNormalization", ["r1", "in_scale", "in_bias"], "in", "instnorm", ("epsilon", 1e-5f));
        g.Node("Shape", ["c"], "cshape", "shape");
        g.Node("Reshape", ["in", "cshape"], "r2", "reshape2");
        g.Init("gamma", F32, [8, 1, 1], 0.5, 1.5);
        g.Init("beta", F32, [8, 1, 1], -0.5, 0.5);
        g.Node("Mul", ["r2", "gamma"], "m", "mul");
        g.Node("Add", ["m", "beta"], "gn", "add");
        g.Node("Softmax", ["gn"], "y", "softmax", ("axis", softmaxAxis));
        g.Output("y");
        return g.Build();
    }

    [Fact]
    public void Groupnorm_swap_is_refused_when_raising_11_to_21_would_change_a_softmax()
    {
        var original = ConvGroupNormSoftmax(1);
        var (folded, r) = Fold(original, new PipelineOptions { SwapGroupNorm = true, TargetOpset = 21 });
        var d = AssertLeft(r, SkipReason.OpsetTooLow, "instnorm");
        Assert.Contains("from 11 to 21", d.Detail);
        Assert.Contains("Softmax 'softmax' (Softmax-13 changes the axis semantics", d.Detail);
        Assert.Equal(11, folded.DefaultOpset);
        Assert.Equal(0, Count(folded, "GroupNormalization"));
        AssertEquivalent(original, folded);
    }

    [Fact]
    public void Groupnorm_swap_raises_11_to_21_when_the_softmax_is_over_the_last_axis()
    {
        var original = ConvGroupNormSoftmax(-1);
        var (folded, r) = Fold(original, new PipelineOptions { SwapGroupNorm = true, TargetOpset = 21 });
        Assert.Equal(Outcome.Replaced, r.Log.Decisions.Single(d => d.Anchor == "instnorm").Outcome);
        Assert.Equal(21, folded.DefaultOpset);
        Assert.Equal(1, Count(folded, "GroupNormalization"));
        AssertEquivalent(original, folded);
    }

    /// <summary>opset 9 (as PaddleOCR exports): ReduceMean → Sub → Pow → ReduceMean → Add ε → Sqrt → Div → Mul γ → Add β
    /// → Clip(min, max attributes), or → Upsample-9 with computed scales (as torch's interpolate to a size exports them),
    /// which Resize replaces at opset 10 only for constant scales.</summary>
    internal static OnnxModel LayerNormClip9(bool upsample = false)
    {
        var g = new GraphBuilder(9);
        g.Input("x", F32, [2, 5, 8]);
        g.Node("ReduceMean", ["x"], "mu", "mean", ("axes", new long[] { -1 }));
        g.Node("Sub", ["x", "mu"], "d", "sub");
        g.Init("two", F32, [], [2]);
        g.Node("Pow", ["d", "two"], "p", "pow");
        g.Node("ReduceMean", ["p"], "v", "var", ("axes", new long[] { -1 }));
        g.Init("eps", F32, [], [1e-5]);
        g.Node("Add", ["v", "eps"], "ve", "add_eps");
        g.Node("Sqrt", ["ve"], "s", "sqrt");
        g.Node("Div", ["d", "s"], "n", "div");
        g.Init("gamma", F32, [8], 0.5, 1.5);
        g.Init("beta", F32, [8], -0.5, 0.5);
        g.Node("Mul", ["n", "gamma"], "sc", "mul");
        g.Node("Add", ["sc", "beta"], "ln", "add_beta");
        if (upsample)
        {
            g.Init("up_s", F32, [3], [1, 1, 2]);
            g.Node("Abs", ["up_s"], "scales", "scales");
            g.Node("Upsample", ["ln", "scales"], "y", "upsample", ("mode", "nearest"));
        }
        else g.Node("Clip", ["ln"], "y", "clip", ("min", -0.5f), ("max", 0.5f));
        g.Output("y");
        return g.Build();
    }

    [Fact]
    public void Layernorm_swap_is_refused_when_raising_9_to_17_would_break_an_upsample()
    {
        var original = LayerNormClip9(upsample: true);

        var (folded, r) = Fold(original, new PipelineOptions { SwapLayerNorm = true, TargetOpset = 17 });
        var d = AssertLeft(r, SkipReason.OpsetTooLow, "mean");
        Assert.Contains("Upsample 'upsample' (Upsample-10 is replaced by Resize; only for constant scales ≥ 1 (then both round nearest down) and mode nearest or linear)", d.Detail);
        Assert.Equal(9, folded.DefaultOpset);
        Assert.Equal(0, Count(folded, "LayerNormalization"));
        AssertEquivalent(original, folded);
    }

    /// <summary>opset 9 as PaddleOCR exports: a decomposed LayerNorm, then Clip-6 (both bounds, min only, none), Slice-1
    /// (with axes and an end of INT64_MAX, without axes), Unsqueeze-1, Squeeze-1 with and without axes.</summary>
    internal static OnnxModel AttributeOps9()
    {
        var g = new GraphBuilder(9);
        var ln = LayerNormClip9();
        g.Graph.Input.Add(ln.Proto.Graph.Input);
        g.Graph.Initializer.Add(ln.Proto.Graph.Initializer);
        g.Graph.Node.Add(ln.Proto.Graph.Node.Where(n => n.OpType != "Clip"));
        g.Node("Clip", ["ln"], "c1", "clip_both", ("min", -0.5f), ("max", 0.5f));
        g.Node("Clip", ["c1"], "c2", "clip_min", ("min", -0.25f));
        g.Node("Clip", ["c2"], "c3", "clip_none");
        g.Node("Slice", ["c3"], "s1", "slice_axes", ("starts", new long[] { 1 }), ("ends", new long[] { long.MaxValue }), ("axes", new long[] { 1 }));
        g.Node("Slice", ["s1"], "s2", "slice", ("starts", new long[] { 0, 0 }), ("ends", new long[] { 1, -1 }));     // [1, 3, 8]
        g.Node("Unsqueeze", ["s2"], "u", "unsqueeze", ("axes", new long[] { 0 }));                                  // [1, 1, 3, 8]
        g.Node("Squeeze", ["u"], "y", "squeeze", ("axes", new long[] { 0, 1 }));                                    // [3, 8]
        g.Node("Squeeze", ["s2"], "z", "squeeze_all");
        g.Output("y");
        g.Output("z");
        return g.Build();
    }

    [Fact]
    public void Layernorm_swap_raises_9_to_17_rewriting_clip_slice_squeeze_and_unsqueeze_attributes_as_inputs()
    {
        var original = AttributeOps9();
        Assert.Empty(OpsetUpgrade.Blockers(original, 17));
        var (folded, r) = Fold(original, new PipelineOptions { SwapLayerNorm = true, TargetOpset = 17 });
        Assert.Equal(Outcome.Replaced, r.Log.Decisions.Single(d => d.Anchor == "mean").Outcome);
        Assert.Equal(17, folded.DefaultOpset);
        Assert.Equal(1, Count(folded, "LayerNormalization"));
        var nodes = folded.Proto.Graph.Node.ToDictionary(n => n.Name);
        Assert.All(new[] { "clip_both", "clip_min", "clip_none", "slice_axes", "slice", "unsqueeze", "squeeze" },
            name => Assert.Empty(nodes[name].Attribute));
        Assert.Equal(3, nodes["clip_none"].Input.Count);
        Assert.Equal(4, nodes["slice_axes"].Input.Count);
        Assert.Equal(3, nodes["slice"].Input.Count);
        Assert.Single(nodes["squeeze_all"].Input);
        var init = folded.Proto.Graph.Initializer.ToDictionary(t => t.Name);
        Assert.Equal(float.MaxValue, Assert.Single(init[nodes["clip_min"].Input[2]].FloatData));
        Assert.Equal(long.MaxValue, init[nodes["slice_axes"].Input[2]].Int64Data[0]);
        AssertEquivalent(original, folded);
        // Raised alone (no swap) to each version in between, too.
        foreach (long target in new long[] { 10, 11, 13, 17 }) RaiseAndCheck(original, target);
    }

    [Fact]
    public void A_clip_with_attributes_on_float16_still_blocks_11()
    {
        var g = new GraphBuilder(9);
        g.Input("x", F16, [2, 3]);
        g.Node("Clip", ["x"], "y", "clip", ("min", 0.1f), ("max", 0.7f));
        g.Output("y", F16);
        Assert.Equal("Clip 'clip' (Clip-11 takes min and max as inputs instead of attributes, and its input is not known to be float or double)",
            Blocked(g.Build(), 11));
    }

    [Fact]
    public void A_slice_without_ends_still_blocks_10()
    {
        Assert.Equal("Slice 'n' (Slice-10 takes starts, ends and axes as inputs instead of attributes, and this node lacks starts or ends)",
            Blocked(One(9, "Slice", attrs: ("starts", new long[] { 0 })), 10));
    }

    [Fact]
    public void Refusals_name_the_target_opset_not_a_cli_flag()
    {
        var (_, r) = Fold(ConvGroupNormSoftmax(1), new PipelineOptions { SwapGroupNorm = true });
        var d = AssertLeft(r, SkipReason.OpsetTooLow, "instnorm");
        Assert.Contains("a target opset of 21", d.Detail);
        Assert.DoesNotContain("--", d.Detail);
    }

    // ---- positive raises: every change in range is exempt, ORT agrees ----

    /// <summary>Ops torch and paddle exports use, at opset 13, whose changes up to 23 only add types or optional
    /// attributes/inputs, or are conditional and met here (Split with a split input, Reduce without axes, BN inference).</summary>
    static OnnxModel CommonOps13()
    {
        var g = new GraphBuilder(13);
        long[] k2 = [2, 2];
        g.Input("x", F32, [1, 4, 6, 6]);
        g.Init("w", F32, [8, 4, 3, 3]);
        g.Init("b", F32, [8]);
        g.Node("Conv", ["x", "w", "b"], "c", "conv", ("pads", new long[] { 1, 1, 1, 1 }));
        g.Node("Relu", ["c"], "r", "relu");
        g.Node("Sigmoid", ["r"], "s", "sigmoid");
        g.Node("Mul", ["r", "s"], "m", "mul");
        g.Init("in_s", F32, [8], 0.5, 1.5);
        g.Init("in_b", F32, [8]);
        g.Node("InstanceNormalization", ["m", "in_s", "in_b"], "in", "instnorm");
        g.Node("BatchNormalization", ["in", .. g.BnParams("bnp", 8)], "bn", "bn");
        g.Node("MaxPool", ["bn"], "p", "maxpool", ("kernel_shape", k2), ("strides", k2));                      // [1, 8, 3, 3]
        g.Node("AveragePool", ["bn"], "ap", "avgpool", ("kernel_shape", new long[] { 3, 3 }), ("strides", k2), ("pads", new long[] { 1, 1, 1, 1 }));
        g.Node("LpPool", ["bn"], "lp", "lppool", ("kernel_shape", k2), ("strides", k2));
        g.Node("GlobalAveragePool", ["p"], "gap", "gap");                                                     // [1, 8, 1, 1]
        g.Node("GlobalMaxPool", ["ap"], "gmp", "gmp");
        g.Node("Shape", ["p"], "shp", "shape");
        g.Int64s("idx0", 0);
        g.Node("Gather", ["shp", "idx0"], "n0", "gather");
        g.Int64s("minus1", -1);
        g.Node("Concat", ["n0", "minus1"], "ns", "concat", ("axis", 0L));
        g.Node("Reshape", ["p", "ns"], "flat", "reshape");                                                    // [1, 72]
        g.Init("wg", F32, [72, 10]);
        g.Init("bg", F32, [10]);
        g.Node("Gemm", ["flat", "wg", "bg"], "gm", "gemm");
        g.Node("Flatten", ["gap"], "f2", "flatten");
        g.Init("wm", F32, [8, 10]);
        g.Node("MatMul", ["f2", "wm"], "mm", "matmul");
        g.Node("Add", ["gm", "mm"], "a", "add");
        g.Node("Softmax", ["a"], "sm", "softmax", ("axis", -1L));
        g.Node("Transpose", ["sm"], "t", "transpose");
        g.Node("Cast", ["t"], "h", "cast16", ("to", (long)F16));
        g.Node("Cast", ["h"], "hb", "cast32", ("to", (long)F32));
        g.Node("Identity", ["hb"], "o_identity", "identity");
        g.Int64s("pads", 0, 0, 1, 1, 0, 0, 1, 1);
        g.Node("Pad", ["lp", "pads"], "o_pad", "pad");
        g.Int64s("halves", 36, 36);
        g.NodeMulti("Split", ["flat", "halves"], ["s1", "s2"], "split", ("axis", 1L));
        g.Node("ReduceMean", ["s1"], "o_mean", "reducemean");
        g.Int64s("ax1", 1);
        g.Node("ReduceSum", ["s2", "ax1"], "o_sum", "reducesum");
        g.Node("ReduceMax", ["s2"], "o_max", "reducemax", ("keepdims", 0L));
        g.Int64s("ax23", 2, 3);
        g.Node("Squeeze", ["gmp", "ax23"], "sq", "squeeze");
        g.Int64s("ax0", 0);
        g.Node("Unsqueeze", ["sq", "ax0"], "us", "unsqueeze");                                                // [1, 1, 8]
        g.Init("lo", F32, [], [-0.2]);
        g.Init("hi", F32, [], [0.2]);
        g.Node("Clip", ["us", "lo", "hi"], "cl", "clip");
        g.Node("Greater", ["us", "lo"], "gt", "greater");
        g.Node("Where", ["gt", "us", "cl"], "wh", "where");
        g.Node("LeakyRelu", ["wh"], "lr", "leakyrelu");
        g.Init("slope", F32, [8], 0.1, 0.3);
        g.Node("PRelu", ["lr", "slope"], "pr", "prelu");
        g.Node("Elu", ["pr"], "e1", "elu");
        g.Node("Selu", ["e1"], "e2", "selu");
        g.Node("Softplus", ["e2"], "e3", "softplus");
        g.Node("Softsign", ["e3"], "e4", "softsign");
        g.Node("HardSigmoid", ["e4"], "e5", "hardsigmoid");
        g.Node("Dropout", ["e5"], "e6", "dropout");
        g.Init("two", F32, [], [2]);
        g.Node("Pow", ["e6", "two"], "o_act", "pow");
        g.Node("GreaterOrEqual", ["us", "hi"], "ge", "ge");
        g.Node("Cast", ["ge"], "o_ge", "cast_ge", ("to", (long)F32));
        g.Node("Equal", ["shp", "shp"], "eq", "equal");
        g.Node("Cast", ["eq"], "o_eq", "cast_eq", ("to", (long)F32));
        g.Node("IsNaN", ["x"], "nan", "isnan");
        g.Node("Cast", ["nan"], "o_nan", "cast_nan", ("to", (long)F32));
        g.Node("IsInf", ["x"], "inf", "isinf");
        g.Node("Cast", ["inf"], "o_inf", "cast_inf", ("to", (long)F32));
        Int64Init(g, "cax", [], 3);
        g.Node("CumSum", ["x", "cax"], "o_cumsum", "cumsum");
        // Trigonometry on (0, 0.9): s · 0.9.
        g.Init("k09", F32, [], [0.9]);
        g.Node("Mul", ["s", "k09"], "u", "mul09");
        string last = "u";
        foreach (var op in new[] { "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Atanh", "Round" })
        {
            g.Node(op, ["u"], "t_" + op, op.ToLowerInvariant());
            g.Node("Add", [last, "t_" + op], "acc_" + op, "acc_" + op);
            last = "acc_" + op;
        }
        g.Init("one", F32, [], [1]);
        g.Node("Add", ["u", "one"], "u1", "plus1");
        g.Node("Acosh", ["u1"], "ach", "acosh");
        g.Node("Add", [last, "ach"], "o_trig", "acc_acosh");
        g.Init("wt", F32, [8, 2, 2, 2]);
        g.Node("ConvTranspose", ["bn", "wt"], "ct", "convtranspose", ("strides", k2));
        g.Node("LpNormalization", ["ct"], "o_lpnorm", "lpnorm", ("axis", 1L));
        g.Init("eyein", F32, [3, 4]);
        g.Node("EyeLike", ["eyein"], "o_eye", "eyelike");
        g.Init("sqm", F32, [2, 3, 3]);
        g.Node("Det", ["sqm"], "o_det", "det");
        g.Int64s("cshape", 2, 3);
        g.Node("ConstantOfShape", ["cshape"], "o_cos", "constantofshape",
            ("value", NormFold.Tensors.TensorData.Create("v", F32, [1], new double[] { 0.5 })));
        g.Node("Constant", [], "o_const", "constant", ("value", NormFold.Tensors.TensorData.Create("cv", F32, [2], new double[] { 1, 2 })));
        g.Init("sdata", F32, [3, 3]);
        Int64Init(g, "sidx", [1, 3], 1, 0, 2);
        g.Init("supd", F32, [1, 3]);
        g.Node("ScatterElements", ["sdata", "sidx", "supd"], "o_scatterel", "scatterelements");
        g.Init("ndata", F32, [4]);
        Int64Init(g, "nidx", [2, 1], 1, 3);
        g.Init("nupd", F32, [2]);
        g.Node("ScatterND", ["ndata", "nidx", "nupd"], "o_scatternd", "scatternd");
        // Recurrent ops on gm [1, 10] as a sequence of one step.
        g.Node("Unsqueeze", ["gm", "ax0"], "seq", "unsqueeze_seq");                                             // [1, 1, 10]
        g.Init("gw", F32, [1, 12, 10]); g.Init("gr", F32, [1, 12, 4]);
        g.Node("GRU", ["seq", "gw", "gr"], "o_gru", "gru", ("hidden_size", 4L));
        g.Init("lw", F32, [1, 16, 10]); g.Init("lr_", F32, [1, 16, 4]);
        g.Node("LSTM", ["seq", "lw", "lr_"], "o_lstm", "lstm", ("hidden_size", 4L));
        g.Init("rw", F32, [1, 4, 10]); g.Init("rr", F32, [1, 4, 4]);
        g.Node("RNN", ["seq", "rw", "rr"], "o_rnn", "rnn", ("hidden_size", 4L));
        // An If whose branches read the outer softmax.
        g.Node("Greater", ["o_mean", "lo"], "cond", "cond");
        var then = g.Body("then");
        then.Node("Identity", ["sm"], "then_out", "then_identity");
        then.Output("then_out");
        var els = g.Body("else");
        els.Node("Neg", ["sm"], "else_out", "else_neg");
        els.Output("else_out");
        g.Node("If", ["cond"], "o_if", "if", ("then_branch", then.Graph), ("else_branch", els.Graph));
        foreach (var o in new[] { "o_identity", "o_pad", "o_mean", "o_sum", "o_max", "o_act", "o_ge", "o_eq", "o_nan", "o_inf",
            "o_cumsum", "o_trig", "o_lpnorm", "o_eye", "o_det", "o_cos", "o_const", "o_scatterel", "o_scatternd", "o_gru", "o_lstm",
            "o_rnn", "o_if" })
            g.Output(o);
        return g.Build();
    }

    [Theory]
    [InlineData(14)]
    [InlineData(18)]
    [InlineData(21)]
    [InlineData(23)]
    public void Common_exported_ops_at_13_raise_and_compute_the_same(long target) => RaiseAndCheck(CommonOps13(), target);

    [Fact]
    public void Torch_groupnorm_export_at_13_raises_to_21_and_stays_equivalent()
    {
        var original = OnnxModel.Load(Path.Combine(ModelsDir, "groupnorm_op13.onnx"));
        Assert.Empty(OpsetUpgrade.Blockers(original, 21));
        var (swapped, r) = Fold(original, new PipelineOptions { SwapGroupNorm = true, TargetOpset = 21 });
        Assert.Equal(21, swapped.DefaultOpset);
        Assert.Equal(10, swapped.Proto.IrVersion);
        Assert.Equal(original.Proto.OpsetImport.Count, swapped.Proto.OpsetImport.Count);
        Assert.Equal(2, r.Log.Count(Outcome.Replaced));
        AssertEquivalent(original, swapped);
    }

    /// <summary>Opset 10 → 12: negative axes accepted (Concat, Flatten, Gather, Split, Squeeze, Unsqueeze, Reduce, ArgMax,
    /// Softmax, Slice, Gemm), reworded Conv/pools, TopK's and ArgMax's new attributes, DepthToSpace's mode, Dropout without
    /// a ratio attribute and an unread mask, integer types of Max/Pow.</summary>
    [Fact]
    public void Opset_10_ops_raise_to_12_and_compute_the_same()
    {
        var g = new GraphBuilder(10);
        long[] k2 = [2, 2];
        g.Input("x", F32, [2, 3, 4, 4]);
        g.Init("w", F32, [4, 3, 3, 3]);
        g.Node("Conv", ["x", "w"], "c", "conv", ("pads", new long[] { 1, 1, 1, 1 }));
        g.Node("MaxPool", ["c"], "mp", "maxpool", ("kernel_shape", k2), ("strides", k2));                   // [2, 4, 2, 2]
        g.Node("AveragePool", ["c"], "ap", "avgpool", ("kernel_shape", k2), ("strides", k2));
        g.Node("Softmax", ["mp"], "o_softmax", "softmax", ("axis", 1L));
        g.Node("Concat", ["mp", "ap"], "cc", "concat", ("axis", 1L));                                         // [2, 8, 2, 2]
        g.Node("Flatten", ["cc"], "fl", "flatten", ("axis", 1L));                                             // [2, 32]
        g.Init("wg", F32, [32, 6]);
        g.Init("bg", F32, [6]);
        g.Node("Gemm", ["fl", "wg", "bg"], "gm", "gemm");
        g.Node("ArgMax", ["gm"], "am", "argmax", ("axis", 1L));
        g.Node("Cast", ["am"], "o_argmax", "cast_am", ("to", (long)F32));
        g.Node("ReduceMean", ["cc"], "rm", "reducemean", ("axes", new long[] { 2, 3 }));
        g.Node("Squeeze", ["rm"], "sq", "squeeze", ("axes", new long[] { 2, 3 }));
        g.Node("Unsqueeze", ["sq"], "o_unsqueeze", "unsqueeze", ("axes", new long[] { 0 }));
        g.NodeMulti("Split", ["fl"], ["o_s1", "o_s2"], "split", ("axis", 1L), ("split", new long[] { 16, 16 }));
        g.Int64s("gidx", 0);
        g.Node("Gather", ["fl", "gidx"], "o_gather", "gather");
        g.Int64s("starts", 1); g.Int64s("ends", 5); g.Int64s("axes", 1);
        g.Node("Slice", ["fl", "starts", "ends", "axes"], "o_slice", "slice");
        g.Int64s("k", 2);
        g.NodeMulti("TopK", ["gm", "k"], ["o_topk", "topk_i"], "topk");
        g.Node("Max", ["gm", "bg"], "o_max", "max");
        g.Init("two", F32, [], [2]);
        g.Node("Pow", ["gm", "two"], "o_pow", "pow");
        g.Node("DepthToSpace", ["cc"], "o_d2s", "depthtospace", ("blocksize", 2L));
        g.Node("Dropout", ["gm"], "o_dropout", "dropout");
        g.Node("Constant", [], "k6", "constant", ("value", NormFold.Tensors.TensorData.Create("k6v", F32, [6], new double[] { 1, 2, 3, 4, 5, 6 })));
        g.Node("Mul", ["o_dropout", "k6"], "o_const", "mul_k6");
        foreach (var o in new[] { "o_const", "o_softmax", "o_argmax", "o_unsqueeze", "o_s1", "o_s2", "o_gather", "o_slice", "o_topk", "o_max",
            "o_pow", "o_d2s", "o_dropout" })
            g.Output(o);
        RaiseAndCheck(g.Build(), 12);
    }

    /// <summary>Opset 11 → 13: the conditional exemptions met — Softmax/LogSoftmax/Hardmax over the last axis (explicit,
    /// or by default on rank 2), Squeeze and ReduceSum without axes, Split without a split attribute, Dropout without a
    /// ratio, Clip with min/max inputs.</summary>
    [Fact]
    public void Opset_11_nodes_meeting_the_conditions_raise_to_13_and_compute_the_same()
    {
        var g = new GraphBuilder(11);
        g.Input("x", F32, [2, 3, 4]);
        g.Input("x2", F32, [3, 5]);
        g.Input("x4", F32, [1, 3, 1, 4]);
        g.Node("Softmax", ["x"], "o_sm", "softmax", ("axis", 2L));
        g.Node("LogSoftmax", ["x"], "o_lsm", "logsoftmax", ("axis", -1L));
        g.Node("Hardmax", ["x2"], "hm", "hardmax");
        g.Node("Add", ["hm", "x2"], "o_hm", "add_hm");
        g.Node("Softmax", ["x2"], "o_sm2", "softmax_default");
        g.Node("Squeeze", ["x4"], "o_sq", "squeeze");
        g.Node("ReduceSum", ["x"], "o_rs", "reducesum", ("keepdims", 0L));
        g.NodeMulti("Split", ["x"], ["o_s1", "o_s2"], "split", ("axis", 2L));
        g.Node("Dropout", ["x"], "o_dr", "dropout");
        g.Init("lo", F32, [], [-0.3]);
        g.Init("hi", F32, [], [0.3]);
        g.Node("Clip", ["x", "lo", "hi"], "o_clip", "clip");
        foreach (var o in new[] { "o_sm", "o_lsm", "o_hm", "o_sm2", "o_sq", "o_rs", "o_s1", "o_s2", "o_dr", "o_clip" })
            g.Output(o);
        RaiseAndCheck(g.Build(), 13);
    }

    /// <summary>Opset 7 → 10: multidirectional broadcasting of Max/Min/Sum/Mean (their inputs here share one shape),
    /// MaxPool's storage_order, the pools' ceil_mode and dilations, BatchNormalization without spatial, new types of
    /// MatMul/Gemm/PRelu/Flatten/Constant.</summary>
    [Fact]
    public void Opset_7_nodes_raise_to_10_and_compute_the_same()
    {
        var g = new GraphBuilder(7);
        g.Input("x", F32, [2, 3, 4, 4]);
        g.Input("y", F32, [2, 3, 4, 4]);
        g.Node("Max", ["x", "y"], "o_max", "max");
        g.Node("Min", ["x", "y"], "o_min", "min");
        g.Node("Sum", ["x", "y"], "o_sum", "sum");
        g.Node("Mean", ["x", "y"], "o_mean", "mean");
        g.Node("MaxPool", ["x"], "o_mp", "maxpool", ("kernel_shape", new long[] { 2, 2 }));
        g.Node("AveragePool", ["x"], "o_ap", "avgpool", ("kernel_shape", new long[] { 3, 3 }), ("pads", new long[] { 1, 1, 1, 1 }));
        g.Node("BatchNormalization", ["x", .. g.BnParams("bnp", 3)], "o_bn", "bn");
        g.Node("Flatten", ["x"], "fl", "flatten");
        g.Init("wm", F32, [48, 5]);
        g.Node("MatMul", ["fl", "wm"], "mm", "matmul");
        g.Init("wg", F32, [48, 5]);
        g.Init("c5", F32, [5]);
        g.Node("Gemm", ["fl", "wg", "c5"], "gm", "gemm");
        g.Node("PRelu", ["mm", "c5"], "o_prelu", "prelu");
        g.Node("Constant", [], "k", "constant", ("value", NormFold.Tensors.TensorData.Create("kv", F32, [5], new double[] { 1, 2, 3, 4, 5 })));
        g.Node("Add", ["gm", "k"], "o_gemm", "add_k");
        foreach (var o in new[] { "o_max", "o_min", "o_sum", "o_mean", "o_mp", "o_ap", "o_bn", "o_prelu", "o_gemm" }) g.Output(o);
        RaiseAndCheck(g.Build(), 10);
    }

    [Fact]
    public void A_body_node_that_keeps_its_meaning_does_not_block()
    {
        var raised = RaiseAndCheck(CommonOps13(), 21);
        Assert.Equal(21, raised.DefaultOpset);
        Assert.Contains(raised.Proto.Graph.Node, n => n.OpType == "If");
    }

    // ---- refusals: each exemption's condition failing, unknown and removed ops, bodies ----

    [Theory]
    [InlineData(1L, "axis 1 alone instead of the flattened axes 1..3")]
    [InlineData(-3L, "axis 1 alone instead of the flattened axes 1..3")]
    public void Softmax_not_over_the_last_axis_blocks_13(long axis, string what)
    {
        var why = Blocked(One(11, "Softmax", attrs: ("axis", axis)), 13);
        Assert.Equal($"Softmax 'n' (Softmax-13 changes the axis semantics: {what})", why);
    }

    [Fact]
    public void Softmax_with_the_default_axis_on_rank_3_blocks_13()
    {
        // Softmax-11's default axis is 1, Softmax-13's is −1.
        Assert.Contains("Softmax-13 changes the axis semantics: axis 2 alone instead of the flattened axes 1..2",
            Blocked(One(11, "Softmax", dims: [2, 3, 4]), 13));
    }

    [Theory]
    [InlineData("LogSoftmax")]
    [InlineData("Hardmax")]
    public void LogSoftmax_and_hardmax_share_the_axis_change(string op)
    {
        Assert.Contains($"{op}-13 changes the axis semantics", Blocked(One(12, op, attrs: ("axis", 1L)), 13));
        Assert.Empty(OpsetUpgrade.Blockers(One(12, op, attrs: ("axis", 3L)), 13));
    }

    [Fact]
    public void Softmax_of_unknown_rank_blocks_13()
    {
        var g = new GraphBuilder(11);
        g.Input("x", F32, null);
        g.Node("Softmax", ["x"], "y", "sm", ("axis", -1L));
        g.Output("y");
        Assert.Equal("Softmax 'sm' (Softmax-13 changes the axis semantics and the input's rank is not known for certain)", Blocked(g.Build(), 13));
    }

    [Fact]
    public void A_value_info_declaring_a_wrong_rank_does_not_make_a_softmax_look_unchanged()
    {
        // x is [2, 3, 4, 5]; a value_info says r = Relu(x) has rank 2, where axis 1 would be the last.
        var g = new GraphBuilder(11);
        g.Input("x", F32, [2, 3, 4, 5]);
        g.Node("Relu", ["x"], "r", "relu");
        g.Graph.ValueInfo.Add(Value("r", F32, [6, 20]));
        g.Node("Softmax", ["r"], "y", "sm", ("axis", 1L));
        g.Output("y");
        var model = g.Build();
        // The value_info contradicts the rank propagated from x, so it is ignored (GraphIndex) and the true rank decides.
        Assert.Equal("Softmax 'sm' (Softmax-13 changes the axis semantics: axis 1 alone instead of the flattened axes 1..3)", Blocked(model, 13));

        // Raised anyway (Raise itself refuses), ORT computes something else: the refusal is what keeps exit 0 honest.
        Assert.Throws<InvalidOperationException>(() => OpsetUpgrade.Raise(new OnnxModel(model.Proto.Clone(), null), 13));
        var raised = new OnnxModel(model.Proto.Clone(), null);
        raised.Proto.OpsetImport[0].Version = 13;
        raised.Proto.Graph.ValueInfo.Clear();
        model.Proto.Graph.ValueInfo.Clear();
        Assert.False(EquivalenceChecker.Check(model, raised, new CheckOptions { Iterations = 1 }).Passed);
    }

    /// <summary>opset 9: Pad-2 (constant with +0, with a value, reflect with a value it ignores, edge, negative pads),
    /// every reduction with axes (one an empty list, which reduces all), Split with a split attribute and without,
    /// TopK's k, Dropout's ratio: the attributes that became inputs at 10–18, which the raise rewrites.</summary>
    internal static OnnxModel AttributeInputs9()
    {
        var g = new GraphBuilder(9);
        g.Input("x", F32, [2, 3, 4, 6]);
        long[] pads = [0, 0, 1, 2, 0, 0, 2, 1];
        g.Node("Pad", ["x"], "o_pad0", "pad_zero", ("pads", pads));
        g.Node("Pad", ["x"], "o_padv", "pad_value", ("pads", pads), ("value", -1.5f));
        g.Node("Pad", ["x"], "o_padr", "pad_reflect", ("mode", "reflect"), ("pads", new long[] { 0, 0, 1, 1, 0, 0, 1, 1 }), ("value", 3f));
        g.Node("Pad", ["x"], "o_pade", "pad_edge", ("mode", "edge"), ("pads", pads));
        g.Node("Pad", ["x"], "o_padn", "pad_negative", ("pads", new long[] { 0, 0, -1, 1, 0, 0, 0, -2 }));
        // Reductions on (0.5, 1.5), where every one is finite.
        g.Node("Sigmoid", ["x"], "sg", "sigmoid");
        g.Init("half", F32, [], [0.5]);
        g.Node("Add", ["sg", "half"], "p", "positive");
        string[] reductions = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
            "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"];
        for (int i = 0; i < reductions.Length; i++)
        {
            long[] axes = (i % 3) switch { 0 => [1], 1 => [2, 3], _ => [0, 3] };
            g.Node(reductions[i], ["p"], "o_" + reductions[i], reductions[i].ToLowerInvariant(), ("axes", axes), ("keepdims", (long)(i % 2)));
        }
        g.Node("ReduceMean", ["p"], "o_mean_all", "reducemean_all", ("axes", Array.Empty<long>()));
        g.Node("ReduceSum", ["p"], "o_sum_all", "reducesum_all", ("axes", Array.Empty<long>()), ("keepdims", 0L));
        g.NodeMulti("Split", ["x"], ["o_s1", "o_s2"], "split", ("axis", 1L), ("split", new long[] { 1, 2 }));
        g.NodeMulti("Split", ["x"], ["o_e1", "o_e2", "o_e3"], "split_equal", ("axis", 3L));
        g.NodeMulti("TopK", ["x"], ["o_topk", "o_topk_i"], "topk", ("k", 2L));
        g.Node("Dropout", ["x"], "o_dropout", "dropout", ("ratio", 0.3f));
        foreach (var o in (string[])["o_pad0", "o_padv", "o_padr", "o_pade", "o_padn", .. reductions.Select(r => "o_" + r), "o_mean_all",
            "o_sum_all", "o_s1", "o_s2", "o_e1", "o_e2", "o_e3", "o_topk"])
            g.Output(o);
        g.Output("o_topk_i", I64);
        g.Output("o_dropout");
        return g.Build();
    }

    [Theory]
    [InlineData(10)]
    [InlineData(11)]
    [InlineData(12)]
    [InlineData(13)]
    [InlineData(17)]
    [InlineData(18)]
    [InlineData(21)]
    [InlineData(23)]
    public void Attributes_that_became_inputs_are_rewritten_and_compute_the_same(long target) =>
        RaiseAndCheck(AttributeInputs9(), target);

    [Fact]
    public void The_rewritten_nodes_take_the_attributes_values_as_constant_inputs()
    {
        var raised = RaiseAndCheck(AttributeInputs9(), 18);
        var nodes = raised.Proto.Graph.Node.ToDictionary(n => n.Name);
        var init = raised.Proto.Graph.Initializer.ToDictionary(t => t.Name);
        long[] Ints(string node, int input) => [.. init[nodes[node].Input[input]].Int64Data];

        Assert.Equal([0, 0, 1, 2, 0, 0, 2, 1], Ints("pad_zero", 1));
        Assert.Equal(2, nodes["pad_zero"].Input.Count);                                          // +0: Pad-11's default
        Assert.Equal(-1.5f, Assert.Single(init[nodes["pad_value"].Input[2]].FloatData));
        Assert.Equal(2, nodes["pad_reflect"].Input.Count);                                       // reflect ignores the value
        Assert.Equal("reflect", Assert.Single(nodes["pad_reflect"].Attribute).S.ToStringUtf8());
        Assert.Equal([1], Ints("reducesum", 1));
        Assert.Equal([2, 3], Ints("reducemean", 1));
        Assert.Equal([0, 3], Ints("reducemax", 1));
        Assert.Equal("keepdims", Assert.Single(nodes["reducemean"].Attribute).Name);
        Assert.Single(nodes["reducemean_all"].Input);                                            // empty axes: reduce all
        Assert.Empty(nodes["reducemean_all"].Attribute);
        Assert.Equal([1, 2], Ints("split", 1));
        Assert.Equal(("num_outputs", 3L), (nodes["split_equal"].Attribute[1].Name, nodes["split_equal"].Attribute[1].I));
        Assert.Single(nodes["split_equal"].Input);
        Assert.Equal([2], Ints("topk", 1));
        Assert.Equal(0.3f, Assert.Single(init[nodes["dropout"].Input[1]].FloatData));
        Assert.Empty(nodes["dropout"].Attribute);
        Assert.Equal(init.Count, raised.Proto.Graph.Initializer.Select(t => t.Name).Distinct().Count());
    }

    /// <summary>opset 13 as torch exports a GroupNorm net and a LayerNorm net, each ending in a ReduceMean(axes) global
    /// pool: raising to 21 (GroupNormalization-21) used to be refused by the pool's ReduceMean-18.</summary>
    [Fact]
    public void Groupnorm_swap_raises_13_to_21_past_a_reducemean_with_axes()
    {
        var g = new GraphBuilder(13);
        var gn = ConvGroupNormSoftmax(-1);
        g.Graph.Input.Add(gn.Proto.Graph.Input);
        g.Graph.Initializer.Add(gn.Proto.Graph.Initializer);
        g.Graph.Node.Add(gn.Proto.Graph.Node.Where(n => n.OpType != "Softmax"));
        g.Node("ReduceMean", ["gn"], "y", "pool", ("axes", new long[] { 2, 3 }), ("keepdims", 0L));
        g.Output("y");
        var original = g.Build();
        var (folded, r) = Fold(original, new PipelineOptions { SwapGroupNorm = true, TargetOpset = 21 });
        Assert.Equal(Outcome.Replaced, r.Log.Decisions.Single(d => d.Anchor == "instnorm").Outcome);
        Assert.Equal(21, folded.DefaultOpset);
        var pool = folded.Proto.Graph.Node.Single(n => n.Name == "pool");
        Assert.Equal(2, pool.Input.Count);
        AssertEquivalent(original, folded);
    }

    [Fact]
    public void Attributes_that_became_inputs_inside_a_loop_body_are_rewritten_with_the_body_s_own_constants()
    {
        // Body: acc [2, 3] → Pad(value 0.25) → ReduceMean(axes 1) → acc − mean → Split(split [1, 2], axis 1) → parts swapped.
        var g = LoopOver(body =>
        {
            body.Node("Pad", ["acc"], "pd", "body_pad", ("pads", new long[] { 0, 1, 0, 1 }), ("value", 0.25f));    // [2, 5]
            body.Node("ReduceMean", ["pd"], "rm", "body_mean", ("axes", new long[] { 1 }));                       // [2, 1]
            body.Node("Sub", ["acc", "rm"], "d", "body_sub");
            body.NodeMulti("Split", ["d"], ["s1", "s2"], "body_split", ("axis", 1L), ("split", new long[] { 1, 2 }));
            body.Node("Concat", ["s2", "s1"], "acc_out", "body_concat", ("axis", 1L));
        });
        var raised = RaiseAndCheck(g.Build(), 18);
        var b = raised.Proto.Graph.Node.Single(n => n.OpType == "Loop").Attribute.Single().G;
        Assert.Equal(4, b.Initializer.Count);                                                    // pads, value, axes, split
        var consts = b.Initializer.Select(t => t.Name).ToHashSet();
        Assert.All(b.Node.Where(n => n.Name is "body_pad" or "body_mean" or "body_split"), n => Assert.Contains(n.Input[1], consts));
        Assert.Contains(b.Node.Single(n => n.Name == "body_pad").Input[2], consts);
        Assert.Empty(raised.Proto.Graph.Initializer.Where(t => t.Name.StartsWith("body_")));
    }

    /// <summary>opset 11 as torch exports upsampling: Resize with an empty roi and constant scales (nearest asymmetric/floor,
    /// linear pytorch_half_pixel, cubic half_pixel), or with an empty scales tensor and constant sizes (linear
    /// align_corners), which Resize-13 wants omitted.</summary>
    internal static OnnxModel Resizes11()
    {
        var g = new GraphBuilder(11);
        g.Input("x", F32, [1, 2, 3, 4]);
        g.Init("roi", F32, [0], []);
        g.Init("scales", F32, [4], [1, 1, 2, 2]);
        g.Init("no_scales", F32, [0], []);
        Int64Init(g, "sizes", [4], 1, 2, 5, 7);
        g.Node("Resize", ["x", "roi", "scales"], "o_nearest", "nearest", ("mode", "nearest"),
            ("coordinate_transformation_mode", "asymmetric"), ("nearest_mode", "floor"));
        g.Node("Resize", ["x", "roi", "scales"], "o_linear", "linear", ("mode", "linear"),
            ("coordinate_transformation_mode", "pytorch_half_pixel"));
        g.Node("Resize", ["x", "roi", "scales"], "o_cubic", "cubic", ("mode", "cubic"), ("cubic_coeff_a", -0.75f));
        g.Node("Resize", ["x", "roi", "no_scales", "sizes"], "o_sizes", "sizes", ("mode", "linear"),
            ("coordinate_transformation_mode", "align_corners"));
        foreach (var o in new[] { "o_nearest", "o_linear", "o_cubic", "o_sizes" }) g.Output(o);
        return g.Build();
    }

    [Theory]
    [InlineData(13)]
    [InlineData(18)]
    [InlineData(19)]
    [InlineData(21)]
    public void Torch_resizes_at_11_raise_and_compute_the_same(long target)
    {
        var raised = RaiseAndCheck(Resizes11(), target);
        var sizes = raised.Proto.Graph.Node.Single(n => n.Name == "sizes");
        Assert.Equal(["x", "roi", "", "sizes"], sizes.Input);
        Assert.Equal(3, raised.Proto.Graph.Node.Single(n => n.Name == "nearest").Input.Count);
    }

    /// <summary>opset 9 as torch exports a decoder: ConvTranspose with explicit pads, strides, output_padding and groups.</summary>
    [Theory]
    [InlineData(11)]
    [InlineData(13)]
    [InlineData(21)]
    public void Convtranspose_with_explicit_pads_raises_from_9_and_computes_the_same(long target)
    {
        var g = new GraphBuilder(9);
        g.Input("x", F32, [1, 4, 5, 5]);
        g.Init("w", F32, [4, 3, 3, 3]);
        g.Init("b", F32, [6]);
        g.Node("ConvTranspose", ["x", "w", "b"], "y", "deconv", ("strides", new long[] { 2, 2 }), ("pads", new long[] { 1, 1, 1, 1 }),
            ("output_padding", new long[] { 1, 1 }), ("group", 2L), ("dilations", new long[] { 1, 1 }), ("kernel_shape", new long[] { 3, 3 }));
        g.Output("y");
        RaiseAndCheck(g.Build(), target);
    }

    /// <summary>opset 8: Upsample-7 (scales attribute), nearest and linear; it becomes Upsample-9 (scales input), then
    /// Resize-10 (Upsample's deprecation), then Resize-11 (asymmetric coordinates, nearest rounded down).</summary>
    static OnnxModel Upsamples8()
    {
        var g = new GraphBuilder(8);
        g.Input("x", F32, [1, 2, 3, 4]);
        foreach (var (mode, scales) in new[] { ("nearest", new[] { 1f, 1f, 2f, 3f }), ("linear", new[] { 1f, 1f, 2f, 2.5f }) })
        {
            g.Node("Upsample", ["x"], "o_" + mode, mode, ("mode", mode)).Attribute.Add(new NormFold.Onnx.Proto.AttributeProto
                { Name = "scales", Type = NormFold.Onnx.Proto.AttributeProto.Types.AttributeType.Floats, Floats = { scales } });
            g.Output("o_" + mode);
        }
        return g.Build();
    }

    [Theory]
    [InlineData(9, "Upsample")]
    [InlineData(10, "Resize")]
    [InlineData(11, "Resize")]
    [InlineData(13, "Resize")]
    [InlineData(21, "Resize")]
    public void Upsample_becomes_resize_and_computes_the_same(long target, string op)
    {
        var raised = RaiseAndCheck(Upsamples8(), target);
        var up = raised.Proto.Graph.Node.Single(n => n.Name == "nearest");
        Assert.Equal(op, up.OpType);
        Assert.Equal([1f, 1f, 2f, 3f], Assert.Single(raised.Proto.Graph.Initializer, t => t.Name == up.Input[^1]).FloatData);
        if (target >= 11)
            Assert.Equal(["mode=nearest", "coordinate_transformation_mode=asymmetric", "nearest_mode=floor"],
                up.Attribute.Select(a => $"{a.Name}={a.S.ToStringUtf8()}"));
    }

    /// <summary>opset 10 as torch exports upsampling: Resize-10 (nearest, linear) with constant scales.</summary>
    [Theory]
    [InlineData(11)]
    [InlineData(13)]
    [InlineData(21)]
    public void Resize_10_raises_and_computes_the_same(long target)
    {
        var g = new GraphBuilder(10);
        g.Input("x", F32, [1, 2, 3, 4]);
        g.Init("scales", F32, [4], [1, 1, 2, 2]);
        g.Node("Resize", ["x", "scales"], "o_nearest", "nearest", ("mode", "nearest"));
        g.Node("Resize", ["x", "scales"], "o_linear", "linear", ("mode", "linear"));
        g.Output("o_nearest");
        g.Output("o_linear");
        RaiseAndCheck(g.Build(), target);
    }

    [Fact]
    public void Downsampling_or_computed_scales_keep_upsample_and_resize_10_from_raising()
    {
        var g = new GraphBuilder(10);
        g.Input("x", F32, [1, 2, 4, 4]);
        g.Init("half", F32, [4], [1, 1, 0.5, 0.5]);
        g.Node("Resize", ["x", "half"], "y", "resize", ("mode", "nearest"));
        g.Output("y");
        Assert.Equal("Resize 'resize' (Resize-11 changed its inputs and coordinate transformation; kept only for constant scales ≥ 1 and mode nearest or linear)",
            Blocked(g.Build(), 11));
        Assert.Equal("Upsample 'upsample' (" + UpsampleRefused + ")", Blocked(LayerNormClip9(upsample: true), 10));
    }

    const string UpsampleRefused = "Upsample-10 is replaced by Resize; only for constant scales ≥ 1 (then both round nearest down) and mode nearest or linear";

    [Theory]
    [InlineData("auto_pad", "SAME_UPPER", "ConvTranspose-11 changed how auto_pad SAME_UPPER splits the padding")]
    [InlineData("output_shape", null, "ConvTranspose-11 changed how output_shape splits the padding")]
    [InlineData("dilations", null, "ConvTranspose-11 changed how dilations enter the output size")]
    public void Convtranspose_padding_worded_differently_at_11_blocks(string attr, string? value, string why)
    {
        var g = new GraphBuilder(9);
        g.Input("x", F32, [1, 2, 4, 4]);
        g.Init("w", F32, [2, 2, 3, 3]);
        g.Node("ConvTranspose", ["x", "w"], "y", "deconv", ("strides", new long[] { 2, 2 }),
            (attr, value ?? (object)(attr == "output_shape" ? new long[] { 8, 8 } : new long[] { 2, 2 })));
        g.Output("y");
        Assert.Equal($"ConvTranspose 'deconv' ({why})", Blocked(g.Build(), 11));
    }

    [Fact]
    public void Resize_refusals_name_what_changed()
    {
        var tf = One(11, "Resize", extraInputs: ["roi", "scales"], attrs: ("coordinate_transformation_mode", "tf_half_pixel_for_nn"));
        Assert.Equal("Resize 'n' (Resize-13 dropped the coordinate_transformation_mode tf_half_pixel_for_nn, which this node uses)", Blocked(tf, 13));

        // Beside sizes, a scales that is a graph input (not known to be empty) cannot be omitted.
        var g = new GraphBuilder(11);
        g.Input("x", F32, [1, 2, 3, 4]);
        g.Input("scales", F32, [0]);
        g.Init("roi", F32, [0], []);
        Int64Init(g, "sizes", [4], 1, 2, 5, 7);
        g.Node("Resize", ["x", "roi", "scales", "sizes"], "y", "resize", ("mode", "linear"));
        g.Output("y");
        Assert.Equal("Resize 'resize' (Resize-13 omits scales when sizes is given, and this node's scales is not a constant empty tensor)",
            Blocked(g.Build(), 13));

        Assert.Equal("Resize 'n' (Resize-18 added the attribute antialias that this node already has, so it was not valid before)",
            Blocked(One(13, "Resize", extraInputs: ["", "scales"], attrs: ("antialias", 1L)), 18));
    }

    /// <summary>opset 18: GroupNormalization-18 (3 groups of 2 channels) with constant per-group scale and bias.</summary>
    static GraphBuilder GroupNorm18(int type = F32, long[]? dims = null, bool scaleIsInput = false)
    {
        var g = new GraphBuilder(18);
        g.Input("x", type, dims ?? [2, 6, 3, 3]);
        if (scaleIsInput) g.Input("scale", type, [3]); else g.Init("scale", type, [3], [0.5, 1.5, -2]);
        g.Init("bias", type, [3], [0.25, -1, 3]);
        g.Node("GroupNormalization", ["x", "scale", "bias"], "y", "gn", ("num_groups", 3L), ("epsilon", 1e-3f));
        g.Output("y", type);
        return g;
    }

    [Theory]
    [InlineData(F32)]
    [InlineData(F16)]
    public void Groupnormalization_18_raises_to_21_with_each_group_s_scale_and_bias_per_channel(int type)
    {
        var raised = RaiseAndCheck(GroupNorm18(type).Build(), 21);
        var gn = Assert.Single(raised.Proto.Graph.Node);
        var init = raised.Proto.Graph.Initializer.ToDictionary(t => t.Name);
        Assert.Equal([0.5, 0.5, 1.5, 1.5, -2, -2], raised.ReadDoubles(init[gn.Input[1]]));
        Assert.Equal([0.25, 0.25, -1, -1, 3, 3], raised.ReadDoubles(init[gn.Input[2]]));
        Assert.Equal(type, init[gn.Input[1]].DataType);
        Assert.Equal(type, gn.Attribute.Single(a => a.Name == "stash_type").I);   // 18 computes in x's type
    }

    [Fact]
    public void Groupnormalization_18_without_constant_per_group_parameters_or_a_known_channel_count_blocks_21()
    {
        const string why = "GroupNormalization 'gn' (GroupNormalization-21 takes scale and bias per channel instead of per group, and this node's are not constants of num_groups values over a known channel count it divides)";
        Assert.Equal(why, Blocked(GroupNorm18(scaleIsInput: true).Build(), 21));
        Assert.Equal(why, Blocked(GroupNorm18(dims: [2, -1, 3, 3]).Build(), 21));
        Assert.Equal(why, Blocked(GroupNorm18(dims: [2, 5, 3, 3]).Build(), 21));
        Assert.Empty(OpsetUpgrade.Blockers(GroupNorm18().Build(), 20));
    }

    // ---- refusals of the rewrites, and of the conditions they keep ----

    [Fact]
    public void A_pad_value_on_an_input_not_known_to_be_float_or_double_blocks_11()
    {
        var g = new GraphBuilder(9);
        g.Input("x", F16, [2, 3]);
        g.Node("Pad", ["x"], "y", "pad", ("pads", new long[] { 0, 1, 0, 1 }), ("value", 0.5f));
        g.Output("y", F16);
        Assert.Equal("Pad 'pad' (Pad-11 takes pads and value as inputs instead of attributes, and its value 0.5 needs its input to be known as float or double)",
            Blocked(g.Build(), 11));
        // A value of +0 is Pad-11's default for every type: no constant of x's type is needed.
        g.Graph.Node[0].Attribute[1].F = 0;
        Assert.Empty(OpsetUpgrade.Blockers(g.Build(), 11));
    }

    [Theory]
    [InlineData("Pad", "Pad-11 takes pads and value as inputs instead of attributes, and this node lacks pads")]
    [InlineData("TopK", "TopK-10 takes k as an input instead of an attribute, and this node lacks k")]
    public void A_node_lacking_its_required_attribute_blocks(string op, string why) =>
        Assert.Equal($"{op} 'n' ({why})", Blocked(One(9, op, op == "TopK" ? 2 : 1), 11));

    [Fact]
    public void A_rewritten_node_must_still_meet_the_change_s_other_conditions()
    {
        // noop_with_empty_axes is new at 18: a ReduceMean-13 carrying it was not valid, so its axes are not rewritten.
        Assert.Equal("ReduceMean 'n' (ReduceMean-18 added the attribute noop_with_empty_axes that this node already has, so it was not valid before)",
            Blocked(One(13, "ReduceMean", attrs: [("axes", new long[] { 1 }), ("noop_with_empty_axes", 1L)]), 18));
        Assert.Equal("ReduceSum 'n' (ReduceSum-13 added input 2 that this node already has, so it was not valid before)",
            Blocked(One(11, "ReduceSum", extraInputs: ["x"], attrs: ("axes", new long[] { 1 })), 13));
        Assert.Equal("Split 'n' (Split-18 added the attribute num_outputs that this node already has, so it was not valid before)",
            Blocked(One(13, "Split", 2, attrs: ("num_outputs", 2L)), 18));
        Assert.Equal("Dropout 'n' (Dropout-12 added the attribute seed that this node already has, so it was not valid before)",
            Blocked(One(11, "Dropout", attrs: [("ratio", 0.3f), ("seed", 1L)]), 12));
    }

    [Fact]
    public void A_read_dropout_mask_blocks_10()
    {
        Assert.Equal("Dropout 'n' (Dropout-10 changed the mask output's type, which this node produces)", Blocked(One(9, "Dropout", 2), 10));
        Assert.Empty(OpsetUpgrade.Blockers(One(9, "Dropout"), 10));
    }

    [Fact]
    public void Batchnorm_training_outputs_block_14_and_spatial_0_blocks_9()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [2, 3, 4]);
        g.NodeMulti("BatchNormalization", ["x", .. g.BnParams("p", 3)], ["y", "rm", "rv"], "bn");
        g.Output("y");
        Assert.Equal("BatchNormalization 'bn' (BatchNormalization-14 changed the training-mode outputs, which this node produces)", Blocked(g.Build(), 14));

        var s = new GraphBuilder(8);
        s.Input("x", F32, [2, 3, 4]);
        s.Node("BatchNormalization", ["x", .. s.BnParams("p", 3)], "y", "bn", ("spatial", 0L));
        s.Output("y");
        Assert.Equal("BatchNormalization 'bn' (BatchNormalization-9 dropped spatial, which is not 1 here)", Blocked(s.Build(), 9));
    }

    [Fact]
    public void A_type_an_exemption_did_not_have_before_blocks()
    {
        // Add-14 only added int8/int16/uint8/uint16: an int8 Add at opset 13 was not valid there, so no promise holds.
        var g = new GraphBuilder(13);
        g.Input("a", 3, [4]);
        g.Input("b", 3, [4]);
        g.Node("Add", ["a", "b"], "y", "add");
        g.Output("y", 3);
        Assert.Equal("Add 'add' (Add-14 added the element type Int8 that 'a' has, so this node was not valid before)", Blocked(g.Build(), 14));
    }

    [Fact]
    public void An_attribute_or_input_an_exemption_added_blocks_when_already_there()
    {
        var reshape = new GraphBuilder(13);
        reshape.Input("x", F32, [2, 3]);
        reshape.Int64s("shape", 3, 2);
        reshape.Node("Reshape", ["x", "shape"], "y", "reshape", ("allowzero", 1L));
        reshape.Output("y");
        Assert.Equal("Reshape 'reshape' (Reshape-14 added the attribute allowzero that this node already has, so it was not valid before)",
            Blocked(reshape.Build(), 14));

        var pad = new GraphBuilder(13);
        pad.Input("x", F32, [2, 3]);
        pad.Int64s("pads", 1, 1, 1, 1);
        pad.Init("v", F32, [], [0]);
        pad.Int64s("axes", 0, 1);
        pad.Node("Pad", ["x", "pads", "v", "axes"], "y", "pad");
        pad.Output("y");
        Assert.Equal("Pad 'pad' (Pad-18 added input 4 that this node already has, so it was not valid before)", Blocked(pad.Build(), 18));
    }

    [Theory]
    [InlineData(10, "Resize", 11, "Resize 'n' (Resize-11 changed its inputs and coordinate transformation; kept only for constant scales ≥ 1 and mode nearest or linear)")]
    [InlineData(10, "NonMaxSuppression", 11, "NonMaxSuppression 'n' (NonMaxSuppression-11 changed its definition, and NormFold has no rule that this node keeps its meaning)")]
    [InlineData(10, "OneHot", 11, "OneHot 'n' (OneHot-11 changed how negative indices are read)")]
    public void A_change_without_an_exemption_blocks(long from, string op, long to, string why)
    {
        Assert.Equal(why, Blocked(One(from, op), to));
        Assert.Empty(OpsetUpgrade.Blockers(One(from, op), to - 1));
    }

    [Fact]
    public void Raising_past_a_deprecation_blocks_unless_the_successor_means_the_same()
    {
        Assert.Equal("Upsample 'n' (" + UpsampleRefused + ")", Blocked(One(9, "Upsample"), 10));
        Assert.Equal("Scatter 'n' (Scatter is deprecated from opset 11)", Blocked(One(11, "Scatter"), 13)); // not valid at 11 already
    }

    /// <summary>opset 10: Scatter (axis 1) becomes ScatterElements at 11, Scatter's deprecation.</summary>
    [Theory]
    [InlineData(11)]
    [InlineData(16)]
    [InlineData(21)]
    public void Scatter_becomes_scatterelements_and_computes_the_same(long target)
    {
        var g = new GraphBuilder(10);
        g.Input("x", F32, [3, 4]);
        Int64Init(g, "idx", [3, 2], 1, 3, 0, 2, 3, 1);
        g.Init("upd", F32, [3, 2]);
        g.Node("Scatter", ["x", "idx", "upd"], "y", "scatter", ("axis", 1L));
        g.Output("y");
        var raised = RaiseAndCheck(g.Build(), target);
        Assert.Equal("ScatterElements", Assert.Single(raised.Proto.Graph.Node).OpType);
    }

    [Fact]
    public void Unknown_ops_and_ops_newer_than_the_model_block_but_other_domains_do_not()
    {
        Assert.Equal("FancyNorm 'n' (not an ai.onnx operator of opsets 1..23)", Blocked(One(13, "FancyNorm"), 14));
        Assert.Equal("Gelu 'n' (Gelu does not exist before opset 20, the model imports 13)", Blocked(One(13, "Gelu"), 14));
        var ms = One(13, "FusedGemm");
        ms.Proto.Graph.Node[0].Domain = "com.microsoft";
        Assert.Empty(OpsetUpgrade.Blockers(ms, 21));
        var aiOnnx = One(11, "Softmax", attrs: ("axis", 1L));
        aiOnnx.Proto.Graph.Node[0].Domain = "ai.onnx";
        Assert.Contains("Softmax-13", Blocked(aiOnnx, 13));
    }

    [Fact]
    public void A_changed_node_inside_an_if_body_blocks()
    {
        var g = new GraphBuilder(11);
        g.Input("x", F32, [2, 3, 4, 5]);
        g.Input("c", Bool, []);
        var then = g.Body("then");
        then.Node("Softmax", ["x"], "t", "body_softmax", ("axis", 1L));
        then.Output("t");
        var els = g.Body("else");
        els.Node("Identity", ["x"], "e", "body_identity");
        els.Output("e");
        g.Node("If", ["c"], "y", "if", ("then_branch", then.Graph), ("else_branch", els.Graph));
        g.Output("y");
        Assert.Equal("Softmax 'body_softmax' (Softmax-13 changes the axis semantics: axis 1 alone instead of the flattened axes 1..3)",
            Blocked(g.Build(), 13));
    }

    /// <summary>An opset-9 Loop (two trips) whose body applies one node, acc_out = OP(acc), to the carried [2, 3] value.</summary>
    static GraphBuilder LoopOver(string op, string name, params (string, object)[] attributes) =>
        LoopOver(body => body.Node(op, ["acc"], "acc_out", name, attributes));

    /// <summary>An opset-9 Loop (two trips) whose body's nodes (<paramref name="nodes"/>) compute acc_out [2, 3] from the
    /// carried acc [2, 3].</summary>
    static GraphBuilder LoopOver(Action<GraphBuilder> nodes)
    {
        var g = new GraphBuilder(9);
        g.Input("x", F32, [2, 3]);
        g.Int64s("trips", 2);
        var body = g.Body("body");
        body.Input("i", I64, []);
        body.Input("cond_in", Bool, []);
        body.Input("acc", F32, [2, 3]);
        body.Node("Identity", ["cond_in"], "cond_out", "body_cond");
        nodes(body);
        body.Output("cond_out", Bool);
        body.Output("acc_out");
        g.Node("Loop", ["trips", "", "x"], "y", "loop", ("body", body.Graph));
        g.Output("y");
        return g;
    }

    [Fact]
    public void A_changed_node_inside_a_loop_body_blocks()
    {
        var g = LoopOver("Softmax", "body_softmax", ("axis", 0L));
        Assert.Equal("Softmax 'body_softmax' (Softmax-13 changes the axis semantics: axis 0 alone instead of the flattened axes 0..1)",
            Blocked(g.Build(), 13));
    }

    [Fact]
    public void A_clip_inside_a_loop_body_is_rewritten_with_the_body_s_own_constants()
    {
        var g = LoopOver("Clip", "body_clip", ("min", 0f), ("max", 0.5f));
        var raised = RaiseAndCheck(g.Build(), 11);
        var b = raised.Proto.Graph.Node.Single(n => n.OpType == "Loop").Attribute.Single().G;
        Assert.Equal(2, b.Initializer.Count);
        Assert.Empty(raised.Proto.Graph.Initializer.Where(t => t.Name.StartsWith("body_clip")));
    }

    [Fact]
    public void Only_the_excused_node_itself_is_left_unrewritten_not_an_equal_one_in_another_branch()
    {
        // Two If branches hold equal ReduceMean(axes) nodes; the swap would remove the then-branch one only.
        var g = new GraphBuilder(13);
        g.Input("x", F32, [2, 3]);
        g.Input("c", Bool, []);
        var then = g.Body("then");
        then.Node("ReduceMean", ["x"], "m", "mean", ("axes", new long[] { 1 }));
        then.Output("m");
        var els = g.Body("else");
        els.Node("ReduceMean", ["x"], "m", "mean", ("axes", new long[] { 1 }));
        els.Output("m");
        g.Node("If", ["c"], "y", "if", ("then_branch", then.Graph), ("else_branch", els.Graph));
        g.Output("y");
        var model = g.Build();
        var branches = model.Proto.Graph.Node[0].Attribute.Select(a => a.G.Node[0]).ToArray();
        Assert.Equal(branches[0], branches[1]);
        var excused = new HashSet<NormFold.Onnx.Proto.NodeProto> { branches[0] };
        Assert.Empty(OpsetUpgrade.Blockers(model, 18, excused));
        OpsetUpgrade.Raise(model, 18, excused: excused);
        Assert.Single(branches[0].Input);
        Assert.Equal(2, branches[1].Input.Count);
    }

    [Fact]
    public void A_target_past_the_table_blocks()
    {
        Assert.Equal($"opset {OpsetUpgrade.HighestKnown + 1} is past opset {OpsetUpgrade.HighestKnown}, the newest NormFold knows",
            Blocked(One(13, "Relu"), OpsetUpgrade.HighestKnown + 1));
    }

    [Fact]
    public void Raise_updates_only_the_default_domain_import_and_the_ir_version()
    {
        var m = One(13, "Relu");
        m.Proto.OpsetImport.Add(new NormFold.Onnx.Proto.OperatorSetIdProto { Domain = "com.microsoft", Version = 1 });
        var before = m.Proto.Clone();
        OpsetUpgrade.Raise(m, 23);
        Assert.Equal([("", 23L), ("com.microsoft", 1L)], m.Proto.OpsetImport.Select(o => (o.Domain, o.Version)));
        Assert.Equal(before.IrVersion, m.Proto.IrVersion); // follows once the rewrites are done
        OpsetUpgrade.RaiseIrVersion(m);
        Assert.Equal(11, m.Proto.IrVersion);
        Assert.Equal(before.Graph, m.Proto.Graph);
    }
}

/// <summary>The two commands of issue 9 as a user runs them: exit 0 now means the model kept its opset and meaning.</summary>
[Collection("Console")]
public class OpsetUpgradeCliTests
{
    [Theory]
    [InlineData("softmax", "--swap-groupnorm", "21", 11, "Softmax-13 changes the axis semantics")]
    [InlineData("upsample", "--swap-layernorm", "17", 9, "Upsample-10 is replaced by Resize; only for constant scales")]
    public void Fold_with_a_target_opset_keeps_the_opset_and_reports_the_blocking_node(string name, string swap, string target,
        long opset, string why)
    {
        string dir = TempDir(), input = Path.Combine(dir, name + ".onnx"), output = Path.Combine(dir, name + ".out.onnx"),
            report = Path.Combine(dir, name + ".json");
        ModelWriter.Save(name == "softmax" ? OpsetUpgradeTests.ConvGroupNormSoftmax(1) : OpsetUpgradeTests.LayerNormClip9(upsample: true), input);
        // As the issue ran it, without --check: exit 0 must be trustworthy on its own.
        var (code, stdout, stderr) = NormFold.Tests.Cli.CliRunner.Run("fold", input, "-o", output, swap, "--target-opset", target,
            "--report", report);
        Assert.True(code == 0, stdout + stderr);
        var folded = OnnxModel.Load(output);
        Assert.Equal(opset, folded.DefaultOpset);
        Assert.Equal(0, Count(folded, "GroupNormalization") + Count(folded, "LayerNormalization"));
        Assert.Contains("OpsetTooLow", stdout);
        Assert.Contains(why, File.ReadAllText(report));
    }

    [Fact]
    public void Fold_check_raises_an_opset_9_layernorm_with_clip_slice_and_squeeze_attributes_to_17()
    {
        string dir = TempDir(), input = Path.Combine(dir, "ops9.onnx"), output = Path.Combine(dir, "ops9.out.onnx");
        ModelWriter.Save(OpsetUpgradeTests.AttributeOps9(), input);
        var (code, stdout, stderr) = NormFold.Tests.Cli.CliRunner.Run("fold", input, "-o", output, "--swap-layernorm",
            "--target-opset", "17", "--check");
        Assert.True(code == 0, stdout + stderr);
        var folded = OnnxModel.Load(output);
        Assert.Equal(17, folded.DefaultOpset);
        Assert.Equal(1, Count(folded, "LayerNormalization"));
        Assert.DoesNotContain("OpsetTooLow", stdout);
    }
}
