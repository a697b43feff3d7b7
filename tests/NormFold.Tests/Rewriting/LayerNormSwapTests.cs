using NormFold.Onnx;
using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting;

public class LayerNormSwapTests
{
    static readonly PipelineOptions Swap = new() { SwapLayerNorm = true, TargetOpset = 17 };

    /// <summary>The decomposition torch emits at opset ≤ 16 (ReduceMean anchor named "mean"), with variants.</summary>
    static GraphBuilder LayerNorm(long[] xDims, long[] axes, long opset = 17, bool affine = true, bool subTwice = false,
        bool fp16 = false, bool castAfterDiv = false, double exponent = 2, bool gammaInput = false, bool constantNodes = false, bool swapOperands = false)
    {
        var g = new GraphBuilder(opset);
        int t = fp16 ? F16 : F32;
        g.Input("x", t, xDims);
        long[] norm = xDims[^axes.Length..];
        (string, object)[] axesAttr = opset >= 18 ? [] : [("axes", axes)];
        string[] Reduce(string input, string axesName) => opset >= 18 ? [input, g.Int64s(axesName, axes)] : [input];

        g.Node("ReduceMean", Reduce("x", "axes_m"), "m", "mean", axesAttr);
        g.Node("Sub", ["x", "m"], "d", "sub");
        string forPow = "d";
        if (subTwice) { g.Node("Sub", ["x", "m"], "d2", "sub2"); forPow = "d2"; }
        if (fp16) { g.Node("Cast", [forPow], "d32", "cast_up", ("to", (long)F32)); forPow = "d32"; }
        g.Init("two", F32, [], [exponent]);
        g.Node("Pow", [forPow, "two"], "p", "pow");
        g.Node("ReduceMean", Reduce("p", "axes_v"), "v", "var", axesAttr);
        if (constantNodes) g.Node("Constant", [], "eps", "eps_const", ("value", NormFold.Tensors.TensorData.Create("eps", F32, Array.Empty<long>(), new double[] { 1e-5 })));
        else g.Init("eps", F32, [], [1e-5]);
        g.Node("Add", ["v", "eps"], "ve", "add_eps");
        g.Node("Sqrt", ["ve"], "s", "sqrt");
        string std = "s";
        if (fp16 && !castAfterDiv) { g.Node("Cast", ["s"], "s16", "cast_down", ("to", (long)F16)); std = "s16"; }
        // castAfterDiv: the float d is divided too, and the quotient cast back.
        if (castAfterDiv) { g.Node("Div", [forPow, "s"], "n32", "div"); g.Node("Cast", ["n32"], affine ? "n" : "y", "cast_down", ("to", (long)F16)); }
        else g.Node("Div", ["d", std], affine ? "n" : "y", "div");
        if (affine)
        {
            string gamma = gammaInput ? g.Input("gamma", t, norm) : constantNodes ? g.ConstantNode("gamma", t, norm, 0.5, 1.5) : g.Init("gamma", t, norm, 0.5, 1.5);
            string beta = constantNodes ? g.ConstantNode("beta", t, norm, -0.5, 0.5) : g.Init("beta", t, norm, -0.5, 0.5);
            g.Node("Mul", swapOperands ? [gamma, "n"] : ["n", gamma], "scaled", "mul");
            g.Node("Add", swapOperands ? [beta, "scaled"] : ["scaled", beta], "y", "add_beta");
        }
        g.Output("y", t, xDims);
        return g;
    }

    static (OnnxModel Folded, FoldResult Result) SwapAndCheck(OnnxModel original, string anchor = "mean",
        IReadOnlyDictionary<string, long[]>? shapes = null)
    {
        var (folded, r) = Fold(original, Swap);
        var d = r.Log.Decisions.Single(x => x.Anchor == anchor);
        Assert.True(d.Outcome == Outcome.Replaced, $"{d.Reason}: {d.Detail}");
        Assert.Equal("LayerNormSwap", d.Rule);
        Assert.Single(r.Log.Decisions, x => x.Outcome == Outcome.Replaced);
        Assert.Equal(0, Count(folded, "ReduceMean"));
        Assert.Equal(0, Count(folded, "Sqrt"));
        Assert.Equal(1, Count(folded, "LayerNormalization"));
        AssertEquivalent(original, folded, shapes: shapes);
        return (folded, r);
    }

    static OnnxModel TorchExport() => OnnxModel.Load(Path.Combine(ModelsDir, "layernorm_op13.onnx"));

    [Fact]
    public void Swaps_the_torch_export_raising_the_opset_to_17()
    {
        var original = TorchExport();
        var (folded, _) = SwapAndCheck(original, "/ln/ReduceMean", new Dictionary<string, long[]> { ["input"] = [3, 5, 24] });
        Assert.Equal(17, folded.DefaultOpset);
        var ln = folded.Proto.Graph.Node.Single(n => n.OpType == "LayerNormalization");
        Assert.Equal("output", ln.Output.Single());
        Assert.Equal(-1, ln.Attribute.Single(a => a.Name == "axis").I);
        Assert.Equal(["Transpose", "MatMul", "Add", "Relu", "LayerNormalization"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    [Fact]
    public void Torch_export_without_target_opset_is_left_with_opset_too_low()
    {
        var (folded, r) = Fold(TorchExport(), new PipelineOptions { SwapLayerNorm = true });
        var d = AssertLeft(r, SkipReason.OpsetTooLow, "/ln/ReduceMean");
        Assert.Contains("target opset of 17", d.Detail);
        Assert.DoesNotContain("--", d.Detail);
        Assert.Equal(13, folded.DefaultOpset);
        Assert.Equal(2, Count(folded, "ReduceMean"));
        Assert.Equal(0, Count(folded, "LayerNormalization"));
        // The variance reduction is no candidate of its own: the pattern has one row, at the mean.
        Assert.DoesNotContain(r.Log.Decisions, d => d.Anchor == "/ln/ReduceMean_1");
    }

    [Fact]
    public void Swaps_last_axis_of_rank_3()
    {
        var (folded, _) = SwapAndCheck(LayerNorm([-1, 5, 8], [-1]).Build(), shapes: new Dictionary<string, long[]> { ["x"] = [3, 5, 8] });
        Assert.Equal(["LayerNormalization"], folded.Proto.Graph.Node.Select(n => n.OpType));
        var scale = folded.Proto.Graph.Initializer.Single(i => i.Name == folded.Proto.Graph.Node[0].Input[1]);
        Assert.Equal([8L], scale.Dims);
    }

    [Fact]
    public void Swaps_two_trailing_axes()
    {
        var (folded, _) = SwapAndCheck(LayerNorm([2, 4, 6, 5], [-2, -1]).Build());
        var ln = folded.Proto.Graph.Node.Single();
        Assert.Equal(-2, ln.Attribute.Single(a => a.Name == "axis").I);
        Assert.Equal([6L, 5L], folded.Proto.Graph.Initializer.Single(i => i.Name == ln.Input[1]).Dims);
    }

    [Fact]
    public void Swaps_positive_trailing_axes_with_constant_nodes_and_swapped_operands()
    {
        var (folded, _) = SwapAndCheck(LayerNorm([2, 3, 4, 5], [2, 3], constantNodes: true, swapOperands: true).Build());
        Assert.Equal(0, Count(folded, "Constant"));
    }

    [Fact]
    public void Swaps_without_affine_using_ones_and_zeros()
    {
        var (folded, _) = SwapAndCheck(LayerNorm([2, 5, 8], [-1], affine: false).Build());
        var ln = folded.Proto.Graph.Node.Single();
        var values = (string name) => folded.ReadDoubles(folded.Proto.Graph.Initializer.Single(i => i.Name == name));
        Assert.All(values(ln.Input[1]), v => Assert.Equal(1.0, v));
        Assert.All(values(ln.Input[2]), v => Assert.Equal(0.0, v));
    }

    [Fact]
    public void Swaps_when_the_difference_is_computed_twice()
    {
        SwapAndCheck(LayerNorm([2, 5, 8], [-1], subTwice: true).Build());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Swaps_float16_with_a_float_variance_branch(bool castAfterDiv)
    {
        var (folded, r) = SwapAndCheck(LayerNorm([2, 5, 8], [-1], fp16: true, castAfterDiv: castAfterDiv).Build());
        Assert.Equal(0, Count(folded, "Cast"));
        var ln = folded.Proto.Graph.Node.Single();
        Assert.Equal(F16, folded.Proto.Graph.Initializer.Single(i => i.Name == ln.Input[1]).DataType);
        Assert.Contains("replaced 11 nodes", r.Log.Decisions.Single(d => d.Anchor == "mean").Detail);
    }

    [Fact]
    public void Swaps_opset_18_with_axes_as_input()
    {
        var (folded, _) = SwapAndCheck(LayerNorm([2, 5, 8], [-1], opset: 18).Build());
        Assert.Equal(18, folded.DefaultOpset);
        Assert.DoesNotContain(folded.Proto.Graph.Initializer, i => i.Name.StartsWith("axes"));
    }

    [Fact]
    public void Refuses_when_an_intermediate_is_a_graph_output()
    {
        var g = LayerNorm([2, 5, 8], [-1]);
        g.Output("s", F32, [2, 5, 1]);
        var (folded, r) = Fold(g.Build(), Swap);
        AssertLeft(r, SkipReason.IntermediateUsedOutside, "mean");
        Assert.Equal(0, Count(folded, "LayerNormalization"));
    }

    /// <summary>LayerNormalization takes γ as an input: a graph input of the normalized shape is passed as it is
    /// (ONNX Runtime's own LayerNorm fusion test model has γ/β as graph inputs).</summary>
    [Fact]
    public void Swaps_gamma_from_a_graph_input_of_the_normalized_shape()
    {
        var (folded, _) = SwapAndCheck(LayerNorm([2, 5, 8], [-1], gammaInput: true).Build());
        Assert.Equal("gamma", folded.Proto.Graph.Node.Single(n => n.OpType == "LayerNormalization").Input[1]);
    }

    [Fact]
    public void Refuses_gamma_from_a_graph_input_of_unknown_shape()
    {
        var g = LayerNorm([2, 5, 8], [-1], gammaInput: true);
        g.Graph.Input.Single(i => i.Name == "gamma").Type.TensorType.Shape = null;
        var (_, r) = Fold(g.Build(), Swap);
        Assert.Contains("gamma", AssertLeft(r, SkipReason.ParameterNotConstant, "mean").Detail);
    }

    [Fact]
    public void Refuses_gamma_from_a_graph_input_of_another_shape()
    {
        var g = LayerNorm([2, 5, 8], [-1], gammaInput: true);
        var dims = g.Graph.Input.Single(i => i.Name == "gamma").Type.TensorType.Shape.Dim;
        dims.Insert(0, new NormFold.Onnx.Proto.TensorShapeProto.Types.Dimension { DimValue = 1 });
        var (_, r) = Fold(g.Build(), Swap);
        Assert.Contains("[1, 8]", AssertLeft(r, SkipReason.NotPerChannel, "mean").Detail);
    }

    [Fact]
    public void Refuses_axes_that_are_not_trailing()
    {
        var (_, r) = Fold(LayerNorm([2, 5, 8], [1]).Build(), Swap);
        Assert.Contains("trailing", AssertLeft(r, SkipReason.PatternMismatch, "mean").Detail);
    }

    [Fact]
    public void Refuses_an_exponent_other_than_2()
    {
        var (_, r) = Fold(LayerNorm([2, 5, 8], [-1], exponent: 3).Build(), Swap);
        Assert.Contains("exponent", AssertLeft(r, SkipReason.PatternMismatch, "mean").Detail);
    }

    [Fact]
    public void Refuses_gamma_that_does_not_fit_the_normalized_shape()
    {
        var g = LayerNorm([2, 5, 8], [-1]);
        g.SetInit("gamma", F32, [5, 1], [1, 2, 3, 4, 5]);
        var (_, r) = Fold(g.Build(), Swap);
        AssertLeft(r, SkipReason.NotPerChannel, "mean");
    }

    [Fact]
    public void A_plain_reduction_is_no_candidate()
    {
        var g = new GraphBuilder(17);
        g.Input("x", F32, [2, 5, 8]);
        g.Node("ReduceMean", ["x"], "y", "mean", ("axes", new long[] { -1 }));
        g.Output("y", F32, [2, 5, 1]);
        var (_, r) = Fold(g.Build(), Swap);
        Assert.Empty(r.Log.Decisions);
    }

    [Fact]
    public void Disabling_the_swap_leaves_the_pattern_and_says_which_rule()
    {
        var (folded, r) = Fold(LayerNorm([2, 5, 8], [-1]).Build(), Swap with { DisabledRules = new HashSet<string> { "LayerNormSwap" } });
        Assert.Contains("LayerNormSwap", AssertLeft(r, SkipReason.RuleDisabled, "mean").Detail);
        Assert.Equal(0, Count(folded, "LayerNormalization"));
    }

    /// <summary>Campaign layernorm:7000315 / 7000483: X's shape undeclared (and, in the second, value_info for
    /// intermediates): LayerNormalization(axis −1) was written for an X ORT then fed as a scalar. The axis counts from a
    /// rank that must follow from the graph, not be assumed.</summary>
    [Fact]
    public void Refuses_when_the_rank_of_the_input_is_not_known()
    {
        var g = LayerNorm([2, 5, 8], [-1]);
        g.Graph.Input.Single(i => i.Name == "x").Type.TensorType.Shape = null;
        var (folded, r) = Fold(g.Build(), Swap);
        var detail = AssertLeft(r, SkipReason.UnknownRank, "mean").Detail;
        Assert.Contains("rank of 'x'", detail);
        Assert.Contains("the proof stops at graph input 'x', which declares no shape", detail);
        Assert.Equal(0, Count(folded, "LayerNormalization"));
    }

    /// <summary>A residual Add(x0, Reshape(x0, t)) with t of unknown length: the Add's rank is not the known operand's (the
    /// other may be higher), and the refusal names where the proof stops — the Reshape, past the Add.</summary>
    [Fact]
    public void An_unproven_rank_names_where_the_proof_stops()
    {
        var (_, r) = Fold(WithPrefix([2, 5, 8], [2, 5, 8], g =>
        {
            g.Input("t", (int)NormFold.Onnx.Proto.TensorProto.Types.DataType.Int64, [-1]);
            g.Node("Reshape", ["x0", "t"], "r", "reshape");
            g.Node("Add", ["x0", "r"], "x", "residual");
        }).Build(), Swap);
        var detail = AssertLeft(r, SkipReason.UnknownRank, "mean").Detail;
        Assert.Contains("the rank of 'x' does not follow", detail);
        Assert.Contains("the proof stops at Reshape 'reshape': its inputs' ranks are proven", detail);

        (_, r) = Fold(WithPrefix([2, 5, 8], [2, 5, 8], g => g.Node("Relu", [g.Input("u", F32, null)], "x", "relu")).Build(), Swap);
        Assert.Contains("the proof stops at graph input 'u', which declares no shape", AssertLeft(r, SkipReason.UnknownRank, "mean").Detail);
    }


    [Fact]
    public void Refuses_when_only_a_value_info_declares_the_rank()
    {
        var g = LayerNorm([2, 5, 8], [-1]);
        var input = g.Graph.Input.Single(i => i.Name == "x");
        input.Name = "x0";
        input.Type.TensorType.Shape = null;
        g.Node("Identity", ["x0"], "x", "identity");
        var identity = g.Graph.Node[^1];
        g.Graph.Node.RemoveAt(g.Graph.Node.Count - 1);
        g.Graph.Node.Insert(0, identity);
        g.Graph.ValueInfo.Add(Value("x", F32, [2, 5, 8]));
        g.Graph.ValueInfo.Add(Value("m", F32, [2, 5, 1]));
        var (folded, r) = Fold(g.Build(), Swap);
        Assert.Contains("value_info", AssertLeft(r, SkipReason.UnknownRank, "mean").Detail);
        Assert.Equal(0, Count(folded, "LayerNormalization"));
    }

    // ---- Ranks proven through Transpose, Concat, Expand, Reshape(Concat), Unsqueeze/Squeeze (ConvNeXt, ViT, PP-OCR rec) ----

    /// <summary><see cref="LayerNorm"/> over the last axis of x = prefix(x0): x0 declared <paramref name="x0Dims"/> (null: no
    /// shape), fed <paramref name="x0Fed"/>.</summary>
    static (OnnxModel Folded, FoldResult Result) SwapAfter(long[] xDims, long[]? x0Dims, long[] x0Fed, Action<GraphBuilder> prefix,
        long[]? lyingValueInfo = null)
    {
        var g = WithPrefix(xDims, x0Dims, prefix);
        if (lyingValueInfo is not null) g.Graph.ValueInfo.Add(Value("x", F32, lyingValueInfo));
        return SwapAndCheck(g.Build(), shapes: new Dictionary<string, long[]> { ["x0"] = x0Fed });
    }

    /// <summary><see cref="LayerNorm"/> over the last axis of x = prefix(x0), x0 declared <paramref name="x0Dims"/>.</summary>
    static GraphBuilder WithPrefix(long[] xDims, long[]? x0Dims, Action<GraphBuilder> prefix)
    {
        var g = LayerNorm(xDims, [-1]);
        g.Graph.Input.Remove(g.Graph.Input.Single(i => i.Name == "x"));
        g.Input("x0", F32, x0Dims);
        int before = g.Graph.Node.Count;
        prefix(g); // ends in a node writing "x"
        var added = g.Graph.Node.Skip(before).ToList();
        foreach (var n in added) g.Graph.Node.Remove(n);
        for (int i = added.Count - 1; i >= 0; i--) g.Graph.Node.Insert(0, added[i]);
        return g;
    }

    static string Scalar64(GraphBuilder g, string name, long value)
    {
        var t = new NormFold.Onnx.Proto.TensorProto { Name = name, DataType = (int)NormFold.Onnx.Proto.TensorProto.Types.DataType.Int64 };
        t.Int64Data.Add(value);
        g.Graph.Initializer.Add(t);
        return name;
    }

    /// <summary>ConvNeXt: Conv (its input's rank unknown: the output has W's rank and W's channels) → Transpose(perm) → LayerNorm.</summary>
    [Fact]
    public void Swaps_after_a_transpose_of_a_conv_whose_input_rank_is_unknown()
    {
        SwapAfter([2, 4, 4, 8], null, [2, 3, 4, 4], g =>
        {
            g.Node("Conv", ["x0", g.Init("w", F32, [8, 3, 1, 1])], "c", "conv");
            g.Node("Transpose", ["c"], "x", "transpose", ("perm", new long[] { 0, 2, 3, 1 }));
        });
    }

    /// <summary>A value_info claiming x is [2, 4, 4, 1] (proven [2, 4, 4, 8] through Conv and Transpose): believed, γ/β [8]
    /// would widen a dim of 1 and the swap be refused; the proof swaps, and the lie is dropped from the rewritten graph.
    /// (x0 is declared: ONNX Runtime, which cannot infer past an undeclared input either, would plan buffers by the lie.)</summary>
    [Fact]
    public void A_lying_value_info_does_not_change_the_proven_shape()
    {
        var (folded, _) = SwapAfter([2, 4, 4, 8], [2, 3, 4, 4], [2, 3, 4, 4], g =>
        {
            g.Node("Conv", ["x0", g.Init("w", F32, [8, 3, 1, 1])], "c", "conv");
            g.Node("Transpose", ["c"], "x", "transpose", ("perm", new long[] { 0, 2, 3, 1 }));
        }, lyingValueInfo: [2, 4, 4, 1]);
        var ln = folded.Proto.Graph.Node.Single(n => n.OpType == "LayerNormalization");
        Assert.Equal(new long[] { 8 }, folded.Proto.Graph.Initializer.Single(t => t.Name == ln.Input[1]).Dims);
        Assert.DoesNotContain(folded.Proto.Graph.ValueInfo, v => v.Name == "x");
    }

    /// <summary>PP-OCR rec (SVTR): Conv → Reshape(Concat of constants [0], [8, −1]) → Transpose(perm [0, 2, 1]) → LayerNorm.</summary>
    [Fact]
    public void Swaps_after_a_reshape_to_a_concat_of_constants_and_a_transpose()
    {
        SwapAfter([2, 16, 8], null, [2, 3, 4, 4], g =>
        {
            g.Node("Conv", ["x0", g.Init("w", F32, [8, 3, 1, 1])], "c", "conv");
            g.Node("Concat", [g.Int64s("s0", 0), g.Int64s("s1", 8, -1)], "shape", "concat", ("axis", 0L));
            g.Node("Reshape", ["c", "shape"], "r", "reshape");
            g.Node("Transpose", ["r"], "x", "transpose", ("perm", new long[] { 0, 2, 1 }));
        });
    }

    /// <summary>torch's Reshape(x, [N, −1, 8]) with N = Unsqueeze(Gather(Shape(x), 0)): the target's length is 3.</summary>
    [Fact]
    public void Swaps_after_a_reshape_whose_target_is_computed_from_the_input_shape()
    {
        SwapAfter([2, 6, 8], [-1, 2, 3, 8], [2, 2, 3, 8], g =>
        {
            g.Node("Shape", ["x0"], "sh", "shape");
            g.Node("Gather", ["sh", Scalar64(g, "zero", 0)], "nb", "gather", ("axis", 0L));
            g.Node("Unsqueeze", ["nb", g.Int64s("ax", 0)], "n1", "unsqueeze");
            g.Node("Concat", ["n1", g.Int64s("rest", -1, 8)], "target", "concat", ("axis", 0L));
            g.Node("Reshape", ["x0", "target"], "x", "reshape");
        });
    }

    /// <summary>ViT: Concat(Expand(class token [1, 1, 8], [N, 1, 8] computed from x0's shape), x0) on axis 1 → LayerNorm.</summary>
    [Fact]
    public void Swaps_after_a_concat_with_an_expanded_class_token()
    {
        SwapAfter([2, 5, 8], [-1, 4, 8], [2, 4, 8], g =>
        {
            g.Node("Shape", ["x0"], "sh", "shape");
            g.Node("Gather", ["sh", g.Int64s("first", 0)], "nb", "gather", ("axis", 0L));
            g.Node("Concat", ["nb", g.Int64s("rest", 1, 8)], "to", "concat_shape", ("axis", 0L));
            g.Node("Expand", [g.Init("cls", F32, [1, 1, 8]), "to"], "tokens", "expand");
            g.Node("Concat", ["tokens", "x0"], "x", "concat", ("axis", 1L));
        });
    }

    /// <summary>LayerNorm on softmax(x0 − max(x0)): the reduction keeps x0's rank (review's ln3 after softmax).</summary>
    [Fact]
    public void Swaps_after_a_softmax_of_a_max_subtracted_input()
    {
        SwapAfter([2, 5, 8], [2, 5, 8], [2, 5, 8], g =>
        {
            g.Node("ReduceMax", ["x0"], "mu", "centre_max", ("axes", new long[] { -1 }));
            g.Node("Sub", ["x0", "mu"], "centred", "centre");
            g.Node("Softmax", ["centred"], "x", "softmax", ("axis", -1L));
        });
    }

    [Theory]
    [InlineData("Unsqueeze")]
    [InlineData("Squeeze")]
    public void Swaps_after_unsqueeze_or_squeeze_of_constant_axes(string op)
    {
        long[] x0 = op == "Unsqueeze" ? [2, 8] : [2, 1, 8], x = op == "Unsqueeze" ? [2, 1, 8] : [2, 8];
        SwapAfter(x, x0, x0, g => g.Node(op, ["x0", g.Int64s("axes", 1)], "x", "op"));
    }

    // ---- PP-OCRv4 rec (SVTR neck, exported by paddle2onnx): shapes computed from Shape values ----

    /// <summary>A LayerNorm decomposition over the last axis (D = <paramref name="d"/>) of <paramref name="x"/>, nodes
    /// prefixed <paramref name="p"/> (the ReduceMean is p + "mean"); returns its output.</summary>
    static string AppendLayerNorm(GraphBuilder g, string x, string p, long d)
    {
        g.Node("ReduceMean", [x], p + "m", p + "mean", ("axes", new long[] { -1 }));
        g.Node("Sub", [x, p + "m"], p + "d", p + "sub");
        g.Node("Pow", [p + "d", g.Init(p + "two", F32, [], [2])], p + "sq", p + "pow");
        g.Node("ReduceMean", [p + "sq"], p + "v", p + "var", ("axes", new long[] { -1 }));
        g.Node("Add", [p + "v", g.Init(p + "eps", F32, [], [1e-6])], p + "ve", p + "add_eps");
        g.Node("Sqrt", [p + "ve"], p + "s", p + "sqrt");
        g.Node("Div", [p + "d", p + "s"], p + "n", p + "div");
        g.Node("Mul", [p + "n", g.Init(p + "gamma", F32, [d], 0.5, 1.5)], p + "scaled", p + "mul");
        g.Node("Add", [p + "scaled", g.Init(p + "beta", F32, [d], -0.5, 0.5)], p + "y", p + "add_beta");
        return p + "y";
    }

    /// <summary>
    /// The exporter's pattern: c = Conv(x0) [?, 8, 2, ?]; t = Transpose[0, 2, 1](Reshape(c, Concat(Slice(Shape(c), 0:2), [−1])));
    /// LN 0 on t needs t's last dim (8, from Shape(c)'s values); then the residual block: r = Reshape(MatMul(LN 0), target)
    /// with target = Concat(Cast([0]), Cast(Slice(Cast(Shape(LN 0), int32), 1:2)), Cast([8])) of int32 pieces, and LN 1
    /// on Add(t, r) needs that Add's rank (both operands' ranks known: the larger). Opset 17 (Slice with inputs) or 9
    /// (attributes, as exported).
    /// </summary>
    static OnnxModel OcrRecNeck(long opset)
    {
        const int I32 = (int)NormFold.Onnx.Proto.TensorProto.Types.DataType.Int32, I64 = (int)NormFold.Onnx.Proto.TensorProto.Types.DataType.Int64;
        var g = new GraphBuilder(opset);
        g.Input("x0", F32, [-1, 3, 2, -1]);
        string Int32s(string name, int v)
        {
            g.Graph.Initializer.Add(new NormFold.Onnx.Proto.TensorProto { Name = name, DataType = I32, Dims = { 1 }, Int32Data = { v } });
            return name;
        }
        void Slice(string x, long start, long end, string output)
        {
            if (opset >= 10) g.Node("Slice", [x, g.Int64s(output + "_s", start), g.Int64s(output + "_e", end), g.Int64s(output + "_a", 0)], output, output);
            else g.Node("Slice", [x], output, output, ("starts", new long[] { start }), ("ends", new long[] { end }), ("axes", new long[] { 0 }));
        }
        g.Node("Conv", ["x0", g.Init("w", F32, [8, 3, 1, 1])], "c", "conv");
        g.Node("Shape", ["c"], "c_shape", "shape_c");
        Slice("c_shape", 0, 2, "nc");
        g.Node("Concat", ["nc", g.Int64s("minus1", -1)], "flat_shape", "concat_flat", ("axis", 0L));
        g.Node("Reshape", ["c", "flat_shape"], "flat", "flatten");
        g.Node("Transpose", ["flat"], "t", "transpose", ("perm", new long[] { 0, 2, 1 }));
        string ln0 = AppendLayerNorm(g, "t", "ln0_", 8);
        g.Node("Shape", [ln0], "ln0_shape", "shape_ln0");
        g.Node("Cast", ["ln0_shape"], "ln0_shape32", "cast32", ("to", (long)I32));
        Slice("ln0_shape32", 1, 2, "len32");
        g.Node("Cast", [Int32s("zero32", 0)], "p0", "cast_p0", ("to", (long)I64));
        g.Node("Cast", ["len32"], "p1", "cast_p1", ("to", (long)I64));
        g.Node("Cast", [Int32s("eight32", 8)], "p2", "cast_p2", ("to", (long)I64));
        g.Node("Concat", ["p0", "p1", "p2"], "r_shape", "concat_r", ("axis", 0L));
        g.Node("Reshape", [ln0, "r_shape"], "r", "reshape_r");
        g.Node("MatMul", ["r", g.Init("wm", F32, [8, 8])], "mm", "matmul");
        g.Node("Add", ["mm", g.Init("bm", F32, [8])], "proj", "add_bias");
        g.Node("Add", ["t", "proj"], "res", "residual");
        g.Output(AppendLayerNorm(g, "res", "ln1_", 8), F32, null);
        return g.Build();
    }

    [Fact]
    public void Swaps_both_layernorms_of_the_ppocr_rec_neck()
    {
        var original = OcrRecNeck(17);
        var (folded, r) = Fold(original, Swap);
        foreach (string anchor in new[] { "ln0_mean", "ln1_mean" })
        {
            var d = r.Log.Decisions.Single(x => x.Anchor == anchor);
            Assert.True(d.Outcome == Outcome.Replaced, $"{anchor}: {d.Reason}: {d.Detail}");
        }
        Assert.Equal(0, Count(folded, "ReduceMean"));
        Assert.Equal(2, Count(folded, "LayerNormalization"));
        Assert.All(folded.Proto.Graph.Node.Where(n => n.OpType == "LayerNormalization"), ln =>
            Assert.Equal(new long[] { 8 }, folded.Proto.Graph.Initializer.Single(t => t.Name == ln.Input[1]).Dims));
        AssertEquivalent(original, folded, shapes: new Dictionary<string, long[]> { ["x0"] = [2, 3, 2, 5] });
    }

    /// <summary>As exported (opset 9): both ranks and the last dim follow, and raising to 17 rewrites the Slice-1 nodes'
    /// attributes as inputs (OpsetUpgrade), so both swap.</summary>
    [Fact]
    public void The_opset_9_ppocr_rec_neck_swaps_both_raising_its_slices_to_17()
    {
        var original = OcrRecNeck(9);
        var (folded, r) = Fold(original, Swap);
        foreach (string anchor in new[] { "ln0_mean", "ln1_mean" })
        {
            var d = r.Log.Decisions.Single(x => x.Anchor == anchor);
            Assert.True(d.Outcome == Outcome.Replaced, $"{anchor}: {d.Reason}: {d.Detail}");
        }
        Assert.Equal(17, folded.DefaultOpset);
        Assert.All(folded.Proto.Graph.Node.Where(n => n.OpType == "Slice"), n => Assert.Empty(n.Attribute));
        AssertEquivalent(original, folded, shapes: new Dictionary<string, long[]> { ["x0"] = [2, 3, 2, 5] });
    }
}
