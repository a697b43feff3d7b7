using NormFold.Graph;
using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Graph;

/// <summary>value_info and output declarations are hints: a declaration that contradicts the shape propagated from the
/// graph's inputs and constants (or another declaration) is ignored, never trusted into a wrong broadcast.</summary>
public class DeclaredShapeTests
{
    /// <summary>x [1,3,4,4] → Relu → r (declared [1, 3]: a lie) → BN → y: the BN cannot fold and becomes Mul + Add.</summary>
    static GraphBuilder ReluBnWithLyingValueInfo(long[] declared)
    {
        var g = new GraphBuilder(15);
        g.Input("x", F32, [1, 3, 4, 4]);
        g.Node("Relu", ["x"], "r", "relu");
        g.Graph.ValueInfo.Add(Value("r", F32, declared));
        g.Bn("r", 3, "y", name: "bn");
        g.Output("y", F32, null);
        return g;
    }

    [Fact]
    public void A_value_info_of_the_wrong_rank_does_not_steer_the_mul_add_replacement()
    {
        var g = ReluBnWithLyingValueInfo([1, 3]);
        var (folded, r) = Fold(g.Build());
        Assert.Equal(Outcome.Replaced, Single(r).Outcome);
        var scale = folded.Proto.Graph.Initializer.Single(t => folded.Proto.Graph.Node.Any(n => n.OpType == "Mul" && n.Input[1] == t.Name));
        Assert.Equal(new long[] { 3, 1, 1 }, scale.Dims); // along axis 1 of a 4-D tensor, not the last axis of a 2-D one
        AssertEquivalent(g.Build(), folded);
    }

    [Fact]
    public void Contradicted_and_conflicting_declarations_are_not_returned_but_consistent_ones_are()
    {
        var g = ReluBnWithLyingValueInfo([1, 3]);
        g.Graph.ValueInfo.Add(Value("y", F32, [1, 3, -1, 4])); // consistent: kept
        g.Node("Relu", ["y"], "z", "relu2");
        g.Graph.ValueInfo.Add(Value("z", F32, [1, 3, 4, 4]));
        g.Graph.ValueInfo.Add(Value("z", F32, [1, 3, 2, 8])); // two declarations that disagree: neither
        var index = new GraphIndex(g.Proto.Graph, g.Build());
        Assert.Null(index.DeclaredType("r"));
        Assert.Equal(4, index.Rank("r"));
        Assert.NotNull(index.DeclaredType("y"));
        Assert.Null(index.DeclaredType("z"));
        Assert.Equal(new long[] { 1, 3, 4, 4 }, index.Shape("z")); // propagated through BN and Relu
        Assert.NotNull(index.DeclaredType("x")); // the graph's input is binding
    }

    [Fact]
    public void Conv_output_shapes_are_propagated_and_checked_against_declarations()
    {
        var g = new GraphBuilder(15);
        g.Input("x", F32, [2, 3, 9, 9]);
        g.Init("w", F32, [4, 3, 3, 3]);
        g.Node("Conv", ["x", "w"], "c", "conv", ("pads", new long[] { 1, 1, 1, 1 }), ("strides", new long[] { 2, 2 }));
        g.Graph.ValueInfo.Add(Value("c", F32, [2, 4, 25, 1]));
        g.Output("c", F32, null);
        var index = new GraphIndex(g.Proto.Graph, g.Build());
        Assert.Equal(new long[] { 2, 4, 5, 5 }, index.Shape("c"));
        Assert.Null(index.DeclaredType("c"));
    }

    /// <summary>in0 [shape] → op (Relu, or Expand by ones) → x (value_info <paramref name="declared"/>) → Reshape([0, 2, −1])
    /// → IN → Reshape(to <paramref name="declared"/>) → Mul γ → Add β.</summary>
    static GraphBuilder GroupNormAfter(string op, long[] shape, long[] declared)
    {
        var g = new GraphBuilder(21);
        g.Input("in0", F32, op == "Expand" ? null : shape); // Expand's rank is max(X's, the shape's length): X's unknown
        if (op == "Expand") g.Node("Expand", ["in0", g.Int64s("ones", 1, 1, 1, 1)], "x", "expand");
        else g.Node(op, ["in0"], "x", "relu");
        g.Graph.ValueInfo.Add(Value("x", F32, declared));
        g.Int64s("gshape", 0, 2, -1);
        g.Node("Reshape", ["x", "gshape"], "r1", "reshape1");
        g.Init("in_scale", F32, [2], [1, 1]);
        g.Init("in_bias", F32, [2], [0, 0]);
        g.Node("InstanceNormalization", ["r1", "in_scale", "in_bias"], "in", "instnorm");
        g.Int64s("back", declared);
        g.Node("Reshape", ["in", "back"], "r2", "reshape2");
        g.Init("gamma", F32, [8, 1, 1], 0.5, 1.5);
        g.Init("beta", F32, [8, 1, 1], -0.5, 0.5);
        g.Node("Mul", ["r2", "gamma"], "m", "mul");
        g.Node("Add", ["m", "beta"], "y", "add");
        g.Output("y", F32, null);
        return g;
    }

    /// <summary>Reshape(x, [0, 2, −1]) → IN → Reshape(to x's declared shape) → Mul γ → Add β, where x's value_info
    /// [2,8,144,1] lies (x is [2,8,12,12]): the second Reshape does not restore x, so this is not a GroupNorm.</summary>
    [Fact]
    public void The_groupnorm_swap_does_not_trust_a_lying_value_info()
    {
        var g = GroupNormAfter("Relu", [2, 8, 12, 12], [2, 8, 144, 1]);
        var (folded, r) = Fold(g.Build(), new PipelineOptions { SwapGroupNorm = true });
        Assert.Equal(Outcome.Left, Single(r).Outcome);
        Assert.Equal(0, Count(folded, "GroupNormalization"));
        AssertEquivalent(g.Build(), folded);
    }

    /// <summary>The same lie where nothing contradicts it (x comes out of an Expand of an input of undeclared rank):
    /// a value_info is no proof of X's shape, so the constant Reshape back is not known to restore it. The original's
    /// output is [2,8,12,12]; a GroupNormalization would keep x's [2,8,144,1].</summary>
    [Fact]
    public void The_groupnorm_swap_does_not_trust_an_uncontradicted_value_info()
    {
        var g = GroupNormAfter("Expand", [2, 8, 144, 1], [2, 8, 12, 12]);
        var (folded, r) = Fold(g.Build(), new PipelineOptions { SwapGroupNorm = true });
        Assert.Contains("value_info", AssertLeft(r, SkipReason.UnknownRank, "instnorm").Detail);
        Assert.Equal(0, Count(folded, "GroupNormalization"));
        AssertEquivalent(g.Build(), folded, shapes: new Dictionary<string, long[]> { ["in0"] = [2, 8, 144, 1] });
    }

    /// <summary>Campaign value-info:7001222: decoder_convtranspose (ConvTranspose → BN → Relu → ConvTranspose → BN) with a
    /// value_info of the wrong rank on every intermediate. ORT merges the lies leniently in the original graph; once the
    /// BNs are folded it fed Relu's declared rank 2 to the second ConvTranspose and refused the model. A rewritten graph
    /// drops the declarations the graph contradicts.</summary>
    [Fact]
    public void A_rewritten_graph_drops_the_value_info_the_graph_contradicts()
    {
        var original = NormFold.Onnx.OnnxModel.Load(Path.Combine(ModelsDir, "decoder_convtranspose.onnx"));
        var graph = original.Proto.Graph;
        var internals = graph.Node.SelectMany(n => n.Output).Where(o => graph.Output.All(x => x.Name != o)).ToList();
        Assert.Equal(4, internals.Count);
        for (int i = 0; i < internals.Count; i++) graph.ValueInfo.Add(Value(internals[i], F32, i < 2 ? [2] : [2, 2]));
        var (folded, r) = Fold(original);
        Assert.Equal(2, r.Log.Decisions.Count(d => d.Outcome == Outcome.Folded));
        Assert.Empty(folded.Proto.Graph.ValueInfo);
        AssertEquivalent(original, folded, shapes: new Dictionary<string, long[]> { ["input"] = [2, 8, 5, 5] });
    }

    [Fact]
    public void A_value_info_the_graph_does_not_contradict_stays_in_a_rewritten_graph()
    {
        var g = ReluBnWithLyingValueInfo([1, 3, 4, 4]);
        var (folded, r) = Fold(g.Build());
        Assert.Equal(Outcome.Replaced, Single(r).Outcome);
        Assert.Equal("r", Assert.Single(folded.Proto.Graph.ValueInfo).Name);
    }

    /// <summary>A proven shape comes from the main graph's inputs and constants only: a value_info (uncontradicted, as
    /// nothing propagates to it) is a hint for <see cref="GraphIndex.Rank"/> but no proof.</summary>
    [Fact]
    public void Proven_shapes_come_from_inputs_and_constants_never_from_value_info()
    {
        foreach (bool inputShaped in new[] { false, true })
        {
            var g = new GraphBuilder(17);
            g.Input("x", F32, [2, 5, 8]);
            if (!inputShaped) g.Graph.Input[0].Type.TensorType.Shape = null;
            g.Node("Identity", ["x"], "i", "identity");
            g.Graph.ValueInfo.Add(Value("i", F32, [2, 5, 8]));
            g.Init("w", F32, [8, 3]);
            g.Node("MatMul", ["i", "w"], "y", "matmul");
            g.Output("y", F32, null);
            var index = new GraphIndex(g.Proto.Graph, g.Build());
            Assert.Equal(3, index.Rank("i"));
            Assert.Equal(3, index.Rank("y"));
            Assert.Equal(inputShaped ? new long[] { 2, 5, 8 } : null, index.ProvenShape("i"));
            Assert.Equal(inputShaped ? 3 : null, index.ProvenShape("y")?.Length);
            Assert.Equal(new long[] { 8, 3 }, index.ProvenShape("w"));
        }
    }
}
