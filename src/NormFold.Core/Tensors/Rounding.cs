namespace NormFold.Tensors;

/// <summary>
/// Correct rounding of a double to narrower IEEE-style binary formats, round-to-nearest-even, once.
/// (A double→float→half cast would round twice and can be off by one ulp.)
/// </summary>
internal static class Rounding
{
    /// <summary>
    /// Rounds x to the nearest value with <paramref name="mantissaBits"/> fraction bits and exponents in
    /// [minExponent, maxExponent] (subnormals below minExponent); overflow gives ±∞.
    /// </summary>
    public static double ToFormat(double x, int mantissaBits, int minExponent, int maxExponent)
    {
        if (double.IsNaN(x) || double.IsInfinity(x) || x == 0) return x;
        int e = Math.Max(Math.ILogB(x), minExponent);
        double ulp = Math.ScaleB(1.0, e - mantissaBits);
        double r = Math.Round(x / ulp, MidpointRounding.ToEven) * ulp; // x/ulp is exact: a power-of-two scaling
        double maxFinite = Math.ScaleB(2.0 - Math.ScaleB(1.0, -mantissaBits), maxExponent);
        if (Math.Abs(r) > maxFinite) return double.CopySign(double.PositiveInfinity, x);
        return r == 0 ? double.CopySign(0.0, x) : r;
    }

    static readonly double[] HalfValues = BuildHalfValues();

    static double[] BuildHalfValues()
    {
        var table = new double[65536];
        for (int i = 0; i < table.Length; i++) table[i] = (double)BitConverter.UInt16BitsToHalf((ushort)i);
        return table;
    }

    /// <summary>float16 → double by table: exact, and much cheaper than the software conversion.</summary>
    public static double FromHalf(Half h) => HalfValues[BitConverter.HalfToUInt16Bits(h)];

    public static Half ToHalf(double x) => BitConverter.UInt16BitsToHalf(ToBits(x, 10, 5)); // inlined: constants fold

    public static ushort ToBFloat16Bits(double x) => ToBits(x, 7, 8);

    /// <summary>
    /// Bits of the binary16-style format with <paramref name="mantissaBits"/> and <paramref name="exponentBits"/> (sign
    /// first) nearest to x, ties to even, straight from the double's bits: one rounding, integer operations only.
    /// Agrees with <see cref="ToFormat"/> (asserted by tests), at a fraction of its cost.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    static ushort ToBits(double x, int mantissaBits, int exponentBits)
    {
        ulong bits = BitConverter.DoubleToUInt64Bits(x);
        ushort sign = (ushort)((bits >> 63) << (mantissaBits + exponentBits));
        int exponent = (int)((bits >> 52) & 0x7FF);
        ulong mantissa = bits & ((1UL << 52) - 1);
        int bias = (1 << (exponentBits - 1)) - 1, maxExponent = (1 << exponentBits) - 1;
        ushort infinity = (ushort)(sign | (maxExponent << mantissaBits));
        if (exponent == 0x7FF)
            return mantissa == 0 ? infinity : (ushort)((maxExponent << mantissaBits) | (1 << (mantissaBits - 1))); // +qNaN
        int e = exponent - 1023;
        if (exponent == 0 || e < 1 - bias - mantissaBits - 1) return sign; // below half the smallest subnormal: ±0
        ulong full = mantissa | (1UL << 52);
        // Normal numbers keep mantissaBits below the leading 1; subnormals lose one more bit per step below 1 − bias.
        int shift = 52 - mantissaBits + Math.Max(0, 1 - bias - e);
        ulong kept = full >> shift, rest = full & ((1UL << shift) - 1), half = 1UL << (shift - 1);
        if (rest > half || (rest == half && (kept & 1) == 1)) kept++;
        if (e < 1 - bias)
            return (ushort)(sign | kept); // subnormal; a carry into bit mantissaBits is exactly the smallest normal
        int biased = e + bias;
        if (kept == 2UL << mantissaBits) { kept >>= 1; biased++; } // rounding carried into the next binade
        if (biased >= maxExponent) return infinity;
        return (ushort)(sign | (biased << mantissaBits) | (int)(kept & ((1UL << mantissaBits) - 1)));
    }

    public static double FromBFloat16Bits(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);
}
