using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting;

/// <summary>Review attacks (session 4): small models at the edges of the swaps and folds. Each either is rewritten and
/// equivalent in ORT, or is left with a named reason.</summary>
public class ReviewAttackTests
{
    /// <summary>Whatever was rewritten must be equivalent; returns the fold.</summary>
    static (OnnxModel Folded, FoldResult Result) FoldSafely(OnnxModel original, PipelineOptions? options = null,
        IReadOnlyDictionary<string, long[]>? shapes = null)
    {
        var (folded, r) = Fold(original, options);
        AssertEquivalent(original, folded, shapes: shapes);
        return (folded, r);
    }

    static readonly PipelineOptions LnSwap = new() { SwapLayerNorm = true, TargetOpset = 17 };

    /// <summary>X → mean/var over the last axis, in <paramref name="compute"/> (Cast of d when it is not X's type).</summary>
    static GraphBuilder LayerNorm(int type, int compute, long[] xDims, bool mulSquare = false, double epsilon = 1e-5)
    {
        var g = new GraphBuilder(17);
        g.Input("x", type, xDims);
        LayerNormOf(g, "x", type, compute, xDims[^1], mulSquare, epsilon);
        g.Output("y", type, xDims);
        return g;
    }

    /// <summary>The decomposed LayerNorm of <paramref name="x"/> over its last axis (<paramref name="features"/> long)
    /// into "y": ReduceMean → Sub → Pow (or Mul by itself) → ReduceMean → Add ε → Sqrt → Div → Mul γ → Add β.</summary>
    static void LayerNormOf(GraphBuilder g, string x, int type, int compute, long features, bool mulSquare = false, double epsilon = 1e-5)
    {
        g.Node("ReduceMean", [x], "m", "mean", ("axes", new long[] { -1 }));
        g.Node("Sub", [x, "m"], "d", "sub");
        string dc = "d";
        if (compute != type) { g.Node("Cast", ["d"], "dc", "cast_up", ("to", (long)compute)); dc = "dc"; }
        if (mulSquare) g.Node("Mul", [dc, dc], "p", "square");
        else { g.Init("two", compute, [], [2]); g.Node("Pow", [dc, "two"], "p", "pow"); }
        g.Node("ReduceMean", ["p"], "v", "var", ("axes", new long[] { -1 }));
        g.Init("eps", compute, [], [epsilon]);
        g.Node("Add", ["v", "eps"], "ve", "add_eps");
        g.Node("Sqrt", ["ve"], "s", "sqrt");
        g.Node("Div", [dc, "s"], compute != type ? "nc" : "n", "div");
        if (compute != type) g.Node("Cast", ["nc"], "n", "cast_back", ("to", (long)type));
        g.Init("gamma", type, [features], 0.5, 1.5);
        g.Init("beta", type, [features], -0.5, 0.5);
        g.Node("Mul", ["n", "gamma"], "scaled", "mul");
        g.Node("Add", ["scaled", "beta"], "y", "add_beta");
    }

    [Fact]
    public void LayerNorm_with_mul_square_swaps_and_is_equivalent()
    {
        var (folded, r) = FoldSafely(LayerNorm(F32, F32, [2, 5, 8], mulSquare: true).Build(), LnSwap);
        var swap = r.Log.Decisions.Single(d => d.Anchor == "mean");
        Assert.True(swap.Outcome == Outcome.Replaced, $"{swap.Outcome} {swap.Reason} {swap.Detail}");
        Assert.Equal(1, Count(folded, "LayerNormalization"));
    }

    /// <summary>A double LayerNorm: LayerNormalization computes mean and variance in stash_type, float or bfloat16 (ONNX
    /// Runtime computes double in double, but its epsilon is a float: 1e-5 drifted by 1e-13, and a pattern computed in
    /// float drifted by 2e-7).</summary>
    [Theory]
    [InlineData(F64, 1e-5)]
    [InlineData(F64, 1.0 / 65536)]
    [InlineData(F32, 1.0 / 65536)]
    public void LayerNorm_of_double_is_not_swapped(int compute, double epsilon)
    {
        var (folded, r) = FoldSafely(LayerNorm(F64, compute, [2, 5, 8], epsilon: epsilon).Build(), LnSwap);
        Assert.Contains("stash_type", AssertLeft(r, SkipReason.UnsupportedDataType, "mean").Detail);
        Assert.Equal(0, Count(folded, "LayerNormalization"));
    }

    [Fact]
    public void LayerNorm_of_float_computed_in_double_is_equivalent()
    {
        FoldSafely(LayerNorm(F32, F64, [2, 5, 8]).Build(), LnSwap);
    }

    /// <summary>X's shape undeclared, X's last dim 1 at run time, γ of 4: the Mul widens [2, 1] to [2, 4].</summary>
    [Fact]
    public void LayerNorm_whose_gamma_widens_an_undeclared_last_axis_is_not_swapped()
    {
        var g = LayerNorm(F32, F32, [2, 4]);
        g.Graph.Input[0].Type.TensorType.Shape.Dim[1].ClearDimValue();
        g.Graph.Input[0].Type.TensorType.Shape.Dim[1].DimParam = "D";
        g.Graph.Output[0].Type.TensorType.Shape = null;
        var (folded, r) = FoldSafely(g.Build(), LnSwap, new Dictionary<string, long[]> { ["x"] = [2, 1] });
        Assert.Contains("broadcast a dim of 1", AssertLeft(r, SkipReason.UnknownRank, "mean").Detail);
        Assert.Equal(0, Count(folded, "LayerNormalization"));
    }

    static readonly PipelineOptions GnSwap21 = new() { SwapGroupNorm = true, TargetOpset = 21 };

    /// <summary>GroupNorm decomposition on an X whose channel count is not declared; γ/β have <paramref name="c"/> channels.</summary>
    static GraphBuilder GroupNormUnknownChannels(long c, long groups)
    {
        var g = new GraphBuilder(21);
        g.Input("x", F32, [-1, -1, -1, -1]);
        g.Int64s("gshape", 0, groups, -1);
        g.Node("Reshape", ["x", "gshape"], "r1", "reshape1");
        g.Init("in_scale", F32, [groups], Enumerable.Repeat(1.0, (int)groups).ToArray());
        g.Init("in_bias", F32, [groups], new double[groups]);
        g.Node("InstanceNormalization", ["r1", "in_scale", "in_bias"], "in", "instnorm", ("epsilon", 1e-3f));
        g.Node("Shape", ["x"], "xshape", "shape");
        g.Node("Reshape", ["in", "xshape"], "r2", "reshape2");
        g.Init("gamma", F32, [c, 1, 1], 0.5, 1.5);
        g.Init("beta", F32, [c, 1, 1], -0.5, 0.5);
        g.Node("Mul", ["r2", "gamma"], "m", "mul");
        g.Node("Add", ["m", "beta"], "y", "add");
        g.Output("y", F32, null);
        return g;
    }

    [Fact]
    public void GroupNorm_on_undeclared_channels_is_left_even_when_they_match()
    {
        var (_, r) = FoldSafely(GroupNormUnknownChannels(4, 2).Build(), GnSwap21, new Dictionary<string, long[]> { ["x"] = [2, 4, 3, 3] });
        AssertLeft(r, SkipReason.UnknownRank, "instnorm");
    }

    /// <summary>X has 1 channel at run time; γ/β of 4 channels widen it. GroupNormalization(X, γ[4]) is not that.</summary>
    [Fact]
    public void GroupNorm_whose_gamma_widens_one_undeclared_channel_is_not_swapped()
    {
        var (folded, r) = FoldSafely(GroupNormUnknownChannels(4, 1).Build(), GnSwap21, new Dictionary<string, long[]> { ["x"] = [2, 1, 3, 3] });
        Assert.Contains("widen one channel", AssertLeft(r, SkipReason.UnknownRank, "instnorm").Detail);
        Assert.Equal(0, Count(folded, "GroupNormalization"));
    }

    [Fact]
    public void GroupNorm_lowering_of_18_with_per_group_scale_is_equivalent()
    {
        var g = new GraphBuilder(18);
        g.Input("x", F32, [2, 6, 3, 3]);
        g.Init("scale", F32, [3], [0.5, 1.5, 2]);
        g.Init("bias", F32, [3], [0.1, -0.2, 0.3]);
        g.Node("GroupNormalization", ["x", "scale", "bias"], "y", "gn", ("num_groups", 3L), ("epsilon", 1e-2f));
        g.Output("y", F32, [2, 6, 3, 3]);
        var (folded, r) = FoldSafely(g.Build(), new PipelineOptions { LowerGroupNorm = true });
        Assert.Equal(Outcome.Replaced, Single(r).Outcome);
        Assert.Equal(0, Count(folded, "GroupNormalization"));
    }

    [Fact]
    public void GroupNorm_lowering_of_21_float16_is_equivalent()
    {
        var g = new GraphBuilder(21);
        g.Input("x", F16, [2, 6, 5]);
        g.Init("scale", F16, [6], 0.5, 1.5);
        g.Init("bias", F16, [6], -0.5, 0.5);
        g.Node("GroupNormalization", ["x", "scale", "bias"], "y", "gn", ("num_groups", 2L));
        g.Output("y", F16, [2, 6, 5]);
        var (folded, r) = FoldSafely(g.Build(), new PipelineOptions { LowerGroupNorm = true });
        Assert.Equal(Outcome.Replaced, Single(r).Outcome);
    }

    // ---- BatchNormalization: MatMul shapes, constant on the left, ConvTranspose attributes ----

    /// <summary>MatMul → BN where B's columns are not BN's axis 1, or the constant is A: the BN cannot go into the
    /// weight and becomes Mul + Add. (A[2,3,4]·B[4,3]: axis 1 has 3 channels by coincidence, B's columns are axis 2.)</summary>
    [Theory]
    [InlineData(new long[] { 2, 3, 4 }, new long[] { 4, 3 }, false)]
    [InlineData(new long[] { 2, 3, 4 }, new long[] { 2, 4, 3 }, false)]
    [InlineData(new long[] { 5, 3 }, new long[] { 4, 5 }, true)]
    [InlineData(new long[] { 4, 4 }, new long[] { 4, 4 }, true)]
    public void Bn_after_matmul_it_cannot_fold_into_becomes_mul_add(long[] x, long[] w, bool constantFirst)
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, x);
        g.Init("w", F32, w);
        g.Node("MatMul", constantFirst ? ["w", "x"] : ["x", "w"], "mm", "matmul");
        g.Bn("mm", constantFirst ? x[^1] : 3, "y");
        g.Output("y", F32, null);
        var (folded, r) = FoldSafely(g.Build());
        Assert.Equal(Outcome.Replaced, Single(r).Outcome);
        Assert.Equal(["MatMul", "Mul", "Add"], folded.Proto.Graph.Node.Select(n => n.OpType));
    }

    [Fact]
    public void Bn_after_rank_2_matmul_with_rank_3_broadcast_bias_is_equivalent()
    {
        var g = new GraphBuilder(13);
        g.Input("a", F32, [3, 4]);
        g.Init("b", F32, [4, 3]);
        g.Node("MatMul", ["a", "b"], "mm", "matmul");
        g.Init("bias", F32, [2, 1, 3]);
        g.Node("Add", ["mm", "bias"], "add", "add");
        g.Bn("add", 3, "y");
        g.Output("y", F32, [2, 3, 3]);
        FoldSafely(g.Build());
    }

    /// <summary>Gemm(A, B) → BN with C [M, 1] where M = 1 broadcast to more rows by... C [3,1] with A [3,K].</summary>
    [Theory]
    [InlineData(true, true)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    public void Bn_after_gemm_with_column_c_is_folded_and_equivalent(bool transA, bool transB)
    {
        var g = new GraphBuilder(13);
        g.Input("a", F32, transA ? [5, 3] : [3, 5]);
        g.Init("b", F32, transB ? [4, 5] : [5, 4]);
        g.Init("c", F32, [3, 1]);
        g.Node("Gemm", ["a", "b", "c"], "gm", "gemm", ("transA", (long)(transA ? 1 : 0)), ("transB", (long)(transB ? 1 : 0)),
            ("alpha", 0.7f), ("beta", 1.3f));
        g.Bn("gm", 4, "y");
        g.Output("y", F32, [3, 4]);
        FoldAndCheck(g.Build());
    }

    [Theory]
    [InlineData(1, "NOTSET", false)]
    [InlineData(2, "NOTSET", true)]
    [InlineData(2, "SAME_UPPER", false)]
    [InlineData(3, "SAME_LOWER", false)]
    public void Bn_after_convtranspose_with_attributes_folds_and_is_equivalent(long group, string autoPad, bool outputShape)
    {
        var g = new GraphBuilder(13);
        long cin = 6, outPerGroup = 2;
        g.Input("x", F32, [1, cin, 4, 5]);
        g.Init("w", F32, [cin, outPerGroup, 3, 2]);
        g.Init("bias", F32, [outPerGroup * group]);
        var attrs = new List<(string, object)> { ("group", group), ("strides", new long[] { 2, 3 }), ("dilations", new long[] { 2, 1 }) };
        if (autoPad != "NOTSET") attrs.Add(("auto_pad", autoPad));
        else attrs.Add(("pads", new long[] { 1, 0, 0, 1 }));
        if (outputShape) attrs.Add(("output_shape", new long[] { 10, 15 }));
        else attrs.Add(("output_padding", new long[] { 1, 2 }));
        g.Node("ConvTranspose", ["x", "w", "bias"], "ct", "convt", [.. attrs]);
        g.Bn("ct", outPerGroup * group, "y");
        g.Output("y", F32, null);
        FoldAndCheck(g.Build());
    }

    // ---- BatchNormalization in bodies, shared weights ----

    /// <summary>An If whose branches each hold Conv → BN on the same outer weight W; W is also used by a Conv outside.</summary>
    [Fact]
    public void Bns_in_both_branches_on_one_outer_weight_fold_into_new_tensors()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [1, 3, 4, 4]);
        g.Input("cond", ElementTypeBool, []);
        g.Init("w", F32, [4, 3, 3, 3]);
        GraphProto Branch(string name)
        {
            var b = g.Body(name);
            b.Node("Conv", ["x", "w"], name + "_c", name + "_conv", ("pads", new long[] { 1, 1, 1, 1 }));
            b.Bn(name + "_c", 4, name + "_y");
            b.Output(name + "_y", F32, [1, 4, 4, 4]);
            return b.Graph;
        }
        // The branches read the outer BN parameters of their own.
        g.Node("If", ["cond"], "branch", "if", ("then_branch", Branch("then")), ("else_branch", Branch("else")));
        g.Node("Conv", ["x", "w"], "plain", "outer_conv", ("pads", new long[] { 1, 1, 1, 1 }));
        g.Node("Add", ["branch", "plain"], "y", "sum");
        g.Output("y", F32, [1, 4, 4, 4]);
        var original = g.Build();
        var (folded, r) = Fold(original);
        Assert.Equal(2, r.Log.Count(Outcome.Folded));
        var w0 = original.ReadDoubles(original.Proto.Graph.Initializer.Single(t => t.Name == "w"));
        Assert.Equal(w0, folded.ReadDoubles(folded.Proto.Graph.Initializer.Single(t => t.Name == "w")));
        AssertEquivalent(original, folded);
        AssertAuditPasses(original, folded, r);
    }

    /// <summary>IR version 3 (initializers are graph inputs too, inputs with an initializer are defaulted): a BN inside
    /// an If branch becomes Mul + Add whose constants the branch lists as inputs, as ORT requires at IR 3.</summary>
    [Fact]
    public void Ir3_bn_in_an_if_branch_becomes_mul_add()
    {
        var g = new GraphBuilder(8);
        g.Proto.IrVersion = 3;
        g.Input("x", F32, [2, 3, 4]);
        g.Input("cond", ElementTypeBool, []);
        var then = g.Body("then");
        string[] p = g.BnParams("bn", 3); // in the main graph: IR 3 allows no initializers in a branch (it takes no inputs)
        then.Node("BatchNormalization", ["x", .. p], "t_y", "bn");
        then.Output("t_y", F32, [2, 3, 4]);
        var other = g.Body("else");
        other.Node("Relu", ["x"], "e_y", "relu");
        other.Output("e_y", F32, [2, 3, 4]);
        g.Node("If", ["cond"], "y", "if", ("then_branch", then.Graph), ("else_branch", other.Graph));
        g.Output("y", F32, [2, 3, 4]);
        foreach (var t in g.Graph.Initializer) g.Graph.Input.Add(Value(t.Name, t.DataType, [.. t.Dims])); // IR 3
        var (folded, r) = FoldSafely(g.Build());
        Assert.Equal(Outcome.Replaced, Single(r).Outcome);
        var branch = folded.Proto.Graph.Node.Single(n => n.OpType == "If").Attribute.Single(a => a.Name == "then_branch").G;
        Assert.Equal(["Mul", "Add"], branch.Node.Select(n => n.OpType));
        Assert.Equal(branch.Initializer.Select(t => t.Name), branch.Input.Select(v => v.Name));
    }

    /// <summary>IR version 3: a BN inside a Loop body on the loop-carried value is left: the body input's declared shape
    /// is no proof (a carried value may change shape between iterations), so the rank of Mul/Add constants is unknown.</summary>
    [Fact]
    public void Ir3_bn_on_a_loop_carried_value_is_left()
    {
        var g = new GraphBuilder(8);
        g.Proto.IrVersion = 3;
        g.Input("x", F32, [2, 3, 4]);
        g.Int64s("trips", 2);
        string[] p = g.BnParams("bn", 3);
        var body = g.Body("body");
        body.Input("i", 7, []);
        body.Input("c_in", ElementTypeBool, []);
        body.Input("v_in", F32, [2, 3, 4]);
        body.Node("Identity", ["c_in"], "c_out", "keep");
        body.Node("BatchNormalization", ["v_in", .. p], "v_out", "bn");
        body.Output("c_out", ElementTypeBool, []);
        body.Output("v_out", F32, [2, 3, 4]);
        g.Node("Loop", ["trips", "", "x"], "y", "loop", ("body", body.Graph));
        g.Output("y", F32, [2, 3, 4]);
        foreach (var t in g.Graph.Initializer) g.Graph.Input.Add(Value(t.Name, t.DataType, [.. t.Dims])); // IR 3
        var (_, r) = FoldSafely(g.Build());
        AssertLeft(r, SkipReason.UnknownRank);
    }

    /// <summary>LayerNorm in float16 throughout (no Cast): LayerNormalization computes in float (stash_type 1).</summary>
    [Fact]
    public void LayerNorm_in_float16_throughout_is_equivalent()
    {
        FoldSafely(LayerNorm(F16, F16, [2, 5, 64]).Build(), LnSwap);
    }

    /// <summary>A LayerNorm inside an If branch reading γ/β of the enclosing graph.</summary>
    [Fact]
    public void LayerNorm_in_an_if_branch_with_outer_gamma_swaps_and_is_equivalent()
    {
        var outer = new GraphBuilder(17);
        outer.Input("x", F32, [2, 5, 8]);
        outer.Input("cond", ElementTypeBool, []);
        var ln = LayerNorm(F32, F32, [2, 5, 8]);
        var body = ln.Graph;
        body.Name = "then";
        body.Input.Clear();
        foreach (var t in body.Initializer.Where(t => t.Name is "gamma" or "beta").ToList()) { body.Initializer.Remove(t); outer.Graph.Initializer.Add(t); }
        var other = outer.Body("else");
        other.Node("Relu", ["x"], "e_y", "relu");
        other.Output("e_y", F32, [2, 5, 8]);
        outer.Node("If", ["cond"], "out", "if", ("then_branch", body), ("else_branch", other.Graph));
        outer.Output("out", F32, [2, 5, 8]);
        var (folded, r) = FoldSafely(outer.Build(), LnSwap);
        var swap = r.Log.Decisions.Single(d => d.Anchor == "mean");
        Assert.True(swap.Outcome == Outcome.Replaced, $"{swap.Outcome} {swap.Reason} {swap.Detail}");
    }

    /// <summary>BatchNormalization-15 with float16 X and scale, float mean and var (T2 ≠ T).</summary>
    [Fact]
    public void Bn15_with_float_statistics_on_float16_folds_into_conv_and_standalone()
    {
        var g = new GraphBuilder(15);
        g.Input("x", F16, [1, 3, 5, 5]);
        g.Init("w", F16, [4, 3, 3, 3], -0.5, 0.5);
        g.Node("Conv", ["x", "w"], "c", "conv");
        string[] p = [g.Init("g1", F16, [4], 0.5, 1.5), g.Init("b1", F16, [4], -0.5, 0.5), g.Init("m1", F32, [4], -0.5, 0.5), g.Init("v1", F32, [4], 0.2, 2)];
        g.Node("BatchNormalization", ["c", .. p], "bn1", "bn_conv");
        g.Node("Relu", ["bn1"], "r", "relu");
        string[] q = [g.Init("g2", F16, [4], 0.5, 1.5), g.Init("b2", F16, [4], -0.5, 0.5), g.Init("m2", F32, [4], -0.5, 0.5), g.Init("v2", F32, [4], 0.2, 2)];
        g.Node("BatchNormalization", ["r", .. q], "y", "bn_alone");
        g.Output("y", F16, [1, 4, 3, 3]);
        var (folded, r) = FoldSafely(g.Build());
        Assert.Equal(0, Count(folded, "BatchNormalization"));
    }

    /// <summary>Float16 at sizes where rounding in float16 vs float shows: the swaps must still pass the check.</summary>
    [Fact]
    public void Large_float16_layernorm_swap_is_equivalent()
    {
        FoldSafely(LayerNorm(F16, F16, [2, 3, 4096]).Build(), LnSwap);
        FoldSafely(LayerNorm(F16, F32, [2, 3, 4096]).Build(), LnSwap);
    }

    [Theory]
    [InlineData(F16, 8)]
    [InlineData(F16, 1)]
    [InlineData(F32, 8)]
    public void Large_groupnorm_swap_and_lowering_are_equivalent(int type, long groups)
    {
        var g = new GraphBuilder(21);
        g.Input("x", type, [1, 32, 24, 24]);
        g.Int64s("gshape", 0, groups, -1);
        g.Node("Reshape", ["x", "gshape"], "r1", "reshape1");
        g.Init("in_scale", type, [groups], Enumerable.Repeat(1.0, (int)groups).ToArray());
        g.Init("in_bias", type, [groups], new double[groups]);
        g.Node("InstanceNormalization", ["r1", "in_scale", "in_bias"], "in", "instnorm");
        g.Node("Shape", ["x"], "xshape", "shape");
        g.Node("Reshape", ["in", "xshape"], "r2", "reshape2");
        g.Init("gamma", type, [32, 1, 1], 0.5, 1.5);
        g.Init("beta", type, [32, 1, 1], -0.5, 0.5);
        g.Node("Mul", ["r2", "gamma"], "m", "mul");
        g.Node("Add", ["m", "beta"], "y", "add");
        g.Output("y", type, [1, 32, 24, 24]);
        var original = g.Build();
        var (swapped, r) = FoldSafely(original, new PipelineOptions { SwapGroupNorm = true });
        Assert.Equal(Outcome.Replaced, Single(r).Outcome);
        var (lowered, _) = FoldSafely(swapped, new PipelineOptions { LowerGroupNorm = true });
        AssertEquivalent(original, lowered);
    }

    /// <summary>Double GroupNorm (groupwise-constant γ): GroupNormalization-21 computes in stash_type (float by default,
    /// 5e-7 off here), GroupNormalization-18 in X's type. The swap to 21 sets stash_type = double: both agree.</summary>
    [Fact]
    public void Double_groupnorm_swapped_to_21_computes_in_double_like_18()
    {
        var g = new GraphBuilder(18);
        g.Input("x", F64, [2, 8, 3, 3]);
        g.Int64s("gshape", 0, 2, -1);
        g.Node("Reshape", ["x", "gshape"], "r1", "reshape1");
        g.Init("in_scale", F64, [2], [1, 1]);
        g.Init("in_bias", F64, [2], [0, 0]);
        g.Node("InstanceNormalization", ["r1", "in_scale", "in_bias"], "in", "instnorm");
        g.Node("Shape", ["x"], "xshape", "shape");
        g.Node("Reshape", ["in", "xshape"], "r2", "reshape2");
        g.Init("gamma", F64, [8, 1, 1], [1, 1, 1, 1, 2, 2, 2, 2]);
        g.Node("Mul", ["r2", "gamma"], "y", "mul");
        g.Output("y", F64, [2, 8, 3, 3]);
        var original = g.Build(); // ONNX Runtime has no double InstanceNormalization: compare the two swaps
        var (gn18, r18) = Fold(original, new PipelineOptions { SwapGroupNorm = true });
        var (gn21, r21) = Fold(original, new PipelineOptions { SwapGroupNorm = true, TargetOpset = 21 });
        Assert.Contains("GroupNormalization-18", Single(r18).Detail);
        Assert.Contains("GroupNormalization-21", Single(r21).Detail);
        var node = gn21.Proto.Graph.Node.Single(n => n.OpType == "GroupNormalization");
        Assert.Equal(F64, node.Attribute.Single(a => a.Name == "stash_type").I);
        AssertEquivalent(gn18, gn21);
    }

    [Fact]
    public void Lowering_a_double_groupnorm_is_refused()
    {
        var g = new GraphBuilder(21);
        g.Input("x", F64, [2, 8, 3, 3]);
        g.Init("scale", F64, [8], 0.5, 1.5);
        g.Init("bias", F64, [8], -0.5, 0.5);
        g.Node("GroupNormalization", ["x", "scale", "bias"], "y", "gn", ("num_groups", 2L));
        g.Output("y", F64, [2, 8, 3, 3]);
        var (folded, r) = Fold(g.Build(), new PipelineOptions { LowerGroupNorm = true });
        Assert.Contains("double", AssertLeft(r, SkipReason.UnsupportedDataType).Detail);
        Assert.Equal(1, Count(folded, "GroupNormalization"));
    }

    /// <summary>X of undeclared rank, a value_info claiming rank 2 for the BN's input while it is [2, 3, 4, 3] at run
    /// time: the rank must be proven before [C] constants (which broadcast along the last axis) are used.</summary>
    [Fact]
    public void Standalone_bn_does_not_trust_a_value_info_rank()
    {
        var g = new GraphBuilder(15);
        g.Input("x", F32, [2, 1, 3, 4, 3]);
        g.Node("Squeeze", ["x", g.HiddenInt64s("axes", 1)], "r", "squeeze"); // axes hidden: the rank is not proven
        g.Graph.ValueInfo.Add(Value("r", F32, [2, 3]));
        g.Bn("r", 3, "y");
        g.Output("y", F32, null);
        var (folded, r) = FoldSafely(g.Build());
        Assert.Contains("value_info is no proof", AssertLeft(r, SkipReason.UnknownRank).Detail);
        Assert.Equal(1, Count(folded, "BatchNormalization"));
    }

    /// <summary>The same for MatMul → BN: a value_info claims rank 2, the product is [2, 3, 3] (BN's axis 1 is not B's columns).</summary>
    [Fact]
    public void Bn_after_matmul_does_not_trust_a_value_info_rank()
    {
        var g = new GraphBuilder(15);
        g.Input("x", F32, [2, 1, 3, 4]);
        g.Node("Squeeze", ["x", g.HiddenInt64s("axes", 1)], "a", "squeeze"); // axes hidden: the rank is not proven
        g.Init("b", F32, [4, 3]);
        g.Node("MatMul", ["a", "b"], "mm", "matmul");
        g.Graph.ValueInfo.Add(Value("mm", F32, [3, 3]));
        g.Bn("mm", 3, "y");
        g.Output("y", F32, null);
        var (folded, r) = FoldSafely(g.Build());
        Assert.Contains("value_info is no proof", AssertLeft(r, SkipReason.UnknownRank).Detail);
        Assert.Equal(1, Count(folded, "BatchNormalization"));
    }

    /// <summary>Lowering GroupNormalization on X [2, 4, 4, 3] whose rank a value_info claims is 3: the lowered [C, 1]
    /// constants would scale the height axis (H = C = 4).</summary>
    [Fact]
    public void Groupnorm_lowering_does_not_trust_a_value_info_rank()
    {
        var g = new GraphBuilder(21);
        g.Input("x", F32, [2, 1, 4, 4, 3]);
        g.Node("Squeeze", ["x", g.HiddenInt64s("axes", 1)], "s", "squeeze"); // axes hidden: the rank is not proven
        g.Graph.ValueInfo.Add(Value("s", F32, [2, 4, 12]));
        g.Init("scale", F32, [4], 0.5, 1.5);
        g.Init("bias", F32, [4], -0.5, 0.5);
        g.Node("GroupNormalization", ["s", "scale", "bias"], "y", "gn", ("num_groups", 2L));
        g.Output("y", F32, null);
        var (folded, r) = FoldSafely(g.Build(), new PipelineOptions { LowerGroupNorm = true });
        Assert.Contains("value_info is no proof", AssertLeft(r, SkipReason.UnknownRank).Detail);
        Assert.Equal(1, Count(folded, "GroupNormalization"));
    }

    /// <summary>IR version 3, opset 7 (torch's opset-7 export): Conv → BN → decomposed LayerNorm, swapped with a target
    /// opset of 17. Raising the opset raises the IR version past 4, where an initializer listed as a graph input can be
    /// fed at run time: every weight (and the folded ones) became an overridable input, the weight audit found no
    /// folded tensor (fold --check exit 2, "2 of 0 elements … differ") and a second fold left the BN's weights alone.
    /// At IR ≥ 4 the initializers are constants only when they are not inputs, so they are no longer listed.</summary>
    [Fact]
    public void Raising_the_opset_past_ir_3_keeps_the_initializers_constant()
    {
        var g = new GraphBuilder(7);
        g.Proto.IrVersion = 3;
        g.Input("x", F32, [2, 3, 4, 4]);
        g.Init("w", F32, [4, 3, 1, 1]);
        g.Node("Conv", ["x", "w"], "c", "conv");
        g.Bn("c", 4, "b", name: "bn");
        LayerNormOf(g, "b", F32, F32, 4);
        g.Output("y", F32, [2, 4, 4, 4]);
        foreach (var t in g.Graph.Initializer) g.Graph.Input.Add(Value(t.Name, t.DataType, [.. t.Dims])); // IR 3
        var original = g.Build();
        var (folded, r) = FoldSafely(original, LnSwap);
        Assert.Equal(Outcome.Folded, r.Log.Decisions.Single(d => d.Anchor == "bn").Outcome);
        var swap = r.Log.Decisions.Single(d => d.Anchor == "mean");
        Assert.True(swap.Outcome == Outcome.Replaced, $"{swap.Outcome} {swap.Reason} {swap.Detail}");
        Assert.Equal(17, folded.DefaultOpset);
        Assert.True(folded.Proto.IrVersion >= 8);
        Assert.Equal(["x"], folded.Proto.Graph.Input.Select(v => v.Name));
        AssertAuditPasses(original, folded, r);
    }

    /// <summary>The same with the BN in an If branch (at IR 3 its Mul/Add constants are listed as the branch's inputs):
    /// once the IR version is raised the branch lists none.</summary>
    [Fact]
    public void Raising_the_opset_past_ir_3_unlists_a_branch_initializers()
    {
        var g = LayerNorm(F32, F32, [2, 3, 4]);
        g.Proto.IrVersion = 3;
        g.Proto.OpsetImport.Single().Version = 8;
        g.Input("cond", ElementTypeBool, []);
        var then = g.Body("then");
        string[] p = g.BnParams("bn", 3);
        then.Node("BatchNormalization", ["x", .. p], "t_y", "bn");
        then.Output("t_y", F32, [2, 3, 4]);
        var other = g.Body("else");
        other.Node("Relu", ["x"], "e_y", "relu");
        other.Output("e_y", F32, [2, 3, 4]);
        g.Node("If", ["cond"], "z", "if", ("then_branch", then.Graph), ("else_branch", other.Graph));
        g.Output("z", F32, [2, 3, 4]);
        foreach (var t in g.Graph.Initializer) g.Graph.Input.Add(Value(t.Name, t.DataType, [.. t.Dims])); // IR 3
        var original = g.Build();
        var (folded, r) = FoldSafely(original, LnSwap);
        foreach (var d in r.Log.Decisions) Assert.True(d.Outcome == Outcome.Replaced, $"{d.Anchor}: {d.Outcome} {d.Reason} {d.Detail}");
        Assert.Equal(["x", "cond"], folded.Proto.Graph.Input.Select(v => v.Name));
        var branch = folded.Proto.Graph.Node.Single(n => n.OpType == "If").Attribute.Single(a => a.Name == "then_branch").G;
        Assert.Empty(branch.Input);
        Assert.Equal(2, branch.Initializer.Count);
    }

    /// <summary>Conv → Add(3) → Clip → Mul(Relu(conv), ·) (once paddle2onnx's HardSwish, now PartOfActivation). The Add is
    /// left (its input is also read by the Relu), and every pass of the fixed-point forward phase appended its "not my
    /// pattern" detail again: "…; forward phase: 'a' is read by Clip 'clip'; forward phase: 'a' is read by Clip 'clip'"
    /// (a second pass ran because a Mul in another branch folded forward into a Conv).</summary>
    [Fact]
    public void A_later_phases_detail_is_appended_once_however_many_passes_it_runs()
    {
        var g = new GraphBuilder(13);
        g.Input("x", F32, [1, 3, 8, 8]);
        g.Node("Conv", ["x", g.Init("w1", F32, [3, 3, 1, 1])], "c", "conv1");
        g.Init("three", F32, [], [3]);
        g.Node("Add", ["c", "three"], "a", "add");
        g.Init("lo", F32, [], [0]);
        g.Init("hi", F32, [], [6]);
        g.Node("Clip", ["a", "lo", "hi"], "cl", "clip");
        g.Node("Relu", ["c"], "rc", "relu_c");
        g.Node("Mul", ["rc", "cl"], "y", "hardswish");
        g.Output("y", F32, [1, 3, 8, 8]);
        g.Node("Relu", ["x"], "r", "relu");
        g.Node("Mul", ["r", g.Init("s", F32, [1, 3, 1, 1], 0.5, 1.5)], "m", "scale");
        g.Node("Conv", ["m", g.Init("w2", F32, [4, 3, 1, 1])], "y2", "conv2");
        g.Output("y2", F32, [1, 4, 8, 8]);
        var (_, r) = FoldSafely(g.Build());
        Assert.Equal(Outcome.Folded, r.Log.Decisions.Single(d => d.Anchor == "scale").Outcome);
        var add = AssertLeft(r, SkipReason.ProducerHasOtherConsumers, "add");
        Assert.Equal(1, add.Detail.Split("forward phase:").Length - 1);
    }

    const int ElementTypeBool = 9;
}
