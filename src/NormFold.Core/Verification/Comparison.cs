using System.Numerics;

namespace NormFold.Verification;

/// <summary>How one output of the candidate model differs from the reference.</summary>
public sealed record OutputComparison
{
    public required string Name { get; init; }
    public required bool Passed { get; init; }
    /// <summary>Why it failed when that is not a numeric excess: missing output, shape or type mismatch.</summary>
    public string? Problem { get; init; }
    public string Shape { get; init; } = "";
    public string ElementType { get; init; } = "";
    public Tolerance Tolerance { get; init; } = new(0, 0);
    public double MaxAbs { get; init; }
    public double MeanAbs { get; init; }
    public double MedianAbs { get; init; }
    public double P99Abs { get; init; }
    public double MaxRel { get; init; }
    public double MeanRel { get; init; }
    public double MedianRel { get; init; }
    public double P99Rel { get; init; }
    /// <summary>Largest |reference| (finite elements).</summary>
    public double ReferenceMagnitude { get; init; }
    /// <summary>MaxAbs / ReferenceMagnitude.</summary>
    public double RelativeToMagnitude { get; init; }
    public double Cosine { get; init; }
    public long[] WorstIndex { get; init; } = [];
    public double WorstReference { get; init; }
    public double WorstActual { get; init; }
    /// <summary>Smallest atol that passes every element alone (rtol = 0).</summary>
    public double MinAtol { get; init; }
    /// <summary>Smallest rtol that passes every element alone (atol = 0); ∞ when a zero reference element differs.</summary>
    public double MinRtol { get; init; }
    public long FailedElements { get; init; }
    /// <summary>True when median and p99 were estimated from <see cref="Comparator.PercentileSample"/> evenly spaced elements.</summary>
    public bool PercentilesSampled { get; init; }
    public long Elements { get; init; }
    /// <summary>Channels (axis 1) tested for systematic drift; 0 when the tensor has no channel axis with enough elements.</summary>
    public int ChannelsTested { get; init; }
    /// <summary>Channels whose gain or offset drifts beyond rounding noise (see <see cref="ChannelDriftDetector"/>).</summary>
    public int DriftingChannels { get; init; }
    /// <summary>The worst drifting channels (at most a few), worst first.</summary>
    public IReadOnlyList<ChannelDrift> Drift { get; init; } = [];
    /// <summary>The channel closest to (or furthest beyond) its thresholds, flagged or not: the detector's margin.</summary>
    public ChannelDrift? WorstChannel { get; init; }
    /// <summary>Beyond the end-to-end tolerance, but every rewritten node replays within its local tolerance
    /// (<see cref="CheckOptions.LocalReplay"/>): rounding the network amplifies; counted as passed.</summary>
    public bool Amplified { get; init; }
    /// <summary>Floating-point, every difference finite: an excess may be excused as amplified rounding.</summary>
    internal bool Amplifiable { get; init; }
    /// <summary>This run's per-channel sums, for a decision over several runs (<see cref="Comparator.WithDrift"/>).</summary>
    internal ChannelDriftDetector.Accumulator? DriftSums { get; init; }
}

/// <summary>What <see cref="Comparator"/> does about systematic drift.</summary>
internal enum DriftMode { None, Accumulate, Decide }

internal static class Comparator
{
    /// <summary>Compares one output. <paramref name="toleranceFor"/> maps (element type, reference magnitude) to the
    /// tolerance; null means <see cref="Tolerance.Default"/>.</summary>
    /// <param name="detectDrift">Also test each channel for systematic drift (floating-point tensors of rank ≥ 2).</param>
    public static OutputComparison Compare(NamedTensor reference, NamedTensor? actual, Func<int, double, Tolerance>? toleranceFor = null, bool detectDrift = true) =>
        Compare(reference, actual, toleranceFor, detectDrift ? DriftMode.Decide : DriftMode.None);

    /// <summary>The comparison with the drift decision taken over the (merged) sums of every run.</summary>
    internal static OutputComparison WithDrift(OutputComparison c, ChannelDriftDetector.Accumulator sums, double minGain = ChannelDriftDetector.MinGain,
        double floorUlps = 0, ReplayShift? shift = null, InputMoments? input = null)
    {
        var drift = sums.Decide(minGain, floorUlps, shift, input);
        string? problem = c.Problem;
        if (c.FailedElements == 0 && problem is null && drift is { Flagged: > 0 } && drift.Findings[0] is var f)
            problem = $"systematic drift in {drift.Flagged} of {drift.Tested} channel(s); channel {f.Channel}: gain {f.Gain:G7} (allowed 1 ± {f.GainThreshold:G3}), " +
                      $"offset {f.Offset:G3} (allowed ± {f.OffsetThreshold:G3}) over {f.Elements} elements";
        return c with
        {
            Passed = c.Passed && drift.Flagged == 0,
            Problem = problem,
            ChannelsTested = drift.Tested,
            DriftingChannels = drift.Flagged,
            Drift = drift.Findings,
            WorstChannel = drift.Worst,
            DriftSums = null,
        };
    }

    /// <param name="slack">Per channel (axis 1), room added to every element's allowance there (what the rewrite's
    /// stored constants, rounded once, can move an element by: <see cref="ReplayShift.Rounding"/>).</param>
    internal static OutputComparison Compare(NamedTensor reference, NamedTensor? actual, Func<int, double, Tolerance>? toleranceFor, DriftMode detectDrift,
        double[]? slack = null)
    {
        string typeName = Tensors.ElementType.Name(reference.ElementType);
        if (actual is null)
            return new OutputComparison { Name = reference.Name, Passed = false, Problem = "missing from the candidate model", Shape = reference.ShapeText, ElementType = typeName };
        if (actual.ElementType != reference.ElementType)
            return new OutputComparison { Name = reference.Name, Passed = false, Shape = reference.ShapeText, ElementType = typeName,
                Problem = $"element type {Tensors.ElementType.Name(actual.ElementType)}, reference has {typeName}" };
        if (!actual.Shape.SequenceEqual(reference.Shape))
            return new OutputComparison { Name = reference.Name, Passed = false, Shape = reference.ShapeText, ElementType = typeName,
                Problem = $"shape {actual.ShapeText}, reference has {reference.ShapeText}" };

        if (reference.Strings is not null || actual.Strings is not null) return CompareStrings(reference, actual, typeName);
        int type = reference.ElementType;
        if (!reference.IsFloatingPoint && !Convertible(type)) return CompareBits(reference, actual, typeName);
        // Integer and bool tensors must match exactly; floating-point ones get the tolerance for their own type.
        Func<int, double, Tolerance> tolerance = reference.IsFloatingPoint
            ? (_, magnitude) => (toleranceFor ?? Tolerance.Default)(type, magnitude)
            : (_, _) => new Tolerance(0, 0);
        var result = (Onnx.Proto.TensorProto.Types.DataType)type switch
        {
            Onnx.Proto.TensorProto.Types.DataType.Float => Core<float, FloatElement>(reference, actual, tolerance, typeName, detectDrift, slack),
            Onnx.Proto.TensorProto.Types.DataType.Double => Core<double, DoubleElement>(reference, actual, tolerance, typeName, detectDrift, slack),
            Onnx.Proto.TensorProto.Types.DataType.Float16 => Core<Half, HalfElement>(reference, actual, tolerance, typeName, detectDrift, slack),
            _ => Core<double, DoubleElement>(reference with { Data = DoubleBytes(reference) }, actual with { Data = DoubleBytes(actual) }, tolerance, typeName,
                reference.IsFloatingPoint ? detectDrift : DriftMode.None, reference.IsFloatingPoint ? slack : null),
        };
        if (reference.IsFloatingPoint || !result.Passed) return result;
        // 64-bit integers beyond 2^53 can differ and still convert to the same double: exact means bit for bit.
        long differing = DifferingElements(reference, actual);
        return differing == 0 ? result : result with { Passed = false, FailedElements = differing };
    }

    /// <summary>Types <see cref="NamedTensor.ToDoubles"/> reads: the floating-point ones, integers and bool.</summary>
    static bool Convertible(int type) => (Onnx.Proto.TensorProto.Types.DataType)type is
        Onnx.Proto.TensorProto.Types.DataType.Int8 or Onnx.Proto.TensorProto.Types.DataType.Uint8 or Onnx.Proto.TensorProto.Types.DataType.Bool
        or Onnx.Proto.TensorProto.Types.DataType.Int16 or Onnx.Proto.TensorProto.Types.DataType.Uint16 or Onnx.Proto.TensorProto.Types.DataType.Int32
        or Onnx.Proto.TensorProto.Types.DataType.Uint32 or Onnx.Proto.TensorProto.Types.DataType.Int64 or Onnx.Proto.TensorProto.Types.DataType.Uint64;

    /// <summary>Elements whose bytes differ (the whole tensor counts as one element when the type has no fixed width).</summary>
    static long DifferingElements(NamedTensor reference, NamedTensor actual)
    {
        var r = reference.Data.Span;
        var a = actual.Data.Span;
        int size = Tensors.ElementType.Size(reference.ElementType);
        if (size == 0 || r.Length != a.Length) return r.SequenceEqual(a) ? 0 : 1;
        long differing = 0;
        for (int i = 0; i < r.Length; i += size)
            if (!r.Slice(i, size).SequenceEqual(a.Slice(i, size))) differing++;
        return differing;
    }

    /// <summary>Types with no arithmetic here (8-bit and 4-bit floats, packed 4-bit integers, complex): equal bit for bit.</summary>
    static OutputComparison CompareBits(NamedTensor reference, NamedTensor actual, string typeName)
    {
        long differing = DifferingElements(reference, actual);
        return new OutputComparison
        {
            Name = reference.Name, Passed = differing == 0, Shape = reference.ShapeText, ElementType = typeName,
            Problem = differing == 0 ? null : $"{differing} element(s) differ (compared bit for bit)",
            FailedElements = differing, Elements = reference.Count, Cosine = differing == 0 ? 1 : 0,
        };
    }

    /// <summary>String tensors: equal element by element.</summary>
    static OutputComparison CompareStrings(NamedTensor reference, NamedTensor actual, string typeName)
    {
        string[] r = reference.Strings ?? [], a = actual.Strings ?? [];
        long differing = 0, first = -1;
        for (int i = 0; i < Math.Max(r.Length, a.Length); i++)
            if (i >= r.Length || i >= a.Length || !string.Equals(r[i], a[i], StringComparison.Ordinal))
            {
                differing++;
                if (first < 0) first = i;
            }
        string Quote(string[] v, long i) => i < v.Length ? "\"" + v[i] + "\"" : "(none)";
        return new OutputComparison
        {
            Name = reference.Name, Passed = differing == 0, Shape = reference.ShapeText, ElementType = typeName,
            Problem = differing == 0 ? null : $"{differing} of {r.Length} strings differ; first at [{string.Join(",", Unravel(first, reference.Shape))}]: {Quote(a, first)} vs {Quote(r, first)}",
            FailedElements = differing, Elements = r.Length, Cosine = differing == 0 ? 1 : 0,
            WorstIndex = first >= 0 ? Unravel(first, reference.Shape) : [],
        };
    }

    static byte[] DoubleBytes(NamedTensor t) => System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.ToDoubles().AsSpan()).ToArray();

    internal interface IElement<T> { static abstract double Get(T v); }
    internal struct FloatElement : IElement<float> { public static double Get(float v) => v; }
    internal struct DoubleElement : IElement<double> { public static double Get(double v) => v; }
    internal struct HalfElement : IElement<Half> { public static double Get(Half v) => Tensors.Rounding.FromHalf(v); }

    /// <summary>Vector&lt;float&gt;.Count elements of r and a from i, widened to double (two halves each); false when
    /// one of them is NaN or ∞.</summary>
    internal static bool Widened(ReadOnlySpan<float> r, ReadOnlySpan<float> a, int i,
        out Vector<double> r0, out Vector<double> r1, out Vector<double> a0, out Vector<double> a1)
    {
        var rf = new Vector<float>(r.Slice(i, Vector<float>.Count));
        var af = new Vector<float>(a.Slice(i, Vector<float>.Count));
        Vector.Widen(rf, out r0, out r1);
        Vector.Widen(af, out a0, out a1);
        return Vector.EqualsAll((rf - rf) + (af - af), Vector<float>.Zero);
    }

    /// <summary>Elements per step of the fused statistics-and-drift pass (two float32 runs of it fit in L2).</summary>
    const int FusedChunk = 1 << 14;

    /// <summary>Percentiles of tensors larger than this are estimated from this many evenly spaced elements.</summary>
    public const int PercentileSample = 1 << 12;

    /// <summary>Two passes over the raw elements, specialised per element type (no per-element conversion calls, no
    /// copies): the reference's magnitude, then errors, statistics and the worst element.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    static OutputComparison Core<T, TE>(NamedTensor reference, NamedTensor actual, Func<int, double, Tolerance> toleranceFor,
        string typeName, DriftMode detectDrift, double[]? slack) where T : unmanaged where TE : struct, IElement<T>
    {
        var r = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, T>(reference.Data.Span);
        var a = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, T>(actual.Data.Span);
        int n = r.Length;
        // Pass 1: everything that does not depend on the tolerance (which depends on the magnitude, known only after).
        var st = new Stats();
        ChannelDriftDetector.Accumulator? sums = null;
        if (typeof(T) == typeof(float) && Vector.IsHardwareAccelerated)
        {
            var rf = System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(r);
            var af = System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(a);
            if (detectDrift != DriftMode.None && ChannelDriftDetector.Layout(reference.Shape, reference.ElementType, out int channels, out long inner))
            {
                // One pass: each element loaded, widened and differenced once for the statistics and the drift sums.
                var channelSums = new ChannelDriftDetector.Sums[channels];
                int i = 0;
                for (long o = 0; o < reference.Shape[0]; o++)
                    for (int c = 0; c < channels; c++)
                        for (long j = 0; j < inner; j += FusedChunk)
                        {
                            int length = (int)Math.Min(FusedChunk, inner - j);
                            st.AddFloats<DriftToo>(rf.Slice(i, length), af.Slice(i, length), i, ref channelSums[c]);
                            i += length;
                        }
                sums = new ChannelDriftDetector.Accumulator(reference.ElementType, channelSums, ChannelDriftDetector.DistinctFraction(rf, reference.Shape), reference.Shape);
            }
            else
            {
                ChannelDriftDetector.Sums none = default;
                st.AddFloats<NoDrift>(rf, af, 0, ref none);
            }
        }
        else
            for (int i = 0; i < n; i++) st.Add(i, TE.Get(r[i]), TE.Get(a[i]));
        double magnitude = st.Magnitude;
        var tol = toleranceFor(reference.ElementType, magnitude);
        // With the default tolerance every element's allowance is atol (rtol·|r| ≤ rtol·max|r| ≤ atol), so the largest
        // error decides, and it is the worst element. Otherwise (failures, or allowances that vary) pass 2 counts them.
        long failed = 0, worst = n == 0 ? -1 : st.MaxAbsIndex; // an empty tensor has no worst element
        // Slack per channel: an element of channel c is allowed max(atol, rtol·|r|) + slack[c] (never less than without).
        long perChannel = 1;
        if (slack != null && (reference.Shape.Length < 2 || reference.Shape[1] != slack.Length || slack.Any(x => !(x >= 0 && double.IsFinite(x))))) slack = null;
        for (int d = 2; slack != null && d < reference.Shape.Length; d++) perChannel *= reference.Shape[d];
        if (!(st.MaxAbs <= tol.Atol && tol.Rtol * magnitude <= tol.Atol))
        {
            double worstRatio = -1;
            for (int i = 0; i < n; i++)
            {
                double ri = TE.Get(r[i]), ai = TE.Get(a[i]);
                var (e, _) = Stats.Errors(ri, ai);
                double ar = Math.Abs(ri);
                double allowance = Math.Max(tol.Atol, tol.Rtol * ar) + (slack?[(int)(i / perChannel % slack.Length)] ?? 0);
                bool pass = double.IsFinite(ri) && double.IsFinite(ai) ? e <= allowance : e == 0;
                if (!pass) failed++;
                // a non-finite mismatch (e = ∞) is the worst, also where an infinite reference makes the allowance ∞
                double ratio = double.IsPositiveInfinity(e) ? e : allowance > 0 ? e / allowance : e;
                if (ratio > worstRatio) { worstRatio = ratio; worst = i; }
            }
        }
        // Percentiles from every element, or from PercentileSample evenly spaced ones.
        int stride = n <= PercentileSample ? 1 : (n + PercentileSample - 1) / PercentileSample;
        var absSample = new double[(n + stride - 1) / stride];
        var relSample = new double[absSample.Length];
        for (int i = 0, k = 0; i < n; i += stride, k++)
            (absSample[k], relSample[k]) = Stats.Errors(TE.Get(r[i]), TE.Get(a[i]));
        double maxAbs = st.MaxAbs, maxRel = st.MaxRel, sumAbs = st.SumAbs, sumRel = st.SumRel, dot = st.Dot, normR = st.NormR, normA = st.NormA;
        if (detectDrift != DriftMode.None) sums ??= ChannelDriftDetector.Accumulate<T, TE>(r, a, reference.Shape, reference.ElementType);

        string? problem = null;
        if (failed > 0 && slack != null && worst >= 0 && slack[(int)(worst / perChannel % slack.Length)] is var room and > 0)
        {
            double rw = TE.Get(r[(int)worst]);
            problem = $"{failed} element(s) beyond the tolerance; worst [{string.Join(",", Unravel(worst, reference.Shape))}]: error {Math.Abs(TE.Get(a[(int)worst]) - rw):G3} > " +
                      $"{Math.Max(tol.Atol, tol.Rtol * Math.Abs(rw)):G3} + {room:G3} for the rounding of the stored weights in channel {worst / perChannel % slack.Length}";
        }
        var result = new OutputComparison
        {
            Name = reference.Name,
            Passed = failed == 0,
            Problem = problem,
            DriftSums = sums,
            Shape = reference.ShapeText,
            ElementType = typeName,
            Tolerance = tol,
            MaxAbs = maxAbs,
            MeanAbs = n == 0 ? 0 : sumAbs / n,
            MedianAbs = Percentile(absSample, 0.5),
            P99Abs = Percentile(absSample, 0.99),
            MaxRel = maxRel,
            MeanRel = n == 0 ? 0 : sumRel / n,
            MedianRel = Percentile(relSample, 0.5),
            P99Rel = Percentile(relSample, 0.99),
            PercentilesSampled = stride > 1,
            ReferenceMagnitude = magnitude,
            RelativeToMagnitude = magnitude > 0 ? maxAbs / magnitude : maxAbs,
            Cosine = normR > 0 && normA > 0 ? dot / Math.Sqrt(normR * normA) : normR == normA ? 1 : 0,
            WorstIndex = worst >= 0 ? Unravel(worst, reference.Shape) : [],
            WorstReference = worst >= 0 ? TE.Get(r[(int)worst]) : 0,
            WorstActual = worst >= 0 ? TE.Get(a[(int)worst]) : 0,
            MinAtol = maxAbs,
            MinRtol = maxRel,
            FailedElements = failed,
            Elements = n,
            Amplifiable = reference.IsFloatingPoint && double.IsFinite(maxAbs),
        };
        return sums != null && detectDrift == DriftMode.Decide ? WithDrift(result, sums) : result;
    }

    /// <summary>Running statistics of one comparison that need no tolerance; a scalar step for any element, a vector
    /// loop for float32.</summary>
    struct Stats()
    {
        public double SumAbs, SumRel, MaxAbs, MaxRel, Dot, NormR, NormA, Magnitude;
        public long MaxAbsIndex;

        /// <summary>Absolute and relative error of one element; ∞ for a NaN/Inf mismatch, 0 for a match.</summary>
        public static (double Abs, double Rel) Errors(double ri, double ai)
        {
            if (double.IsFinite(ri) && double.IsFinite(ai))
            {
                double e = Math.Abs(ai - ri), ar = Math.Abs(ri);
                return (e, e == 0 ? 0 : ar == 0 ? double.PositiveInfinity : e / ar);
            }
            bool same = (double.IsNaN(ri) && double.IsNaN(ai)) || ri.Equals(ai);
            return same ? (0, 0) : (double.PositiveInfinity, double.PositiveInfinity);
        }

        public void Add(long i, double ri, double ai)
        {
            var (e, rel) = Errors(ri, ai);
            if (double.IsFinite(ri))
            {
                Magnitude = Math.Max(Magnitude, Math.Abs(ri));
                if (double.IsFinite(ai)) { Dot += ri * ai; NormR += ri * ri; NormA += ai * ai; }
            }
            SumAbs += e;
            if (rel != double.PositiveInfinity) SumRel += rel;
            if (e > MaxAbs) { MaxAbs = e; MaxAbsIndex = i; }
            if (rel > MaxRel) MaxRel = rel;
        }

        /// <summary>The same, Vector&lt;double&gt; lanes at a time; a block holding NaN or ∞ goes through <see cref="Add"/>.
        /// With <see cref="DriftToo"/> the elements (one channel's run) also go into <paramref name="drift"/>, as
        /// <see cref="ChannelDriftDetector.Add"/> would add them one by one (skipped elements masked to zero).</summary>
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
        public void AddFloats<TDrift>(ReadOnlySpan<float> r, ReadOnlySpan<float> a, long offset, ref ChannelDriftDetector.Sums drift)
            where TDrift : struct
        {
            bool withDrift = typeof(TDrift) == typeof(DriftToo); // a constant in each instantiation
            int lanes = Vector<float>.Count, n = r.Length, i = 0;
            // The drift shift: the channel's first element that counts.
            for (; withDrift && i < n && !drift.Started; i++) Both(offset + i, r[i], a[i], ref drift, withDrift);
            var inf = new Vector<double>(double.PositiveInfinity);
            var shift = new Vector<double>(drift.Shift);
            Vector<double> sumAbs = default, sumRel = default, maxRel = default, dot = default, normR = default, normA = default, magnitude = default;
            Vector<double> sx = default, sxx = default, sd = default, sdd = default, sxd = default, maxD = default;
            Vector<long> count = default;
            for (; i <= n - lanes; i += lanes)
            {
                if (!Widened(r, a, i, out var r0, out var r1, out var a0, out var a1))
                {
                    for (int j = i; j < i + lanes; j++) Both(offset + j, r[j], a[j], ref drift, withDrift); // NaN or ∞ in this block
                    continue;
                }
                for (int h = 0; h < 2; h++)
                {
                    var rv = h == 0 ? r0 : r1;
                    var av = h == 0 ? a0 : a1;
                    var d = av - rv;
                    var e = Vector.Abs(d);
                    var ar = Vector.Abs(rv);
                    var rel = Vector.ConditionalSelect(Vector.Equals(e, Vector<double>.Zero), Vector<double>.Zero, e / ar); // e/0 = ∞
                    sumAbs += e;
                    sumRel += Vector.ConditionalSelect(Vector.Equals(rel, inf), Vector<double>.Zero, rel);
                    maxRel = Vector.Max(maxRel, rel);
                    magnitude = Vector.Max(magnitude, ar);
                    dot += rv * av; normR += rv * rv; normA += av * av;
                    if (Vector.GreaterThanAny(e, new Vector<double>(MaxAbs)))
                        for (int j = 0; j < Vector<double>.Count; j++)
                            if (e[j] > MaxAbs) { MaxAbs = e[j]; MaxAbsIndex = offset + i + h * Vector<double>.Count + j; }
                    if (!withDrift) continue;
                    // Exact zeros say nothing about gain or noise (ChannelDriftDetector.Add).
                    var keep = ~(Vector.Equals(rv, Vector<double>.Zero) | Vector.Equals(av, Vector<double>.Zero));
                    var x = Vector.ConditionalSelect(keep, rv - shift, Vector<double>.Zero);
                    var dk = Vector.ConditionalSelect(keep, d, Vector<double>.Zero);
                    count -= keep;
                    sx += x; sxx += x * x; sd += dk; sdd += dk * dk; sxd += x * dk;
                    maxD = Vector.Max(maxD, Vector.ConditionalSelect(keep, e, Vector<double>.Zero));
                }
            }
            for (int j = 0; j < Vector<double>.Count; j++)
            {
                SumAbs += sumAbs[j]; SumRel += sumRel[j]; Dot += dot[j]; NormR += normR[j]; NormA += normA[j];
                MaxRel = Math.Max(MaxRel, maxRel[j]); Magnitude = Math.Max(Magnitude, magnitude[j]);
                if (!withDrift) continue;
                drift.N += count[j]; drift.R += sx[j]; drift.RR += sxx[j]; drift.D += sd[j]; drift.DD += sdd[j]; drift.RD += sxd[j];
                drift.MaxAbs = Math.Max(drift.MaxAbs, maxD[j]);
            }
            for (; i < n; i++) Both(offset + i, r[i], a[i], ref drift, withDrift);
        }

        void Both(long i, double ri, double ai, ref ChannelDriftDetector.Sums drift, bool withDrift)
        {
            Add(i, ri, ai);
            if (withDrift) ChannelDriftDetector.Add(ref drift, ri, ai);
        }
    }

    /// <summary><see cref="Stats.AddFloats"/> with or without the drift sums.</summary>
    struct DriftToo;
    struct NoDrift;

    /// <summary>Nearest-rank percentile by selection (average O(n), no full sort); reorders the array.</summary>
    static double Percentile(double[] values, double p)
    {
        if (values.Length == 0) return 0;
        int k = Math.Clamp((int)Math.Ceiling(p * values.Length) - 1, 0, values.Length - 1);
        return Select(values, k);
    }

    /// <summary>The k-th smallest element (Hoare's quickselect, median-of-three pivot).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    internal static double Select(double[] a, int k)
    {
        int lo = 0, hi = a.Length - 1;
        while (lo < hi)
        {
            int mid = lo + (hi - lo) / 2;
            if (a[mid] < a[lo]) (a[mid], a[lo]) = (a[lo], a[mid]);
            if (a[hi] < a[lo]) (a[hi], a[lo]) = (a[lo], a[hi]);
            if (a[hi] < a[mid]) (a[hi], a[mid]) = (a[mid], a[hi]);
            double pivot = a[mid];
            int i = lo, j = hi;
            while (i <= j)
            {
                while (a[i] < pivot) i++;
                while (a[j] > pivot) j--;
                if (i <= j) { (a[i], a[j]) = (a[j], a[i]); i++; j--; }
            }
            if (k <= j) hi = j;
            else if (k >= i) lo = i;
            else return a[k];
        }
        return a[k];
    }

    static long[] Unravel(long flat, long[] shape)
    {
        var index = new long[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            long size = Math.Max(shape[d], 1);
            index[d] = flat % size;
            flat /= size;
        }
        return index;
    }
}
