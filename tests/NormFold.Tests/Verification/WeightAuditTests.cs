using NormFold.Onnx;
using NormFold.Rewriting;
using NormFold.Tensors;
using NormFold.Tests.Builders;
using NormFold.Verification;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Verification;

/// <summary>The weight audit replays the fold's records; it never guesses from node names what a fold did.</summary>
public class WeightAuditTests
{
    /// <summary>Conv 'conv' → c, read by a BN and by a Relu (or c a graph output): the BN cannot fold into the Conv
    /// and becomes Mul + Add; the Conv's weights stay as they were.</summary>
    static OnnxModel ConvReadTwice(bool graphOutput)
    {
        var g = new GraphBuilder(15);
        g.Input("x", F32, [1, 3, 5, 5]);
        g.Init("w", F32, [6, 3, 3, 3]); // 162 elements
        g.Node("Conv", ["x", "w"], "c", "conv");
        g.Bn("c", 6, "y");
        g.Output("y", F32, [1, 6, 3, 3]);
        if (graphOutput) g.Output("c", F32, [1, 6, 3, 3]);
        else
        {
            g.Node("Relu", ["c"], "r", "relu");
            g.Output("r", F32, [1, 6, 3, 3]);
        }
        return g.Build();
    }

    static OnnxModel ConvBn()
    {
        var g = new GraphBuilder(15);
        g.Input("x", F32, [1, 3, 5, 5]);
        g.Init("w", F32, [4, 3, 3, 3]);
        g.Node("Conv", ["x", "w"], "c", "conv");
        g.Bn("c", 4, "y");
        g.Output("y", F32, null);
        return g.Build();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_bn_replaced_by_mul_add_next_to_a_named_conv_is_no_false_alarm(bool graphOutput)
    {
        // Before: the audit took the BN's producer by name, found 'conv' in the candidate and compared its (unchanged)
        // weights with W·s: "162 of 162 elements differ from the exact fold", fold --check exit 2.
        var original = ConvReadTwice(graphOutput);
        var (folded, r) = Fold(original);
        var d = Single(r);
        Assert.Equal(Outcome.Replaced, d.Outcome);
        var report = EquivalenceChecker.Check(original, folded, new CheckOptions { AuditWeights = true, FoldLog = r.Log });
        Assert.True(report.Passed);
        Assert.Equal(0, report.Audit!.Inexact);
        Assert.Equal(2, report.Audit.Tensors); // the Mul and Add constants, and nothing else
        Assert.Equal(12, report.Audit.Elements);
    }

    [Fact]
    public void Without_a_fold_log_the_audit_is_skipped_and_says_so()
    {
        var original = ConvReadTwice(false);
        var (folded, _) = Fold(original);
        var report = EquivalenceChecker.Check(original, folded, new CheckOptions { AuditWeights = true });
        Assert.True(report.Passed);
        Assert.Null(report.Audit);
        Assert.Contains(report.Notes, n => n.Contains("weight audit skipped"));
    }

    [Fact]
    public void A_chain_of_bns_folded_into_one_conv_is_replayed_through_the_intermediate_weights()
    {
        var g = new GraphBuilder(15);
        g.Input("x", F16, [1, 3, 5, 5]);
        g.Init("w", F16, [4, 3, 3, 3]);
        g.Init("b", F16, [4]);
        g.Node("Conv", ["x", "w", "b"], "c", "conv");
        g.Bn("c", 4, "y1", F16);
        g.Bn("y1", 4, "y2", F16);
        g.Bn("y2", 4, "y", F16);
        g.Output("y", F16, null);
        var original = g.Build();
        var (folded, r) = FoldAndCheck(original);
        Assert.Equal(3, r.Log.Decisions.Count);
        var audit = AssertAuditPasses(original, folded, r);
        Assert.Equal(2, audit.Tensors); // the final W' and b'; the two intermediate pairs were removed by cleanup
    }

    [Fact]
    public void A_weight_changed_after_the_fold_is_caught_to_the_ulp()
    {
        var original = ConvBn();
        var (folded, r) = Fold(original);
        var name = Single(r).Created[0];
        var t = folded.Proto.Graph.Initializer.Single(i => i.Name == name);
        var v = folded.ReadDoubles(t);
        v[7] = BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits((float)v[7]) + 1); // one ulp off
        folded.Proto.Graph.Initializer[folded.Proto.Graph.Initializer.IndexOf(t)] = TensorData.Create(name, F32, t.Dims, v);
        var audit = WeightAudit.Run(original, folded, r.Log);
        Assert.False(audit.Passed);
        Assert.Equal(1, audit.Inexact);
        Assert.Equal(1, audit.MaxUlp);
        Assert.Equal(name, audit.WorstTensor);
    }

    [Fact]
    public void A_recorded_tensor_missing_from_the_candidate_fails_the_audit()
    {
        var original = ConvBn();
        var (_, r) = Fold(original);
        var audit = WeightAudit.Run(original, original, r.Log); // the candidate never was folded
        Assert.False(audit.Passed);
        Assert.Contains(audit.Skipped, s => s.Contains("no such tensor"));
    }
}
