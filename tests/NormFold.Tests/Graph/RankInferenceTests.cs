using NormFold.Graph;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;

namespace NormFold.Tests.Graph;

/// <summary>Shapes proven from the graph's inputs and constants through Transpose, Concat, Expand, Reshape, Shape,
/// Gather, Unsqueeze, Squeeze and Conv — never from a value_info (each graph here declares a lie on its result).</summary>
public class RankInferenceTests
{
    /// <summary>The proven shape of "y" in the graph <paramref name="build"/> makes from "x" (declared <paramref name="x"/>),
    /// with a value_info of rank 7 on y that must change nothing.</summary>
    static long[]? Proven(long[]? x, Action<GraphBuilder> build)
    {
        var g = new GraphBuilder(17);
        g.Input("x", F32, x);
        build(g);
        g.Graph.ValueInfo.Add(Value("y", F32, [1, 1, 1, 1, 1, 1, 1]));
        g.Output("y", F32, null);
        var model = g.Build();
        return new GraphIndex(model.Proto.Graph, model).ProvenShape("y");
    }

    static long[] Shape(long[]? x, Action<GraphBuilder> build) => Proven(x, build) ?? throw new Xunit.Sdk.XunitException("not proven");

    [Fact]
    public void Transpose_has_the_rank_of_its_perm()
    {
        Assert.Equal([-1, -1, -1], Shape(null, g => g.Node("Transpose", ["x"], "y", "t", ("perm", new long[] { 0, 2, 1 }))));
        Assert.Equal([4, 3, 2], Shape([2, 3, 4], g => g.Node("Transpose", ["x"], "y", "t"))); // no perm: reversed
    }

    [Fact]
    public void Concat_takes_the_rank_of_any_input_and_sums_the_axis_when_all_are_known()
    {
        Assert.Equal([2, -1, 8], Shape(null, g => g.Node("Concat", ["x", g.Init("c", F32, [2, 1, 8])], "y", "cat", ("axis", 1L))));
        Assert.Equal([2, 5, 8], Shape([2, 4, 8], g => g.Node("Concat", ["x", g.Init("c", F32, [2, 1, 8])], "y", "cat", ("axis", -2L))));
    }

    [Fact]
    public void Expand_has_the_broadcast_of_its_input_and_shape()
    {
        Assert.Equal([2, 3, 8], Shape([3, 1], g => g.Node("Expand", ["x", g.Int64s("s", 2, 1, 8)], "y", "e")));
        // A computed shape of known length: the rank is the larger of the two.
        Assert.Equal([-1, -1, -1], Shape([3, 1], g => g.Node("Expand", ["x", g.HiddenInt64s("s", 2, 1, 8)], "y", "e")));
        Assert.Null(Proven(null, g => g.Node("Expand", ["x", g.Int64s("s", 2, 1, 8)], "y", "e"))); // X's rank could be higher
    }

    [Fact]
    public void Reshape_has_the_length_of_its_target()
    {
        // Concat of constants: values known.
        Assert.Equal([2, 4, 3], Shape([2, 3, 4], g =>
        {
            g.Node("Concat", [g.Int64s("a", 0), g.Int64s("b", 4, -1)], "t", "cat", ("axis", 0L));
            g.Node("Reshape", ["x", "t"], "y", "r");
        }));
        // Shape → Gather → Unsqueeze piece of length 1: [?, ?, 4] (−1 not inferred past an unknown entry).
        Assert.Equal([-1, -1, 4], Shape([2, 3, 4], g =>
        {
            g.Node("Shape", ["x"], "sh", "shape");
            g.Node("Gather", ["sh", g.Int64s("i", 0)], "n", "gather");
            g.Node("Concat", ["n", g.Int64s("b", -1, 4)], "t", "cat", ("axis", 0L));
            g.Node("Reshape", ["x", "t"], "y", "r");
        }));
        // Any computed target of known length.
        Assert.Equal([-1, -1], Shape(null, g => g.Node("Reshape", ["x", g.HiddenInt64s("t", 6, -1)], "y", "r")));
        // A piece whose length is not known: nothing.
        Assert.Null(Proven(null, g =>
        {
            g.Node("Shape", ["x"], "sh", "shape");
            g.Node("Concat", ["sh", g.Int64s("b", -1)], "t", "cat", ("axis", 0L));
            g.Node("Reshape", ["x", "t"], "y", "r");
        }));
    }

    [Fact]
    public void Unsqueeze_and_squeeze_with_constant_axes()
    {
        Assert.Equal([2, 1, 8, 1], Shape([2, 8], g => g.Node("Unsqueeze", ["x", g.Int64s("a", 1, -1)], "y", "u")));
        Assert.Equal([2, 8], Shape([2, 1, 8], g => g.Node("Squeeze", ["x", g.Int64s("a", -2)], "y", "s")));
        Assert.Equal([2, 8], Shape([2, 1, 8], g => g.Node("Squeeze", ["x"], "y", "s"))); // no axes: the 1s, all dims known
        Assert.Null(Proven([2, -1, 8], g => g.Node("Squeeze", ["x"], "y", "s")));
        Assert.Null(Proven([2, 1, 8], g => g.Node("Squeeze", ["x", g.HiddenInt64s("a", 1)], "y", "s")));
        Assert.Null(Proven([2, 3, 8], g => g.Node("Squeeze", ["x", g.Int64s("a", 1)], "y", "s"))); // not a dim of 1: invalid
    }

    [Fact]
    public void Reductions_keep_or_drop_their_axes()
    {
        Assert.Equal([2, 5, 1], Shape([2, 5, 8], g => g.Node("ReduceMean", ["x"], "y", "r", ("axes", new long[] { -1 }))));
        Assert.Equal([2], Shape([2, 5, 8], g => g.Node("ReduceSum", ["x", g.Int64s("a", 1, 2)], "y", "r", ("keepdims", 0L))));
        Assert.Equal([1, 1, 1], Shape([2, 5, 8], g => g.Node("ReduceMax", ["x"], "y", "r"))); // no axes: all
        Assert.Equal([-1, -1, -1], Shape([2, 5, 8], g => g.Node("ReduceSum", ["x", g.HiddenInt64s("a", 1)], "y", "r")));
        Assert.Null(Proven([2, 5, 8], g => g.Node("ReduceSum", ["x", g.HiddenInt64s("a", 1)], "y", "r", ("keepdims", 0L))));
        Assert.Equal([2, 8], Shape([2, 5, 8], g => g.Node("ArgMax", ["x"], "y", "r", ("axis", 1L), ("keepdims", 0L))));
    }

    [Fact]
    public void Conv_has_the_rank_and_channels_of_its_weight()
    {
        Assert.Equal([-1, 8, -1, -1], Shape(null, g => g.Node("Conv", ["x", g.Init("w", F32, [8, 3, 1, 1])], "y", "c")));
    }
}
