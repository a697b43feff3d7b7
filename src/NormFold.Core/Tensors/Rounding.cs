namespace NormFold.Tensors;

/// <summary>
/// Correct rounding of a double to narrower IEEE-style binary formats, round-to-nearest-even, once.
/// (A double→float→half cast would round twice and can be off by one ulp.)
/// </summary>
public static class Rounding
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

    public static Half ToHalf(double x) =>
        double.IsNaN(x) ? Half.NaN : (Half)(float)ToFormat(x, 10, -14, 15); // exact after rounding

    public static ushort ToBFloat16Bits(double x)
    {
        if (double.IsNaN(x)) return 0x7FC0;
        float f = (float)ToFormat(x, 7, -126, 127); // representable in float, so the cast is exact
        return (ushort)(BitConverter.SingleToUInt32Bits(f) >> 16);
    }

    public static double FromBFloat16Bits(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);
}
