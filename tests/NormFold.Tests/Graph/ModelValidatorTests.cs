using Google.Protobuf;
using NormFold.Cli;
using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Rewriting;
using NormFold.Tests.Builders;
using NormFold.Tests.Cli;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Graph;

/// <summary>Models ONNX calls invalid are refused at load (and before folding) in one line naming the file, the graph
/// and the node or tensor; valid models NormFold merely cannot fold still load.</summary>
[Collection("Console")] // runs the CLI in process, which writes Console.Error
public class ModelValidatorTests
{
    /// <summary>X [1,2,4,4] → Conv(w, b) 'conv' → BN 'bn' → y.</summary>
    static GraphBuilder ConvBn()
    {
        var g = new GraphBuilder(15);
        g.Input("x", GraphBuilder.F32, [1, 2, 4, 4]);
        g.Init("w", GraphBuilder.F32, [3, 2, 3, 3]);
        g.Init("b", GraphBuilder.F32, [3]);
        g.Node("Conv", ["x", "w", "b"], "c", "conv", ("pads", new long[] { 1, 1, 1, 1 }));
        g.Bn("c", 3, "y", name: "bn");
        g.Output("y");
        return g;
    }

    /// <summary>Writes the model, loads it, asserts the refusal names the file and returns the message.</summary>
    static string Refused(GraphBuilder g, params string[] expected)
    {
        string path = Path.Combine(TempDir(), "bad.onnx");
        File.WriteAllBytes(path, g.Proto.ToByteArray());
        var e = Assert.Throws<InvalidModelException>(() => OnnxModel.Load(path));
        Assert.Single(e.Message.Split('\n'));
        Assert.StartsWith(path + ": ", e.Message);
        foreach (var s in expected) Assert.Contains(s, e.Message);
        // Folding a model built in memory refuses it the same way.
        Assert.Throws<InvalidModelException>(() => Folding.Fold(new OnnxModel(g.Proto.Clone())));
        return e.Message;
    }

    [Fact]
    public void Two_initializers_with_one_name_are_refused()
    {
        var g = ConvBn();
        g.Graph.Initializer.Add(NormFold.Tensors.TensorData.Create("w", GraphBuilder.F32, new long[] { 3, 2, 3, 3 }, new double[54]));
        Refused(g, "graph 'main'", "two initializers are named 'w'");
    }

    [Fact]
    public void A_duplicated_graph_input_is_refused()
    {
        var g = ConvBn();
        g.Input("x", GraphBuilder.F32, [1, 2, 4, 4]);
        Refused(g, "graph input 'x' is declared twice");
    }

    [Fact]
    public void Two_nodes_producing_one_tensor_are_refused()
    {
        var g = ConvBn();
        g.Node("Relu", ["x"], "c", "relu");
        Refused(g, "'c' is produced twice", "Conv 'conv'", "Relu 'relu'");
    }

    [Fact]
    public void A_node_output_named_like_an_initializer_is_refused()
    {
        var g = ConvBn();
        g.Node("Relu", ["x"], "w", "relu");
        Refused(g, "'w' is both an initializer and the output of Relu 'relu'");
    }

    [Fact]
    public void A_transpose_reading_its_own_output_is_refused_as_a_cycle()
    {
        var g = ConvBn();
        g.Node("Transpose", ["t"], "t", "loop");
        g.Output("t");
        Refused(g, "Transpose 'loop' reads its own output");
    }

    [Fact]
    public void A_longer_cycle_is_named_node_by_node()
    {
        var g = ConvBn();
        g.Node("Relu", ["x", "r3"], "r1", "r1"); // an extra input keeps the edges: Relu is only named here
        g.Node("Relu", ["r1"], "r2", "r2");
        g.Node("Relu", ["r2"], "r3", "r3");
        Refused(g, "cycle", "Relu 'r1'", "Relu 'r2'", "Relu 'r3'");
    }

    [Fact]
    public void A_cycle_inside_an_if_body_is_refused()
    {
        var g = ConvBn();
        var body = g.Body("then");
        body.Node("Identity", ["i2"], "i1", "i1");
        body.Node("Identity", ["i1"], "i2", "i2");
        body.Output("i2");
        g.Input("cond", (int)TensorProto.Types.DataType.Bool, []);
        g.Node("If", ["cond"], "out", "if", ("then_branch", body.Graph), ("else_branch", body.Graph.Clone()));
        g.Output("out");
        Refused(g, "graph 'main/if:", "cycle", "Identity 'i1'");
    }

    [Fact]
    public void A_name_nothing_defines_is_refused()
    {
        var g = ConvBn();
        g.Node("Relu", ["nowhere"], "r", "relu");
        g.Output("r");
        Refused(g, "Relu 'relu' reads 'nowhere'");
        g = ConvBn();
        g.Output("ghost");
        Refused(g, "graph output 'ghost' is not defined");
    }

    [Fact]
    public void A_batchnorm_without_inputs_names_file_node_and_problem_and_the_cli_exits_3()
    {
        var g = ConvBn();
        g.Graph.Node[1].Input.Clear();
        Refused(g, "BatchNormalization 'bn' has 0 input(s); it needs 5");
        string path = Path.Combine(TempDir(), "bad.onnx");
        File.WriteAllBytes(path, g.Proto.ToByteArray());
        var (code, _, err) = CliRunner.Run("fold", path, "-o", Path.Combine(Path.GetDirectoryName(path)!, "out.onnx"));
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Single(err.Trim().Split('\n'));
        Assert.Contains(path, err);
        Assert.Contains("BatchNormalization 'bn'", err);
        Assert.False(File.Exists(Path.Combine(Path.GetDirectoryName(path)!, "out.onnx")));
    }

    [Fact]
    public void A_batchnorm_with_an_empty_required_input_or_without_outputs_is_refused()
    {
        var g = ConvBn();
        g.Graph.Node[1].Input[2] = "";
        Refused(g, "BatchNormalization 'bn'", "required input 2 (B) is empty");
        g = ConvBn();
        g.Graph.Node[1].Output.Clear();
        g.Graph.Output.Clear();
        g.Output("c");
        Refused(g, "BatchNormalization 'bn' has no output");
    }

    [Fact]
    public void A_constant_with_zero_or_two_values_is_refused()
    {
        var g = ConvBn();
        g.Node("Constant", [], "k", "k0");
        Refused(g, "Constant 'k0' holds 0 values");
        g = ConvBn();
        g.Node("Constant", [], "k", "k2", ("value_float", 1.0f), ("value_floats", new long[0]));
        g.Graph.Node[^1].Attribute[1] = new AttributeProto { Name = "value_floats", Type = AttributeProto.Types.AttributeType.Floats, Floats = { 1f } };
        Refused(g, "Constant 'k2' holds 2 values");
    }

    [Theory]
    [InlineData(new long[] { 3, -2, 3, 3 }, "dimension -2")]
    [InlineData(new long[] { 1L << 40, 1L << 40, 3, 3 }, "more than 9223372036854775807 elements")]
    public void Negative_or_overflowing_dims_are_refused(long[] dims, string expected)
    {
        var g = ConvBn();
        var w = g.Graph.Initializer.Single(t => t.Name == "w");
        w.Dims.Clear();
        w.Dims.AddRange(dims);
        Refused(g, "tensor 'w'", expected);
    }

    [Theory]
    [InlineData("group", 0L, "group = 0")]
    [InlineData("group", -2L, "group = -2")]
    [InlineData("group", 2L, "group = 2 does not divide")]
    [InlineData("strides", new long[] { 1, 0 }, "strides [1, 0] holds 0")]
    [InlineData("dilations", new long[] { -1, 1 }, "dilations [-1, 1] holds -1")]
    [InlineData("pads", new long[] { 1, -1, 1, 1 }, "pads [1, -1, 1, 1] holds -1")]
    [InlineData("pads", new long[] { 1, 1 }, "pads has 2 values")]
    [InlineData("kernel_shape", new long[] { 3 }, "kernel_shape has 1 values")]
    public void Conv_attributes_are_validated_before_use(string name, object value, string expected)
    {
        var g = ConvBn();
        var conv = g.Graph.Node[0];
        if (conv.Attribute.FirstOrDefault(a => a.Name == name) is { } old) conv.Attribute.Remove(old);
        conv.Attribute.Add(GraphBuilder.Attr(name, value));
        Refused(g, "Conv 'conv'", expected);
    }

    /// <summary>Campaign weights:7005263: a Conv in an If body reading a rank-6 weight from the main graph with 4 pads
    /// passed validation (the weight was looked up in the body only); the fold wrote the weight into the body and
    /// fold --check blamed its own output (exit 1). The weight is found in the enclosing graph too.</summary>
    [Fact]
    public void A_body_conv_is_validated_against_a_weight_of_the_enclosing_graph()
    {
        var g = new GraphBuilder(15);
        g.Input("x", GraphBuilder.F32, [1, 3, 4, 4]);
        g.Input("cond", (int)TensorProto.Types.DataType.Bool, []);
        g.Init("w", GraphBuilder.F32, [4, 3, 3, 3, 1, 1]);
        var body = g.Body("then");
        body.Node("Conv", ["x", "w"], "c", "body_conv", ("pads", new long[] { 1, 1, 1, 1 }));
        body.Output("c");
        g.Node("If", ["cond"], "out", "if", ("then_branch", body.Graph), ("else_branch", body.Graph.Clone()));
        g.Output("out");
        Refused(g, "graph 'main/if:", "Conv 'body_conv'", "pads has 4 values", "'w' [4, 3, 3, 3, 1, 1]");
    }

    /// <summary>group=0 on a ConvTranspose let a plain fold exit 0 and made ORT die of SIGFPE under --check.</summary>
    [Fact]
    public void A_convtranspose_with_group_zero_is_refused_and_check_does_not_crash()
    {
        var g = new GraphBuilder(15);
        g.Input("x", GraphBuilder.F32, [1, 4, 3, 3]);
        g.Init("w", GraphBuilder.F32, [4, 2, 2, 2]);
        g.Node("ConvTranspose", ["x", "w"], "c", "deconv", ("group", 0L));
        g.Bn("c", 2, "y", name: "bn");
        g.Output("y");
        Refused(g, "ConvTranspose 'deconv': group = 0");
        string path = Path.Combine(TempDir(), "bad.onnx");
        File.WriteAllBytes(path, g.Proto.ToByteArray());
        var (code, _, err) = CliRunner.Run("fold", path, "-o", Path.Combine(Path.GetDirectoryName(path)!, "out.onnx"), "--check");
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("group = 0", err);
    }

    [Fact]
    public void Valid_models_that_are_merely_unusual_still_load_and_fold()
    {
        // Nodes out of order, an initializer that is also a graph input, an unknown domain op with no inputs.
        var g = ConvBn();
        g.Graph.Node.Add(g.Graph.Node[0]);
        g.Graph.Node.RemoveAt(0);
        g.Input("b", GraphBuilder.F32, [3]);
        var custom = g.Node("Anything", [], "z", "custom");
        custom.Domain = "com.example";
        g.Graph.Node.Remove(custom);
        var (folded, r) = Fold(g.Build());
        Assert.Equal(Outcome.Replaced, Single(r).Outcome); // bias 'b' can be fed at run time: Mul + Add instead
        AssertEquivalent(g.Build(), folded);
    }

    /// <summary>Every graph walk is iterative: chains of 10,000 nodes load, folds and writes.</summary>
    [Fact]
    public void Chains_of_ten_thousand_nodes_fold_without_deep_recursion()
    {
        const int length = 10_000;
        var g = new GraphBuilder(15);
        g.Input("x", GraphBuilder.F32, [1, 2, 4, 4]);
        // W reaches the Conv through 10,000 Identity/Transpose nodes (perm = identity): a constant, looked up down the chain.
        g.Init("w0", GraphBuilder.F32, [3, 2, 3, 3]);
        for (int i = 1; i <= length; i++)
            if (i % 2 == 0) g.Node("Identity", [$"w{i - 1}"], $"w{i}", $"id{i}");
            else g.Node("Transpose", [$"w{i - 1}"], $"w{i}", $"tr{i}", ("perm", new long[] { 0, 1, 2, 3 }));
        g.Node("Conv", ["x", $"w{length}"], "c", "conv", ("pads", new long[] { 1, 1, 1, 1 }));
        g.Bn("c", 3, "h0", name: "bn");
        // Then 10,000 activations in a row, and a BN at the end that becomes Mul + Add.
        for (int i = 1; i <= length; i++) g.Node("Relu", [$"h{i - 1}"], $"h{i}", $"relu{i}");
        g.Bn($"h{length}", 3, "y", name: "bn_last");
        g.Output("y");
        string dir = TempDir();
        string path = Path.Combine(dir, "deep.onnx");
        File.WriteAllBytes(path, g.Proto.ToByteArray());
        // On a thread with a 256 KB stack: recursion along the chain (10,000 frames) would overflow it and kill the process.
        FoldResult? result = null;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try { result = Folding.FoldFile(path, Path.Combine(dir, "out.onnx")); }
            catch (Exception e) { failure = e; }
        }, maxStackSize: 256 * 1024);
        thread.Start();
        thread.Join();
        Assert.Null(failure);
        Assert.NotNull(result);
        Assert.Equal(Outcome.Folded, result.Log.Decisions.Single(d => d.Anchor == "bn").Outcome);
        Assert.Equal(Outcome.Replaced, result.Log.Decisions.Single(d => d.Anchor == "bn_last").Outcome);
        using var folded = OnnxModel.Load(Path.Combine(dir, "out.onnx"));
        Assert.Equal(0, Count(folded, "BatchNormalization"));
    }
}

public class ZeroChannelTests
{
    /// <summary>A Conv with zero output channels is valid ONNX (an empty tensor): folding must not divide by zero.</summary>
    [Fact]
    public void A_conv_with_zero_output_channels_and_its_bn_are_not_an_internal_error()
    {
        var g = new GraphBuilder(15);
        g.Input("x", GraphBuilder.F32, [1, 2, 4, 4]);
        g.Init("w", GraphBuilder.F32, [0, 2, 3, 3]);
        g.Init("b", GraphBuilder.F32, [0]);
        g.Node("Conv", ["x", "w", "b"], "c", "conv");
        g.Bn("c", 0, "y", name: "bn");
        g.Output("y");
        var (folded, r) = Fold(g.Build());
        Assert.Equal(Outcome.Folded, Single(r).Outcome);
        Assert.DoesNotContain(folded.Proto.Graph.Initializer, t => t.Dims.Count > 0 && t.Dims[0] != 0); // W' [0, 2, 3, 3], b' [0]
        // Both run in ORT to the same empty output (the comparator's handling of empty outputs is tested on its own).
        var x = NormFold.Verification.NamedTensor.FromDoubles("x", GraphBuilder.F32, [1, 2, 4, 4], new double[32]);
        using var a = Runner(g.Build());
        using var b = Runner(folded);
        Assert.Equal(new long[] { 1, 0, 2, 2 }, Assert.Single(a.Run([x])).Shape);
        Assert.Equal(new long[] { 1, 0, 2, 2 }, Assert.Single(b.Run([x])).Shape);
    }
}
