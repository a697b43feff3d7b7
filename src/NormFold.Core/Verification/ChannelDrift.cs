using System.Numerics;
using T = NormFold.Onnx.Proto.TensorProto.Types.DataType;

namespace NormFold.Verification;

/// <summary>One channel's systematic deviation of candidate from reference: a = gain·r + offset, fitted by least squares
/// over the channel's elements (offset taken at the channel's mean), and the thresholds it was held to.</summary>
/// <param name="GainThreshold">Half-width of the band 1 ± GainThreshold a gain may lie in.</param>
/// <param name="Offset">mean(candidate − reference) over the channel.</param>
/// <param name="Noise">Standard deviation of the residuals (the elementwise noise once gain and offset are taken out).</param>
/// <param name="MaxAbs">Largest |candidate − reference| in the channel.</param>
public sealed record ChannelDrift(
    int Channel,
    long Elements,
    double Gain,
    double GainThreshold,
    double Offset,
    double OffsetThreshold,
    double Noise,
    double MaxAbs,
    bool Flagged)
{
    /// <summary>max(|gain − 1| / GainThreshold, |offset| / OffsetThreshold): above 1 means flagged (when also significant).</summary>
    public double Ratio => Math.Max(GainThreshold > 0 ? Math.Abs(Gain - 1) / GainThreshold : 0, OffsetThreshold > 0 ? Math.Abs(Offset) / OffsetThreshold : 0);
}

/// <summary>
/// Per-channel systematic-error detection (channel = axis 1). Rounding noise of a correct rewrite is spread over the
/// elements; a folding bug (wrong γ, ε, mean sign, axis, group offset) moves a whole channel by a gain or an offset.
/// Per channel c, over its n elements (every run pooled; exact zeros left out: ReLU-clipped, padding), δ = a − r:
///   gain − 1 = Σ(r − r̄)(δ − δ̄) / Σ(r − r̄)²,  offset = δ̄,  σ² = residual variance of δ after the fit (n − 2 dof),
///   u = the type's unit roundoff (2⁻²⁴ float32, 2⁻¹¹ float16, 2⁻⁸ bfloat16, 2⁻⁵³ double), M = rms(r),
///   ν = max(1, σ / (u·M) / NoiseUlps): how much noisier than one rounding the channel is (long sums, cancellation),
///   φ = max(1, M/S), S the channel's standard deviation: float arithmetic errs in proportion to M, a gain is relative to S,
///   a = 256·min(u, 2⁻²⁴): ORT's own float arithmetic (BN scale, normalisation statistics) on the reference side.
/// Flagged when a deviation is significant, |gain − 1| > t·σₛ/√Σ(r − r̄)² or |offset| > t·σₛ/√n (t: Student's t for
/// n − 2 dof at the tail probability of Z normal deviations; σₛ = max(σ, u·M/√3, ρ·M), ρ the median of σ/M over the
/// tensor's channels: the candidate is rounded at least once, and a rewrite's noise is much the same in every channel,
/// so a channel whose few elements leave less is lucky — rounding steps that line up with its values), and
/// meaningful: |gain − 1| > GainUlps·u·ν + a·φ, or
/// |offset| > max(OffsetUlps·u·M, OffsetNoise·σ) + a·M. A correct fold's rounded weights move a channel's gain by a
/// weighted mean of their relative rounding errors (≤ u) and its offset by the rounded bias (≤ u·|bias|, which
/// shows in σ when it cancels); the constants sit above that, as measured on the bundled models (README).
/// Copies count once: along an axis where the reference is constant (a broadcast), every element repeats another's
/// value and error, so n is the channel's distinct positions (D of them, each repeated k = n/D times): σ² = SSE/(n − 2k),
/// the gain's standard error σ·√k/√Σ(r − r̄)², the offset's σ/√D, t for D − 2 dof, and D ≥ MinElements to be tested.
/// </summary>
internal static class ChannelDriftDetector
{
    public const double Z = 7, MinGain = 5e-3, GainUlps = 1.5, ArithmeticUlps = 256, OffsetUlps = 2, OffsetNoise = 6, NoiseUlps = 2;
    /// <summary>The gain floor of a local replay (<see cref="LocalReplay"/>): none. A replayed tensor carries no error
    /// from upstream rewrites (its inputs are the reference's own), only the rewrite's arithmetic, which the other
    /// allowances cover.</summary>
    public const double ReplayMinGain = 0;
    /// <summary>A replay's floor in ulps of the tensor's typical channel magnitude (the median over its channels of
    /// their rms): a channel whose values cancel (a bias against the sum it is added to, a channel ~1e-5 of the others)
    /// errs in proportion to what cancelled, which its own values do not show: ~1.5e-8 on MobileNetV2's depthwise convs
    /// (0.02 u of max|ref|, ~0.1 u of the median rms); a gain counts by what it moves, g·S. The median, not max|ref|:
    /// a tensor with outliers (random-weight nets, max|ref| 1e4) would lift the floor past faults of 1 % in its
    /// ordinary channels. Capped per channel at the end-to-end floor (MinGain of a gain, MinGain·M of an offset): a
    /// replay that passes excuses an end-to-end excess (<see cref="CheckOptions.LocalReplay"/>), so it may not be looser
    /// than the test it excuses (float16: 16 u is 0.8 %, and a channel's spread may be a third of the median rms).</summary>
    public const double ReplayMagnitudeUlps = 16;
    /// <summary>Channels with fewer elements are not tested (their gain and noise cannot be estimated).</summary>
    public const int MinElements = 8;
    /// <summary>Findings kept per tensor (the worst channels); the count says how many were flagged.</summary>
    public const int MaxKept = 8;

    public static double UnitRoundoff(int elementType) => (T)elementType switch
    {
        T.Float => Math.ScaleB(1, -24),
        T.Float16 => Math.ScaleB(1, -11),
        T.Bfloat16 => Math.ScaleB(1, -8),
        T.Double => Math.ScaleB(1, -53),
        _ => 0,
    };

    /// <summary>Two-sided tail probability of the significance test: that of Z standard deviations of a normal.</summary>
    static readonly double TailProbability = 2 * NormalTail(Z);
    static readonly System.Collections.Concurrent.ConcurrentDictionary<long, double> Criticals = new();

    /// <summary>The t below which |Student-t with <paramref name="dof"/> degrees of freedom| falls with probability
    /// 1 − TailProbability: σ estimated from few elements is itself uncertain, so few elements need a larger ratio.</summary>
    internal static double StudentCritical(long dof)
    {
        if (dof < 1) return double.PositiveInfinity;
        if (dof > 100_000) return Z;
        return Criticals.GetOrAdd(dof, d =>
        {
            double lo = Z, hi = Z;
            while (StudentTail(hi, d) > TailProbability) hi *= 2;
            for (int i = 0; i < 200 && hi - lo > 1e-9 * hi; i++)
            {
                double mid = 0.5 * (lo + hi);
                if (StudentTail(mid, d) > TailProbability) lo = mid; else hi = mid;
            }
            return hi;
        });
    }

    /// <summary>P(|T| > t), T Student-t with ν degrees of freedom: I_{ν/(ν+t²)}(ν/2, 1/2).</summary>
    static double StudentTail(double t, double nu) => RegularizedBeta(nu / (nu + t * t), nu / 2, 0.5);

    /// <summary>P(X > z), X standard normal (erfc by its continued fraction, z ≥ 3).</summary>
    static double NormalTail(double z)
    {
        double f = 0;
        for (int k = 60; k >= 1; k--) f = k / (z + f);
        return Math.Exp(-z * z / 2) / Math.Sqrt(2 * Math.PI) / (z + f);
    }

    /// <summary>I_x(a, b) by Lentz's continued fraction (the symmetric form where it converges faster).</summary>
    static double RegularizedBeta(double x, double a, double b)
    {
        if (x <= 0) return 0;
        if (x >= 1) return 1;
        double front = Math.Exp(LogGamma(a + b) - LogGamma(a) - LogGamma(b) + a * Math.Log(x) + b * Math.Log(1 - x));
        if (x > (a + 1) / (a + b + 2)) return 1 - front * BetaFraction(1 - x, b, a) / b;
        return front * BetaFraction(x, a, b) / a;
    }

    static double BetaFraction(double x, double a, double b)
    {
        const double tiny = 1e-300;
        double c = 1, d = 1 - (a + b) * x / (a + 1);
        d = Math.Abs(d) < tiny ? 1 / tiny : 1 / d;
        double h = d;
        for (int m = 1; m <= 10_000; m++)
        {
            double m2 = 2 * m;
            double num = m * (b - m) * x / ((a + m2 - 1) * (a + m2));
            d = 1 + num * d; d = Math.Abs(d) < tiny ? 1 / tiny : 1 / d;
            c = 1 + num / c; c = Math.Abs(c) < tiny ? tiny : c;
            h *= d * c;
            num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1));
            d = 1 + num * d; d = Math.Abs(d) < tiny ? 1 / tiny : 1 / d;
            c = 1 + num / c; c = Math.Abs(c) < tiny ? tiny : c;
            double delta = d * c;
            h *= delta;
            if (Math.Abs(delta - 1) < 1e-15) break;
        }
        return h;
    }

    /// <summary>ln Γ(x), Lanczos (g = 7, 9 terms).</summary>
    static double LogGamma(double x)
    {
        ReadOnlySpan<double> g = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313,
            -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
        x -= 1;
        double s = g[0];
        for (int i = 1; i < 9; i++) s += g[i] / (x + i);
        double t = x + 7.5;
        return 0.5 * Math.Log(2 * Math.PI) + (x + 0.5) * Math.Log(t) - t + Math.Log(s);
    }

    /// <summary>Unit roundoff of the arithmetic ORT does on the type: float32 at least (it scales float16 in float).</summary>
    internal static double Arithmetic(double u) => Math.Min(u, Math.ScaleB(1, -24));

    /// <summary>Running sums of one channel (r shifted by the channel's first value for precision).</summary>
    internal struct Sums
    {
        public long N;
        /// <summary>Elements at distinct positions: N less the copies along the tensor's broadcast axes.</summary>
        public double Distinct;
        public double Shift, R, RR, D, DD, RD, MaxAbs;
        /// <summary>Elements of a pile counted as one (<see cref="CollapsePile{TV, TE}"/>): N + Piled were summed.</summary>
        public long Piled;
        public bool Started;

        /// <summary>Adds another run's sums (moved to this shift).</summary>
        public void Merge(in Sums o)
        {
            if (!o.Started) return;
            if (!Started) { this = o; return; }
            double h = o.Shift - Shift; // x = x_o + h
            RR += o.RR + 2 * h * o.R + o.N * h * h;
            RD += o.RD + h * o.D;
            R += o.R + o.N * h;
            D += o.D; DD += o.DD; N += o.N; Piled += o.Piled; Distinct += o.Distinct; MaxAbs = Math.Max(MaxAbs, o.MaxAbs);
        }
    }

    /// <summary>One tensor's per-channel sums, over one run or (merged) several.</summary>
    internal sealed class Accumulator
    {
        /// <param name="distinctFraction">The share of a channel's positions that are not copies (<see cref="DistinctFraction{TV}"/>).</param>
        public Accumulator(int elementType, Sums[] channels, double distinctFraction, long[] shape)
        {
            ElementType = elementType;
            Shape = shape;
            Channels = channels;
            for (int c = 0; c < channels.Length; c++) channels[c].Distinct = channels[c].N * distinctFraction;
        }

        public int ElementType { get; }
        public Sums[] Channels { get; }
        /// <summary>The tensor's shape (of the first run).</summary>
        public long[] Shape { get; }

        public void Merge(Accumulator other)
        {
            if (other.Channels.Length != Channels.Length) return; // shapes differ between runs: keep the first
            for (int c = 0; c < Channels.Length; c++) Channels[c].Merge(other.Channels[c]);
        }

        /// <param name="minGain">The floor of the gain band (and, times M, of the offset band).</param>
        /// <param name="floorUlps">A floor of the offset band of floorUlps·u times the median of the channels' rms (and,
        /// over the channel's spread S, of the gain band), each at most the end-to-end floor (MinGain·M, MinGain).</param>
        /// <param name="shift">The additive constant the rewrite making the tensor stores: OffsetUlps·u·|c| more room
        /// for a channel's offset (<see cref="ReplayShift"/>); for float16/bfloat16, with its weights and
        /// <paramref name="input"/> (the channel moments of the reference tensor they multiply), u·|c| + the bound of
        /// <see cref="LinearInput"/> instead: each of the two rounded once; and the gain band that bound's tilt.</param>
        public Result Decide(double minGain = MinGain, double floorUlps = 0, ReplayShift? shift = null, InputMoments? input = null)
        {
            double u = UnitRoundoff(ElementType);
            var rounded = shift?.Rounding(Shape, Channels.Length, ElementType, input?.Mean);
            var shifts = rounded is null ? shift?.PerChannel(Shape, Channels.Length) : null;
            var tilted = u > Arithmetic(1) ? shift?.Input?.PerChannel(input?.Spread, Channels.Length, Z) : null;
            var stored = new double[Channels.Length];
            for (int c = 0; c < stored.Length; c++)
                stored[c] = rounded?[c] ?? OffsetUlps * u * (shifts?[c] ?? 0);
            var fits = new Fit?[Channels.Length];
            for (int c = 0; c < Channels.Length; c++) fits[c] = FitOf(Channels[c]);
            double relativeNoise = MedianRelativeNoise(fits.OfType<Fit>());
            var rms = fits.OfType<Fit>().Select(f => f.Rms).Order().ToArray();
            double floor = rms.Length == 0 ? 0 : floorUlps * u * rms[rms.Length / 2];
            // Among the subnormals rounding is absolute (and ORT's kernels flush them or not): no offset below the smallest
            // normal value is told apart from it, as in the elementwise tolerance.
            double smallest = Tolerance.SmallestNormal(ElementType);
            var all = new List<ChannelDrift>(Channels.Length);
            for (int c = 0; c < Channels.Length; c++)
                if (fits[c] is { } f) all.Add(Judge(c, f, u, relativeNoise, minGain, floor, smallest, stored[c], u * (tilted?[c] ?? 0)));
            var flagged = all.Where(d => d.Flagged).OrderByDescending(d => d.Ratio).ToList();
            return new Result(all.Count, flagged.Count, flagged.Take(MaxKept).ToList(), all.MaxBy(d => d.Ratio));
        }
    }

    /// <summary>Sums every channel of a tensor [outer, C, inner…]; null when it has no channel axis.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static Accumulator? Accumulate<TV, TE>(ReadOnlySpan<TV> r, ReadOnlySpan<TV> a, long[] shape, int elementType)
        where TV : unmanaged where TE : struct, Comparator.IElement<TV>
    {
        if (!Layout(shape, elementType, out int channels, out long inner)) return null;
        long outer = shape[0];
        var sums = new Sums[channels];
        int i = 0;
        for (long o = 0; o < outer; o++)
            for (int c = 0; c < channels; c++)
            {
                ref var s = ref sums[c];
                for (long j = 0; j < inner; j++, i++) Add(ref s, TE.Get(r[i]), TE.Get(a[i]));
            }
        if (UnitRoundoff(elementType) > Arithmetic(1))
            for (int c = 0; c < channels; c++) CollapsePile<TV, TE>(ref sums[c], r, a, outer, channels, inner, c);
        return new Accumulator(elementType, sums, DistinctFraction(r, shape), shape);
    }

    /// <summary>
    /// A channel's most repeated reference value (a Boyer–Moore majority candidate, its count verified) counted as one
    /// element with the pile's mean δ. A pile is one exact value rounded once on each side — the image of a clipped
    /// input (ReLU zeros → BN's t), or values less than an ulp apart — so its elements share one rounding error, which
    /// the fit would weigh by the pile's size, at the pile's distance from the channel's mean: a gain of up to
    /// √(pile share)·ulp/S that no count of elements averages away (fp16 DenseNet-121: 2016 of 2048 elements one value,
    /// gain 0.977). Only where the type's rounding exceeds ORT's arithmetic allowance a (float16, bfloat16): for float
    /// and double a·φ already covers one rounding of the pile, √(share)·u·M/S ≤ u·φ.
    /// </summary>
    static void CollapsePile<TV, TE>(ref Sums s, ReadOnlySpan<TV> r, ReadOnlySpan<TV> a, long outer, int channels, long inner, int c)
        where TV : unmanaged where TE : struct, Comparator.IElement<TV>
    {
        if (s.N < 3) return;
        double candidate = 0;
        long votes = 0;
        for (long o = 0; o < outer; o++)
            for (long j = 0, i = (o * channels + c) * inner; j < inner; j++, i++)
            {
                double ri = TE.Get(r[(int)i]), ai = TE.Get(a[(int)i]);
                if (!Counts(ri, ai)) continue;
                if (votes == 0) { candidate = ri; votes = 1; }
                else votes += ri == candidate ? 1 : -1;
            }
        long p = 0;
        double pd = 0, pdd = 0;
        for (long o = 0; o < outer; o++)
            for (long j = 0, i = (o * channels + c) * inner; j < inner; j++, i++)
            {
                double ri = TE.Get(r[(int)i]), ai = TE.Get(a[(int)i]);
                if (!Counts(ri, ai) || ri != candidate) continue;
                double dl = ai - ri;
                p++; pd += dl; pdd += dl * dl;
            }
        if (p < 2) return;
        // p elements at x = candidate − Shift out, one back with δ = pd / p.
        double x = candidate - s.Shift, mean = pd / p;
        s.N -= p - 1;
        s.Piled += p - 1;
        s.R -= (p - 1) * x;
        s.RR -= (p - 1) * x * x;
        s.D += mean - pd;
        s.DD += mean * mean - pdd;
        s.RD += x * (mean - pd);
    }

    /// <summary>Whether an element enters a channel's sums (<see cref="Add"/>).</summary>
    static bool Counts(double ri, double ai) => double.IsFinite(ri) && double.IsFinite(ai) && ri != 0 && ai != 0;

    /// <summary>The share of positions off the channel axis that are not copies: the product of the dims along which
    /// <paramref name="r"/> varies over the product of all (axis 1 aside). An axis is a copy axis when every slice along
    /// it equals the first, bit for bit; an ordinary tensor differs in its first few elements, so the test costs little.</summary>
    public static double DistinctFraction<TV>(ReadOnlySpan<TV> r, long[] shape) where TV : unmanaged
    {
        double fraction = 1;
        var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(r);
        int size = System.Runtime.CompilerServices.Unsafe.SizeOf<TV>();
        long stride = 1;
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            long dim = shape[d];
            if (d != 1 && dim > 1 && ConstantAlong(bytes, stride * size, dim, r.Length * (long)size)) fraction /= dim;
            stride *= dim;
        }
        return fraction;
    }

    /// <summary>Every block of <paramref name="dim"/> slices of <paramref name="slice"/> bytes holds equal slices.</summary>
    static bool ConstantAlong(ReadOnlySpan<byte> bytes, long slice, long dim, long total)
    {
        if (slice * dim > int.MaxValue || total > int.MaxValue) return false;
        int s = (int)slice, block = (int)(slice * dim);
        for (int b = 0; b + block <= total; b += block)
        {
            var first = bytes.Slice(b, s);
            for (int k = 1; k < dim; k++)
                if (!first.SequenceEqual(bytes.Slice(b + k * s, s))) return false;
        }
        return true;
    }

    /// <summary>The tensor's channel layout [outer, C, inner…]; false when it has no channel axis.</summary>
    internal static bool Layout(long[] shape, int elementType, out int channels, out long inner)
    {
        channels = 0;
        inner = 1;
        if (shape.Length < 2 || UnitRoundoff(elementType) == 0 || shape[1] <= 0) return false;
        channels = (int)shape[1];
        for (int d = 2; d < shape.Length; d++) inner *= shape[d];
        return true;
    }

    /// <summary>One element into a channel's sums.</summary>
    internal static void Add(ref Sums s, double ri, double ai)
    {
        // Exact zeros say nothing about gain or noise: clipped by a ReLU, padding, masks.
        if (!Counts(ri, ai)) return;
        if (!s.Started) { s.Shift = ri; s.Started = true; }
        double x = ri - s.Shift, dl = ai - ri;
        s.N++; s.R += x; s.RR += x * x; s.D += dl; s.DD += dl * dl; s.RD += x * dl;
        if (Math.Abs(dl) > s.MaxAbs) s.MaxAbs = Math.Abs(dl);
    }

    public sealed record Result(int Tested, int Flagged, List<ChannelDrift> Findings, ChannelDrift? Worst);

    /// <summary>A channel's least-squares fit of δ on r (see the class summary).</summary>
    readonly record struct Fit(long N, long Piled, double Distinct, double Copies, double MeanD, double Sxx, bool HasGain,
        double GainError, double Sigma, double Rms, double MaxAbs);

    static Fit? FitOf(in Sums s)
    {
        long n = s.N;
        double distinct = Math.Min(n, Math.Round(s.Distinct));
        if (distinct < MinElements) return null;
        double meanX = s.R / n, meanD = s.D / n;
        double sxx = Math.Max(0, s.RR - n * meanX * meanX);
        double sxd = s.RD - n * meanX * meanD;
        double sdd = Math.Max(0, s.DD - n * meanD * meanD);
        double rms = Math.Sqrt(Math.Max(0, (s.RR + 2 * s.Shift * s.R + n * s.Shift * s.Shift) / n));
        // A channel that does not vary has no gain: only its offset is tested.
        bool hasGain = sxx > 0 && sxx > 1e-24 * n * Math.Max(rms * rms, double.Epsilon);
        double gainError = hasGain ? sxd / sxx : 0;
        double sse = Math.Max(0, hasGain ? sdd - sxd * gainError : sdd);
        double copies = n / distinct;
        double sigma = Math.Sqrt(sse / Math.Max(1, n - 2 * copies));
        return new Fit(n, s.Piled, distinct, copies, meanD, sxx, hasGain, gainError, sigma, rms, s.MaxAbs);
    }

    /// <summary>The median over a tensor's channels of σ/M: the noise its rewrite leaves, which one channel's few
    /// elements can underestimate by chance.</summary>
    static double MedianRelativeNoise(IEnumerable<Fit> fits)
    {
        var rel = fits.Where(f => f.Rms > 0).Select(f => f.Sigma / f.Rms).Order().ToArray();
        return rel.Length == 0 ? 0 : rel[rel.Length / 2];
    }

    /// <param name="stored">What the rounding of the constants the rewrite stores can move the channel's mean by.</param>
    /// <param name="tilt">What the rounding of its weights can add to Σ(δ − δ̄)(r − r̄)/n over S (a gain of tilt/S).</param>
    static ChannelDrift Judge(int c, in Fit f, double u, double relativeNoise, double minGain, double floor, double smallest, double stored, double tilt)
    {
        double rms = f.Rms, sigma = f.Sigma, gainError = f.GainError, meanD = f.MeanD;
        double noise = rms > 0 ? Math.Max(1, sigma / (u * rms) / NoiseUlps) : 1;
        // ORT's float arithmetic errs in proportion to the values it computes (M), not to how much a channel varies (S):
        // as a gain that is a·M/S. A channel that barely varies around a large mean (a depthwise conv over a ReLU-clipped
        // input, most outputs its bias) has room in proportion.
        double spread = f.HasGain ? Math.Sqrt(f.Sxx / f.N) : 0;
        double flatness = spread > 0 ? Math.Max(1, rms / spread) : 1;
        // Below MinGain a channel's gain is not told apart from error carried from upstream rewrites: a channel that is an
        // affine function of one or two upstream values (a depthwise conv after ReLU6 leaving one nonzero input) carries
        // their rounding as a gain with no residual — up to 0.4 % on torchvision's MobileNetV2 at 224×224, as with ORT's
        // own Conv+BN fusion. The fold's arithmetic itself is verified bit for bit by the weight audit.
        // A replay's floor (the median channel's ulps) capped at the end-to-end floor: never looser than what it excuses.
        double gainFloor = spread > 0 ? Math.Max(Math.Min(floor / spread, MinGain), smallest / spread) : 0;
        double offsetFloor = Math.Max(Math.Min(floor, MinGain * rms), smallest);
        // Both tensors are rounded once to the type: r = r* + e_r, a = a* + e_a, |e| ≤ u·|value|, so E[e²] ≤ (u·M)².
        // The fit reads Σ(r − r̄)(e_a − e_r)/Σ(r − r̄)² as a gain: e_r is noise in the regressor (attenuation
        // −var(e_r)/S²) and e_a follows e_r (cov(e_a, e_r)/S²), each ≤ g² with g = u·M/S. That holds while the errors
        // are a sawtooth of smoothly spread values, nearly independent of them (their correlation with r falls as
        // exp(−2π²S²/ulp²)); when the channel spans under half an ulp (S ≤ ulp/2 ≤ u·M) they follow r, up to
        // g per side (Cauchy–Schwarz), and g ≥ 1 there, so 2g² still bounds it. Piles of one value, the other way
        // rounding errors line up, count once (CollapsePile). float16: a channel of mean 89 and spread 0.03 (half an
        // ulp) reads its grid as a gain of 0.04; one of mean 100 and spread 5 gets 2e-4 more room.
        double grid = spread > 0 ? u * rms / spread : 0;
        double gainThreshold = Math.Max(Math.Max(minGain, gainFloor), GainUlps * u * noise + ArithmeticUlps * Arithmetic(u) * flatness + 2 * grid * grid
            + (spread > 0 ? tilt / spread : 0));
        // Correlated accumulation noise (long sums in a different order) and nonlinearities after the rewrite shift a
        // channel's mean by up to about the noise itself: the offset must stand out of it.
        // (a gain below MinGain moves the channel's mean by up to MinGain·M)
        // (the rewrite's stored constant c, rounded once with the factor it cancels against: up to 2u·|c|; for float16
        // and bfloat16 with its weights' rounding against the input's mean instead, u·|c| + LinearInput's bound)
        double offsetThreshold = Math.Max(Math.Max(minGain * rms, offsetFloor),
            Math.Max(OffsetUlps * u * rms, OffsetNoise * sigma) + ArithmeticUlps * Arithmetic(u) * rms + stored);
        double critical = StudentCritical((long)f.Distinct - 2);
        double sigmaSignificance = Math.Max(sigma, Math.Max(u / Math.Sqrt(3), relativeNoise) * rms);
        bool gainOff = f.HasGain && Math.Abs(gainError) > gainThreshold && Math.Abs(gainError) > critical * sigmaSignificance * Math.Sqrt(f.Copies / f.Sxx);
        bool offsetOff = Math.Abs(meanD) > offsetThreshold && Math.Abs(meanD) > critical * sigmaSignificance / Math.Sqrt(f.Distinct);
        return new ChannelDrift(c, f.N + f.Piled, 1 + gainError, gainThreshold, meanD, offsetThreshold, sigma, f.MaxAbs, gainOff || offsetOff);
    }
}
