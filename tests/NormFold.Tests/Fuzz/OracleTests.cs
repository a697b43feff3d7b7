using NormFold.Onnx;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;

namespace NormFold.Tests.Fuzz;

/// <summary>The fuzzer's oracle forgives a difference of values (NaN against the original's ±Inf included) only where
/// the model's own constants reach an edge of the type's range (within 2^8 of the largest value, or subnormal); anywhere
/// else it is a wrong answer. The harness likewise calls a failed check of an exact fold a false alarm except there.</summary>
public class OracleTests
{
    // original: y = x·∞ (±Inf, NaN at 0); candidate: t = x·∞, y = t − t (NaN everywhere). An unused constant of the
    // given value, if any, sits beside them.
    static (string Original, string Candidate) Pair(double? constant)
    {
        OnnxModel Make(bool candidate)
        {
            var g = new GraphBuilder(13);
            g.Input("x", F32, [2, 3]);
            string k = g.Init("k", F32, [1], [double.PositiveInfinity]);
            if (constant is { } v) g.Init("c", F32, [1], [v]);
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
        var (a, b) = Pair(constant: null);
        Assert.Equal(Oracle.Verdict.Different, Oracle.Compare(a, b, seed: 1).Verdict);
    }

    [Fact]
    public void NaN_against_the_originals_infinity_is_an_overflow_edge_when_a_constant_reaches_the_range_edge()
    {
        var (a, b) = Pair(constant: 3e38);
        Assert.Equal(Oracle.Verdict.OverflowEdge, Oracle.Compare(a, b, seed: 1).Verdict);
    }

    [Fact]
    public void NaN_against_the_originals_infinity_is_an_underflow_edge_when_a_constant_is_subnormal()
    {
        // affine:8000133: a factor of 1e-45 moved from a Mul (ORT flushes its subnormal results to 0) into a
        // ConvTranspose (keeps them); a Div by −0 then made the original's 0/−0 = NaN the fold's 1e-45/−0 = −Inf.
        var (a, b) = Pair(constant: 1e-45);
        Assert.Equal(Oracle.Verdict.UnderflowEdge, Oracle.Compare(a, b, seed: 1).Verdict);
        (a, b) = Pair(constant: 1e-37); // the smallest normal float is 1.18e-38: not subnormal, so a wrong answer
        Assert.Equal(Oracle.Verdict.Different, Oracle.Compare(a, b, seed: 1).Verdict);
    }

    /// <summary>y = 2·x (original) against y = x (candidate): finite values that differ, an unused constant beside.</summary>
    static (string Original, string Candidate) FinitePair(double? constant, bool same = false)
    {
        OnnxModel Make(bool candidate)
        {
            var g = new GraphBuilder(13);
            g.Input("x", F32, [2, 3]);
            if (constant is { } v) g.Init("c", F32, [1], [v]);
            if (candidate && !same) g.Node("Identity", ["x"], "y");
            else g.Node("Mul", ["x", g.Init("two", F32, [1], [2.0])], "y");
            g.Output("y", F32, [2, 3]);
            return g.Build();
        }
        return Write(Make(false), Make(true));
    }

    [Fact]
    public void A_finite_difference_is_a_range_edge_only_when_a_constant_reaches_an_edge_of_the_range()
    {
        // affine:13000858: relu(x)·1e-45/1e-45/k is 0 or 1/k in the original (the product keeps one bit), x/k in the fold.
        foreach (double? c in new double?[] { null, -3e38, 1e-45, 1e-37 })
        {
            var (a, b) = FinitePair(c);
            var expected = c switch { -3e38 => Oracle.Verdict.OverflowEdge, 1e-45 => Oracle.Verdict.UnderflowEdge, _ => Oracle.Verdict.Different };
            Assert.Equal(expected, Oracle.Compare(a, b, seed: 1).Verdict);
        }
    }

    [Fact]
    public void A_failed_check_of_an_exact_fold_is_a_false_alarm_unless_a_constant_reaches_the_range_edge()
    {
        // affine:8000423: x·k·(−3e38)·0 overflows to NaN in the original on the check's inputs (0 in the fold, which
        // composes the factors first) but not on the judge's: the check's exit 2 there is the original's overflow.
        foreach (double? c in new double?[] { null, 1e-45, -3e38 })
        {
            var (a, b) = FinitePair(c, same: true);
            var verdict = Oracle.Compare(a, b, seed: 1);
            Assert.Equal((Oracle.Verdict.Equivalent, true, true), (verdict.Verdict, verdict.Tight, verdict.ReferenceFinite));
            Assert.Equal(c == -3e38 ? Outcome.Exit2RangeEdge : Outcome.FalseAlarm, Harness.FailedCheck(verdict, a, "not equivalent").Item1);
        }
        var (x, y) = FinitePair(null);
        Assert.Equal(Outcome.Exit2, Harness.FailedCheck(Oracle.Compare(x, y, seed: 1), x, "not equivalent").Item1);
    }
}
