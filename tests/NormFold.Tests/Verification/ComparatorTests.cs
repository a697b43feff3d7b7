using NormFold.Verification;
using static NormFold.Tests.Builders.GraphBuilder;

namespace NormFold.Tests.Verification;

/// <summary>The comparison rules, one by one.</summary>
public class ComparatorTests
{
    static NamedTensor F(params double[] v) => NamedTensor.FromDoubles("y", F32, [v.Length], v);
    static readonly Func<int, double, Tolerance> Fixed = (_, _) => new Tolerance(0.1, 0.01);

    [Fact]
    public void An_element_passes_within_atol_or_within_rtol()
    {
        // |Δ| = 0.05 ≤ atol; |Δ| = 0.5 ≤ rtol·|1000| = 10; |Δ| = 0.2 > atol and > rtol·|1| → fails.
        Assert.True(Comparator.Compare(F(1, 1000), F(1.05, 1000.5), Fixed).Passed);
        var c = Comparator.Compare(F(1, 1000), F(1.2, 1000), Fixed);
        Assert.False(c.Passed);
        Assert.Equal(1, c.FailedElements);
        Assert.Equal([0L], c.WorstIndex);
        Assert.Equal(0.2, c.MinAtol, 6);
    }

    [Fact]
    public void Nan_where_the_reference_is_finite_fails_and_matching_nan_or_inf_passes()
    {
        Assert.False(Comparator.Compare(F(1, 2), F(1, double.NaN), Fixed).Passed);
        Assert.False(Comparator.Compare(F(1, 2), F(1, double.PositiveInfinity), Fixed).Passed);
        Assert.True(Comparator.Compare(F(double.NaN, double.NegativeInfinity), F(double.NaN, double.NegativeInfinity), Fixed).Passed);
        Assert.False(Comparator.Compare(F(double.PositiveInfinity), F(double.NegativeInfinity), Fixed).Passed);
    }

    [Fact]
    public void Zeros_in_the_reference_make_relative_error_infinite_but_atol_still_applies()
    {
        var c = Comparator.Compare(F(0, 5), F(1e-3, 5), Fixed);
        Assert.True(c.Passed);
        Assert.Equal(double.PositiveInfinity, c.MaxRel);
        Assert.Equal(double.PositiveInfinity, c.MinRtol);
    }

    [Fact]
    public void Default_tolerance_scales_with_the_largest_reference_magnitude_and_the_type()
    {
        var c = Comparator.Compare(F(1000, -2000), F(1000.1, -2000));
        Assert.Equal(2000 * 1e-4, c.Tolerance.Atol, 9);
        Assert.True(c.Passed);
        var h = Comparator.Compare(NamedTensor.FromDoubles("y", F16, [1], [100]), NamedTensor.FromDoubles("y", F16, [1], [100.5]));
        Assert.Equal(1.0, h.Tolerance.Atol, 9); // float16: k = 1e-2
        Assert.True(h.Passed);
    }

    [Fact]
    public void Integer_outputs_must_match_exactly()
    {
        var a = new NamedTensor("i", 7, [2], BitConverter.GetBytes(5L).Concat(BitConverter.GetBytes(6L)).ToArray());
        var b = new NamedTensor("i", 7, [2], BitConverter.GetBytes(5L).Concat(BitConverter.GetBytes(7L)).ToArray());
        Assert.True(Comparator.Compare(a, a).Passed);
        var c = Comparator.Compare(a, b, (_, _) => new Tolerance(10, 10)); // tolerances do not apply to integers
        Assert.False(c.Passed);
        Assert.Equal(new Tolerance(0, 0), c.Tolerance);
    }

    [Fact]
    public void Shape_type_and_missing_outputs_fail_with_a_problem()
    {
        Assert.Contains("shape [3]", Comparator.Compare(F(1, 2), F(1, 2, 3)).Problem);
        Assert.Contains("element type", Comparator.Compare(F(1), NamedTensor.FromDoubles("y", F64, [1], [1])).Problem);
        Assert.Contains("missing", Comparator.Compare(F(1), null).Problem);
    }

    [Fact]
    public void Selection_finds_the_kth_smallest_like_a_sort()
    {
        var rng = new Random(1);
        for (int n = 1; n < 200; n += 7)
        {
            var values = Enumerable.Range(0, n).Select(_ => (double)rng.Next(20)).ToArray();
            var sorted = values.OrderBy(v => v).ToArray();
            for (int k = 0; k < n; k += 3) Assert.Equal(sorted[k], Comparator.Select((double[])values.Clone(), k));
        }
    }

    [Fact]
    public void The_vectorised_float32_path_agrees_with_the_scalar_path()
    {
        // The same values as float32 (vector loop) and as double (scalar loop), with NaN, ∞ and zeros sprinkled in.
        var rng = new Random(3);
        int n = 10_007;
        var r = new double[n]; var a = new double[n];
        for (int i = 0; i < n; i++)
        {
            r[i] = (float)(rng.NextDouble() * 4 - 2);
            a[i] = (float)(r[i] + (rng.NextDouble() - 0.5) * 1e-3);
        }
        r[17] = 0; a[17] = 1e-6f; r[500] = double.NaN; a[500] = double.NaN; r[900] = double.PositiveInfinity; a[900] = 1;
        r[5000] = 3; a[5000] = 3.5f;
        var tolerance = (int _, double m) => new Tolerance(1e-4 * m, 1e-4);
        var f = Comparator.Compare(NamedTensor.FromDoubles("t", F32, [n], r), NamedTensor.FromDoubles("t", F32, [n], a), tolerance);
        var d = Comparator.Compare(NamedTensor.FromDoubles("t", F64, [n], r), NamedTensor.FromDoubles("t", F64, [n], a), tolerance);
        Assert.Equal(d.FailedElements, f.FailedElements);
        Assert.Equal(d.WorstIndex, f.WorstIndex);
        Assert.Equal(d.MaxAbs, f.MaxAbs);
        Assert.Equal(d.MaxRel, f.MaxRel);
        Assert.Equal(d.MeanAbs, f.MeanAbs, 12);
        Assert.Equal(d.MeanRel, f.MeanRel, 12);
        Assert.Equal(d.Cosine, f.Cosine, 12);
        Assert.Equal(d.MedianAbs, f.MedianAbs);
        Assert.Equal(d.P99Rel, f.P99Rel);
        Assert.True(f.FailedElements >= 2); // the ∞ mismatch and the 0.5 error
    }

    [Fact]
    public void Statistics_are_computed()
    {
        var c = Comparator.Compare(F(1, 2, 4, -8), F(1, 2.5, 4, -8));
        Assert.Equal(0.5, c.MaxAbs, 12);
        Assert.Equal(0.125, c.MeanAbs, 12);
        Assert.Equal(0, c.MedianAbs);
        Assert.Equal(0.5, c.P99Abs, 12);
        Assert.Equal(0.25, c.MaxRel, 12);
        Assert.Equal(8, c.ReferenceMagnitude);
        Assert.Equal(0.5 / 8, c.RelativeToMagnitude, 12);
        Assert.InRange(c.Cosine, 0.99, 1);
        Assert.Equal([1L], c.WorstIndex);
        Assert.Equal(2.5, c.WorstActual, 12);
    }
}
