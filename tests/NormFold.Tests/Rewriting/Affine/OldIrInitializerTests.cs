using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.Rewriting.Affine.AffineTestGraphs;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting.Affine;

/// <summary>
/// Before IR version 4 every initializer had to be listed as a graph input, and none can be fed at run time (ONNX
/// Runtime: Graph::CanOverrideInitializer() is ir_version ≥ 4). Such initializers are constants.
/// </summary>
public class OldIrInitializerTests
{
    /// <summary>Conv → BN → Mul at IR version <paramref name="ir"/>, every initializer also a graph input.</summary>
    static GraphBuilder Model(long ir, long opset = 8)
    {
        var g = Conv(opset: opset);
        g.Bn("c", 6, "bn");
        Op(g, "Mul", "bn", [6, 1, 1], "y");
        g.Output("y", F32, null);
        g.Proto.IrVersion = ir;
        foreach (var t in g.Graph.Initializer.ToList()) g.Input(t.Name, t.DataType, t.Dims.ToArray());
        return g;
    }

    [Fact]
    public void At_ir_version_3_initializers_listed_as_inputs_fold_and_leave_the_inputs()
    {
        var original = Model(3).Build();
        var (folded, r) = FoldChecked(original);
        Assert.Equal(Outcome.Folded, Single(r).Outcome);
        Assert.Equal(["Conv"], folded.Proto.Graph.Node.Select(n => n.OpType));
        // The folded-away constants are gone from the initializers and from the inputs; the new initializers are
        // listed as inputs too, as IR version 3 requires.
        var inputs = folded.Proto.Graph.Input.Select(i => i.Name).ToList();
        Assert.Equal(["x"], inputs.Where(n => original.Proto.Graph.Input.Any(o => o.Name == n)));
        Assert.Equal(folded.Proto.Graph.Initializer.Select(t => t.Name).Order(), inputs.Where(n => n != "x").Order());
    }

    [Fact]
    public void At_ir_version_4_they_can_be_fed_and_are_not_constants()
    {
        var (_, r) = Fold(Model(4, 9).Build());
        Assert.Contains("replaced at run time", AssertLeft(r, SkipReason.ParameterNotConstant).Detail);
    }

    [Fact]
    public void A_standalone_bn_before_opset_7_becomes_mul_and_add_with_broadcast_and_axis()
    {
        var g = new GraphBuilder(6);
        g.Input("x", F32, [2, 4, 5, 5]);
        g.Node("Relu", ["x"], "r", "relu");
        g.Node("BatchNormalization", ["r", .. g.BnParams("bn", 4)], "y", "bn", ("is_test", 1L));
        g.Output("y", F32, null);
        g.Proto.IrVersion = 3;
        var (folded, r) = Fold(g.Build());
        Assert.Equal("BatchNormToMulAdd", Single(r).Rule);
        var ops = folded.Proto.Graph.Node.Where(n => n.OpType is "Mul" or "Add").ToList();
        Assert.Equal(2, ops.Count);
        foreach (var n in ops)
        {
            Assert.Equal(1, n.Attribute.Single(a => a.Name == "broadcast").I);
            Assert.Equal(1, n.Attribute.Single(a => a.Name == "axis").I);
            Assert.Equal([4L], folded.Proto.Graph.Initializer.Single(t => t.Name == n.Input[1]).Dims);
        }
    }
}
