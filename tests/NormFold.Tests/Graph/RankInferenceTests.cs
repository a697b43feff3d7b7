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
    static long[]? Proven(long[]? x, Action<GraphBuilder> build, long opset = 17)
    {
        var g = new GraphBuilder(opset);
        g.Input("x", F32, x);
        build(g);
        g.Graph.ValueInfo.Add(Value("y", F32, [1, 1, 1, 1, 1, 1, 1]));
        g.Output("y", F32, null);
        var model = g.Build();
        return new GraphIndex(model.Proto.Graph, model).ProvenShape("y");
    }

    static long[] Shape(long[]? x, Action<GraphBuilder> build, long opset = 17) => Proven(x, build, opset) ?? throw new Xunit.Sdk.XunitException("not proven");

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
        // Shape → Gather piece: x's dim 0 where it is known ([2, −1, 4] → [2, 3, 4]) ...
        Assert.Equal([2, 3, 4], Shape([2, 3, 4], g =>
        {
            g.Node("Shape", ["x"], "sh", "shape");
            g.Node("Gather", ["sh", g.Int64s("i", 0)], "n", "gather");
            g.Node("Concat", ["n", g.Int64s("b", -1, 4)], "t", "cat", ("axis", 0L));
            g.Node("Reshape", ["x", "t"], "y", "r");
        }));
        // ... an unknown entry where it is not: [?, ?, 4] (−1 not inferred past an unknown entry).
        Assert.Equal([-1, -1, 4], Shape([-1, 3, 4], g =>
        {
            g.Node("Shape", ["x"], "sh", "shape");
            g.Node("Gather", ["sh", g.Int64s("i", 0)], "n", "gather");
            g.Node("Concat", ["n", g.Int64s("b", -1, 4)], "t", "cat", ("axis", 0L));
            g.Node("Reshape", ["x", "t"], "y", "r");
        }));
        // A computed target whose values follow (a Cast of int32 constants), and any target of known length.
        Assert.Equal([6, -1], Shape(null, g => g.Node("Reshape", ["x", g.HiddenInt64s("t", 6, -1)], "y", "r")));
        Assert.Equal([-1, -1], Shape(null, g => g.Node("Reshape", ["x", g.Input("t", Int64, [2])], "y", "r")));
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

    // ---- Slice lengths and the values of Shape(x) (ONNX's partial data propagation), for PP-OCRv4 rec's LayerNorms ----

    [Fact]
    public void Slice_has_the_length_its_constant_parameters_take_from_a_known_dim()
    {
        // Dim 10, 2..−1 step 3: 2, 5, 8. Step −2 from −1 to −100: 9, 7, 5, 3, 1 (end clamped to −1). Dim 8 untouched.
        Assert.Equal([3, 8, 5], Shape([10, 8, 10], g =>
            g.Node("Slice", ["x", g.Int64s("s", 2, -1), g.Int64s("e", -1, -100), g.Int64s("a", 0, -1), g.Int64s("st", 3, -2)], "y", "slice")));
        // Ends past the dim clamp to it; a start past it takes nothing; no axes: 0, 1, …
        Assert.Equal([4, 0, 6], Shape([5, 7, 6], g => g.Node("Slice", ["x", g.Int64s("s", 1, 9), g.Int64s("e", long.MaxValue, 12)], "y", "slice")));
        // A dim that is not known stays unknown; parameters that are not constant leave the rank.
        Assert.Equal([-1, 8], Shape([-1, 8], g => g.Node("Slice", ["x", g.Int64s("s", 0), g.Int64s("e", 2), g.Int64s("a", 0)], "y", "slice")));
        Assert.Equal([-1, -1], Shape([4, 8], g => g.Node("Slice", ["x", g.HiddenInt64s("s", 0), g.Int64s("e", 2), g.Int64s("a", 0)], "y", "slice")));
        // Opset 9: attributes.
        Assert.Equal([2, 8], Shape([4, 8], g => g.Node("Slice", ["x"], "y", "slice",
            ("starts", new long[] { 0 }), ("ends", new long[] { 2 }), ("axes", new long[] { 0 })), opset: 9));
    }

    /// <summary>PP-OCRv4 rec: Reshape(c [?, 6, ?, ?], Concat(Slice(Shape(c), 0:2), [−1])) → Transpose [0, 2, 1]: the
    /// target is [N, 6, −1], so the LayerNorm's last dim is 6.</summary>
    [Theory]
    [InlineData(17)]
    [InlineData(9)]
    public void Reshape_target_takes_the_known_values_of_a_sliced_shape(long opset)
    {
        Assert.Equal([-1, -1, 6], Shape([-1, 6, -1, -1], g =>
        {
            g.Node("Shape", ["x"], "sh", "shape");
            if (opset >= 10) g.Node("Slice", ["sh", g.Int64s("s", 0), g.Int64s("e", 2), g.Int64s("a", 0)], "nc", "slice");
            else g.Node("Slice", ["sh"], "nc", "slice", ("starts", new long[] { 0 }), ("ends", new long[] { 2 }), ("axes", new long[] { 0 }));
            g.Node("Concat", ["nc", g.Int64s("rest", -1)], "t", "cat", ("axis", 0L));
            g.Node("Reshape", ["x", "t"], "r", "reshape");
            g.Node("Transpose", ["r"], "y", "transpose", ("perm", new long[] { 0, 2, 1 }));
        }, opset));
    }

    /// <summary>PP-OCRv4 rec's residual branch: Reshape(x, Concat(Cast([0]), Cast(Slice(Cast(Shape(x), int32), 1:2)), Cast([6])))
    /// with int32 pieces cast to int64: [x's dim 0, x's dim 1, 6]; a value int32 cannot hold is not known.</summary>
    const int Int32 = (int)NormFold.Onnx.Proto.TensorProto.Types.DataType.Int32, Int64 = (int)NormFold.Onnx.Proto.TensorProto.Types.DataType.Int64;

    [Fact]
    public void Shape_values_pass_through_integer_casts()
    {
        void Build(GraphBuilder g)
        {
            string I32(string name, int v)
            {
                var t = new NormFold.Onnx.Proto.TensorProto { Name = name, DataType = Int32, Dims = { 1 }, Int32Data = { v } };
                g.Graph.Initializer.Add(t);
                return name;
            }
            g.Node("Shape", ["x"], "sh", "shape");
            g.Node("Cast", ["sh"], "sh32", "to32", ("to", (long)Int32));
            g.Node("Slice", ["sh32", g.Int64s("s", 1), g.Int64s("e", 2), g.Int64s("a", 0)], "len", "slice");
            g.Node("Cast", [I32("zero", 0)], "p0", "c0", ("to", (long)Int64));
            g.Node("Cast", ["len"], "p1", "c1", ("to", (long)Int64));
            g.Node("Cast", [I32("six", 6)], "p2", "c2", ("to", (long)Int64));
            g.Node("Concat", ["p0", "p1", "p2"], "t", "cat", ("axis", 0L));
            g.Node("Reshape", ["x", "t"], "y", "reshape");
        }
        Assert.Equal([-1, 5, 6], Shape([-1, 5, 6], Build));
        Assert.Equal([-1, -1, 6], Shape([-1, 3_000_000_000, 6], Build));
    }

    /// <summary>Broadcasting ops have the larger rank when every operand's is known; with one operand's rank unknown nothing
    /// follows: it may be higher than the known one's and raise the result's (a "≥ the known rank" is no rank).</summary>
    [Fact]
    public void Add_has_the_broadcast_rank_only_when_both_ranks_are_known()
    {
        Assert.Equal([2, 5, 8], Shape([5, 8], g => g.Node("Add", ["x", g.Init("b", F32, [2, 1, 8])], "y", "add")));
        Assert.Null(Proven(null, g => g.Node("Add", [g.Init("b", F32, [2, 5, 8]), "x"], "y", "add")));
    }
}
