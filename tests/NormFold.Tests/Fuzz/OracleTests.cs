using NormFold.Onnx;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;

namespace NormFold.Tests.Fuzz;

/// <summary>The fuzzer's oracle forgives a difference of values (NaN against the original's ±Inf included) only where
/// the model's own constants reach the edge of the type's range; anywhere else it is a wrong answer.</summary>
public class OracleTests
{
    // original: y = x·∞ (±Inf, NaN at 0); candidate: t = x·∞, y = t − t (NaN everywhere).
    static (string Original, string Candidate) Pair(bool hugeConstant)
    {
        OnnxModel Make(bool candidate)
        {
            var g = new GraphBuilder(13);
            g.Input("x", F32, [2, 3]);
            string k = g.Init("k", F32, [1], [double.PositiveInfinity]);
            if (hugeConstant) g.Init("huge", F32, [1], [3e38]);
            if (candidate)
            {
                g.Node("Mul", ["x", k], "t");
                g.Node("Sub", ["t", "t"], "y");
            }
            else g.Node("Mul", ["x", k], "y");
            g.Output("y", F32, [2, 3]);
            return g.Build();
        }
        return Write(Make(false), Make(true));
    }

    /// <summary>The pair saved side by side in a fresh folder: the paths the oracle compares.</summary>
    static (string Original, string Candidate) Write(OnnxModel original, OnnxModel candidate)
    {
        string dir = TestSupport.TempDir();
        string a = Path.Combine(dir, "a.onnx"), b = Path.Combine(dir, "b.onnx");
        ModelWriter.Save(original, a);
        ModelWriter.Save(candidate, b);
        return (a, b);
    }

    [Fact]
    public void NaN_against_the_originals_infinity_is_a_difference_without_constants_at_the_range_edge()
    {
        var (a, b) = Pair(hugeConstant: false);
        Assert.Equal(Oracle.Verdict.Different, Oracle.Compare(a, b, seed: 1).Verdict);
    }

    [Fact]
    public void NaN_against_the_originals_infinity_is_an_overflow_edge_when_a_constant_reaches_the_range_edge()
    {
        var (a, b) = Pair(hugeConstant: true);
        Assert.Equal(Oracle.Verdict.OverflowEdge, Oracle.Compare(a, b, seed: 1).Verdict);
    }

    [Fact]
    public void A_finite_difference_is_an_overflow_edge_only_when_a_constant_reaches_the_range_edge()
    {
        foreach (bool huge in new[] { false, true })
        {
            OnnxModel Make(bool candidate)
            {
                var g = new GraphBuilder(13);
                g.Input("x", F32, [2, 3]);
                if (huge) g.Init("huge", F32, [1], [-3e38]);
                if (candidate) g.Node("Identity", ["x"], "y");
                else g.Node("Mul", ["x", g.Init("two", F32, [1], [2.0])], "y");
                g.Output("y", F32, [2, 3]);
                return g.Build();
            }
            var (a, b) = Write(Make(false), Make(true));
            Assert.Equal(huge ? Oracle.Verdict.OverflowEdge : Oracle.Verdict.Different, Oracle.Compare(a, b, seed: 1).Verdict);
        }
    }
}
