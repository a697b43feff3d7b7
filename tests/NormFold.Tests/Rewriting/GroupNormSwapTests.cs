using NormFold.Onnx;
using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting;

public class GroupNormSwapTests
{
    static PipelineOptions Swap(long target = 0) => new() { SwapGroupNorm = true, TargetOpset = target };

    /// <summary>X[1,C,…] → Reshape([0,G,−1]) → IN(scale, bias) → Reshape(Shape(X)) → Mul(γ[C,1,…]) → Add(β[C,1,…]).</summary>
    static GraphBuilder Decomposed(long c = 8, long groups = 2, int spatial = 2, long opset = 18, int type = F32,
        double[]? gamma = null, double inScale = 1, bool declareRank = true, long[]? restore = null, Action<GraphBuilder>? extra = null)
    {
        var g = new GraphBuilder(opset);
        long[] x = [1, c, .. Enumerable.Repeat(3L, spatial)];
        g.Input("x", type, declareRank ? x : null);
        g.Int64s("gshape", 0, groups, -1);
        g.Node("Reshape", ["x", "gshape"], "r1", "reshape1");
        g.Init("in_scale", type, [groups], Enumerable.Repeat(inScale, (int)groups).ToArray());
        g.Init("in_bias", type, [groups], new double[groups]);
        g.Node("InstanceNormalization", ["r1", "in_scale", "in_bias"], "in", "instnorm", ("epsilon", 1e-3f));
        if (restore is null) g.Node("Shape", ["x"], "xshape", "shape");
        else g.Int64s("xshape", restore);
        g.Node("Reshape", ["in", "xshape"], "r2", "reshape2");
        long[] pc = [c, .. Enumerable.Repeat(1L, spatial)];
        if (gamma is null) g.Init("gamma", type, pc, 0.5, 1.5); else g.Init("gamma", type, pc, gamma);
        g.Init("beta", type, pc, -0.5, 0.5);
        g.Node("Mul", ["r2", "gamma"], "m", "mul");
        g.Node("Add", ["m", "beta"], "y", "add");
        g.Output("y", type, null);
        extra?.Invoke(g);
        return g;
    }

    [Theory]
    [InlineData("groupnorm_op13")]
    [InlineData("groupnorm_op17")]
    [InlineData("groupnorm_rank3_op13")]
    [InlineData("groupnorm_rank5_op13")]
    public void Torch_exports_swap_to_groupnormalization_21_when_raising_is_allowed(string name)
    {
        var original = OnnxModel.Load(Path.Combine(ModelsDir, name + ".onnx"));
        var (swapped, r) = Fold(original, Swap(21));
        Assert.Equal(2, r.Log.Count(Outcome.Replaced)); // affine GroupNorm(4, 16) and affine=False GroupNorm(8, 16)
        Assert.Equal(0, Count(swapped, "InstanceNormalization"));
        Assert.Equal(2, Count(swapped, "GroupNormalization"));
        Assert.Equal(21, swapped.DefaultOpset);
        AssertEquivalent(original, swapped);
    }

    /// <summary>torch's opset-11 GroupNorm: γ and β [C] reach Mul/Add through Unsqueeze(axes attribute), which
    /// Unsqueeze-13 changed; those Unsqueezes go with the swap, so they do not block raising the opset to 21.</summary>
    [Theory]
    [InlineData(9)]
    [InlineData(11)]
    public void Unsqueezed_gamma_and_beta_of_an_old_opset_do_not_block_the_raise(long opset)
    {
        var g = Decomposed(opset: opset);
        foreach (var (name, lo, hi) in new[] { ("gamma", 0.5, 1.5), ("beta", -0.5, 0.5) })
        {
            g.Graph.Initializer.Remove(g.Graph.Initializer.Single(t => t.Name == name));
            g.Init(name + "_c", F32, [8], lo, hi);
            var u = g.Node("Unsqueeze", [name + "_c"], name, name + "_unsqueeze", ("axes", new long[] { 1, 2 }));
            g.Graph.Node.RemoveAt(g.Graph.Node.Count - 1);
            g.Graph.Node.Insert(0, u);
        }
        var original = g.Build();
        var (swapped, r) = Fold(original, Swap(21));
        Assert.Equal(Outcome.Replaced, r.Log.Decisions.Single(d => d.Anchor == "instnorm").Outcome);
        Assert.Equal(21, swapped.DefaultOpset);
        Assert.Equal(0, Count(swapped, "Unsqueeze"));
        AssertEquivalent(original, swapped);
    }

    /// <summary>torch at opset ≤ 8 (no int64 Constant yet): the target [0, G, −1] is Cast(Constant float [0., G, −1.]) to
    /// int64 (review's gn_op7: "does not reshape … with a constant G"). Whole numbers convert exactly: G is read; a
    /// fraction is not a group count.</summary>
    [Theory]
    [InlineData(2.0, true)]
    [InlineData(2.5, false)]
    public void A_group_shape_cast_from_a_float_constant_is_read(double groups, bool swaps)
    {
        var g = Decomposed(opset: 7);
        g.Graph.Initializer.Remove(g.Graph.Initializer.Single(t => t.Name == "gshape"));
        g.Node("Constant", [], "gshape_f", "gshape_const", ("value", NormFold.Tensors.TensorData.Create("gshape_f", F32, [3], [0, groups, -1])));
        g.Node("Cast", ["gshape_f"], "gshape", "gshape_cast", ("to", (long)NormFold.Onnx.Proto.TensorProto.Types.DataType.Int64));
        foreach (var name in new[] { "gshape_cast", "gshape_const" })
        {
            var n = g.Graph.Node.Single(x => x.Name == name);
            g.Graph.Node.Remove(n);
            g.Graph.Node.Insert(0, n);
        }
        var original = g.Build();
        var (swapped, r) = Fold(original, Swap(21));
        if (!swaps)
        {
            Assert.Contains("with a constant G", AssertLeft(r, SkipReason.PatternMismatch, "instnorm").Detail);
            return;
        }
        Assert.Equal(Outcome.Replaced, r.Log.Decisions.Single(d => d.Anchor == "instnorm").Outcome);
        Assert.Equal(2, swapped.Proto.Graph.Node.Single(n => n.OpType == "GroupNormalization").Attribute.Single(a => a.Name == "num_groups").I);
        Assert.Equal(21, swapped.DefaultOpset);
        AssertEquivalent(original, swapped);
    }

    [Fact]
    public void Without_a_target_opset_the_refusal_says_what_would_allow_it()
    {
        var (_, r) = Fold(OnnxModel.Load(Path.Combine(ModelsDir, "groupnorm_op13.onnx")), Swap());
        var d = AssertLeft(r, SkipReason.OpsetTooLow, "/gn/InstanceNormalization");
        Assert.Contains("a target opset of 21", d.Detail);
        Assert.DoesNotContain("--", d.Detail); // the library names no CLI flag
    }

    [Fact]
    public void Swap_then_lower_is_equivalent_to_the_original()
    {
        var original = OnnxModel.Load(Path.Combine(ModelsDir, "groupnorm_op13.onnx"));
        var (swapped, _) = Fold(original, Swap(21));
        var (lowered, r) = Fold(swapped, new PipelineOptions { LowerGroupNorm = true });
        // (The second GroupNorm's γ is all ones: its Mul goes too, merged away by AffineMerge.)
        Assert.Equal(2, r.Log.Decisions.Count(d => d.Rule == "GroupNormLowering" && d.Outcome == Outcome.Replaced));
        Assert.Equal(0, Count(lowered, "GroupNormalization"));
        Assert.Equal(2, Count(lowered, "InstanceNormalization"));
        AssertEquivalent(original, lowered);
        AssertEquivalent(swapped, lowered);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Synthetic_ranks_swap_at_opset_21(int spatial)
    {
        var original = Decomposed(spatial: spatial, opset: 21).Build();
        var (swapped, r) = Fold(original, Swap());
        Assert.Equal(Outcome.Replaced, Single(r).Outcome);
        Assert.Equal(["GroupNormalization"], swapped.Proto.Graph.Node.Select(n => n.OpType));
        AssertEquivalent(original, swapped);
    }

    [Fact]
    public void Float16_swaps()
    {
        var original = Decomposed(opset: 21, type: F16).Build();
        var (swapped, r) = Fold(original, Swap());
        Assert.Equal(Outcome.Replaced, Single(r).Outcome);
        AssertEquivalent(original, swapped);
    }

    [Fact]
    public void Groupwise_constant_gamma_gives_groupnormalization_18_at_opset_18_and_lowers_back()
    {
        double[] gamma = [1, 1, 1, 1, 2, 2, 2, 2]; // 2 groups of 4 channels
        var original = Decomposed(gamma: gamma, opset: 18, extra: g => g.SetInit("beta", F32, [8, 1, 1], [0, 0, 0, 0, .5, .5, .5, .5])).Build();
        var (swapped, r) = Fold(original, Swap());
        Assert.Contains("GroupNormalization-18", Single(r).Detail);
        Assert.Equal([2L], swapped.Proto.Graph.Initializer.Single(t => t.Name.EndsWith("_GroupNormalization_scale")).Dims);
        AssertEquivalent(original, swapped);
        var (lowered, _) = Fold(swapped, new PipelineOptions { LowerGroupNorm = true });
        AssertEquivalent(original, lowered);
    }

    [Fact]
    public void Gamma_varying_within_groups_needs_opset_21()
    {
        var (_, r) = Fold(Decomposed(opset: 18).Build(), Swap());
        var d = AssertLeft(r, SkipReason.NotPerChannel);
        Assert.Contains("per group", d.Detail);
    }

    [Fact]
    public void Instance_norm_with_its_own_scale_is_refused()
    {
        var (_, r) = Fold(Decomposed(inScale: 2, opset: 21).Build(), Swap());
        AssertLeft(r, SkipReason.InstanceNormNotIdentity);
    }

    [Fact]
    public void A_second_reshape_to_another_shape_is_refused()
    {
        var (_, r) = Fold(Decomposed(opset: 21, restore: [1, 4, 6, 3]).Build(), Swap());
        AssertLeft(r, SkipReason.ReshapeDoesNotRestore);
    }

    [Fact]
    public void An_intermediate_read_outside_the_pattern_is_refused()
    {
        var (_, r) = Fold(Decomposed(opset: 21, extra: g => g.Output("in")).Build(), Swap());
        AssertLeft(r, SkipReason.IntermediateUsedOutside);
    }

    [Fact]
    public void Groups_that_do_not_divide_channels_are_refused()
    {
        // 16 channels × 3 × 3 reshape to 3 groups of 48 elements, but 3 does not divide 16.
        var (_, r) = Fold(Decomposed(c: 16, groups: 3, opset: 21).Build(), Swap());
        AssertLeft(r, SkipReason.GroupsDoNotDivideChannels);
    }

    [Fact]
    public void Unknown_rank_is_refused()
    {
        var (_, r) = Fold(Decomposed(opset: 21, declareRank: false).Build(), Swap());
        AssertLeft(r, SkipReason.UnknownRank);
    }

    [Fact]
    public void A_plain_instance_normalization_is_not_a_candidate()
    {
        var g = new GraphBuilder(21);
        g.Input("x", F32, [1, 4, 3, 3]);
        g.Init("s", F32, [4]);
        g.Init("b", F32, [4]);
        g.Node("InstanceNormalization", ["x", "s", "b"], "y", "in");
        g.Output("y");
        var (_, r) = Fold(g.Build(), Swap());
        Assert.Empty(r.Log.Decisions);
    }

    [Fact]
    public void Instance_norm_scale_fed_at_run_time_is_not_constant()
    {
        var (_, r) = Fold(Decomposed(opset: 21, extra: g => g.Input("in_scale", F32, [2])).Build(), Swap());
        AssertLeft(r, SkipReason.ParameterNotConstant);
    }

    [Fact]
    public void Raising_is_refused_when_another_node_would_change_meaning()
    {
        // RoiAlign-16 changed its default coordinate_transformation_mode (output_half_pixel → half_pixel).
        var original = Decomposed(opset: 13, extra: g =>
        {
            g.Init("rois", F32, [1, 4], [0, 0, 2, 2]);
            g.Int64s("batch", 0);
            g.Node("RoiAlign", ["y", "rois", "batch"], "roi", "roialign", ("output_height", 2L), ("output_width", 2L));
            g.Output("roi");
        }).Build();
        var (swapped, r) = Fold(original, Swap(21));
        var d = AssertLeft(r, SkipReason.OpsetTooLow, "instnorm");
        Assert.Contains("RoiAlign 'roialign' (RoiAlign-16 changed the default coordinate_transformation_mode)", d.Detail);
        Assert.Equal(13, swapped.DefaultOpset);
    }

    [Fact]
    public void Lowering_needs_a_known_rank()
    {
        var g = new GraphBuilder(21);
        g.Input("x", F32, null);
        g.Init("s", F32, [4]);
        g.Init("b", F32, [4]);
        g.Node("GroupNormalization", ["x", "s", "b"], "y", "gn", ("num_groups", 2L));
        g.Output("y");
        var (_, r) = Fold(g.Build(), new PipelineOptions { LowerGroupNorm = true });
        AssertLeft(r, SkipReason.UnknownRank);
    }
}
