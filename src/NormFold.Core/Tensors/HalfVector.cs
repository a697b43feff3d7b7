using System.Numerics;

namespace NormFold.Tensors;

/// <summary>
/// float16 weights times a double factor, rounded once back to float16, Vector&lt;ulong&gt; lanes at a time, with
/// integer operations on the IEEE bit fields (the same result as <see cref="Rounding.ToHalf"/>, which tests assert).
/// Blocks holding anything but normal numbers and zeros, or whose products leave float16's normal range, are left to
/// the scalar path.
/// </summary>
public static class HalfVector
{
    /// <summary>Scales <paramref name="src"/> into <paramref name="dst"/> (which may be the same memory): vector blocks
    /// where they qualify, element by element elsewhere. Returns the number of elements done by the vector path.</summary>
    public static int ScaleRun(ReadOnlySpan<ushort> src, Span<ushort> dst, double factor)
    {
        int vectorised = 0, done = 0;
        if (Vector.IsHardwareAccelerated) vectorised = ScaleBlocks(src, dst, factor, out done);
        for (int i = done; i < src.Length; i++) dst[i] = Scalar(src[i], factor);
        return vectorised;
    }

    static ushort Scalar(ushort h, double factor) =>
        BitConverter.HalfToUInt16Bits(Rounding.ToHalf(Rounding.FromHalf(BitConverter.UInt16BitsToHalf(h)) * factor));

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    static int ScaleBlocks(ReadOnlySpan<ushort> src, Span<ushort> dst, double factor, out int done)
    {
        int block = Vector<ushort>.Count, vectorised = 0;
        done = 0;
        var f = new Vector<double>(factor);
        Span<Vector<ulong>> parts = stackalloc Vector<ulong>[4];
        for (; done <= src.Length - block; done += block)
        {
            var h = new Vector<ushort>(src.Slice(done, block));
            Vector.Widen(h, out var lo, out var hi);
            Vector.Widen(lo, out parts[0], out parts[1]);
            Vector.Widen(hi, out parts[2], out parts[3]);
            bool ok = true;
            for (int k = 0; k < 4 && ok; k++) ok = TryScale(ref parts[k], f);
            if (!ok)
            {
                for (int i = done; i < done + block; i++) dst[i] = Scalar(src[i], factor);
                continue;
            }
            var n0 = Vector.Narrow(parts[0], parts[1]);
            var n1 = Vector.Narrow(parts[2], parts[3]);
            Vector.Narrow(n0, n1).CopyTo(dst.Slice(done, block));
            vectorised += block;
        }
        return vectorised;
    }

    static readonly Vector<ulong> Low10 = new(0x3FF), Low5 = new(0x1F), Low11 = new(0x7FF), One = new(1);
    static readonly Vector<ulong> Mantissa52 = new((1UL << 52) - 1), Implicit52 = new(1UL << 52);
    static readonly Vector<ulong> Rest42 = new((1UL << 42) - 1), Half42 = new(1UL << 41);

    /// <summary>Half bits → double, times f, → half bits, in place; false if a lane needs the scalar path.</summary>
    static bool TryScale(ref Vector<ulong> bits, Vector<double> f)
    {
        var sign = Vector.ShiftRightLogical(bits, 15) & One;
        var exponent = Vector.ShiftRightLogical(bits, 10) & Low5;
        var mantissa = bits & Low10;
        var isZero = Vector.Equals(exponent | mantissa, Vector<ulong>.Zero);
        var normal = Vector.GreaterThan(exponent, Vector<ulong>.Zero) & Vector.LessThan(exponent, Low5);
        if (!Vector.EqualsAll(isZero | normal, Vector<ulong>.AllBitsSet)) return false; // subnormal, ∞ or NaN
        var asDouble = Vector.ShiftLeft(sign, 63) | Vector.ShiftLeft(exponent + new Vector<ulong>(1008), 52) | Vector.ShiftLeft(mantissa, 42);
        asDouble = Vector.ConditionalSelect(isZero, Vector.ShiftLeft(sign, 63), asDouble);
        var product = Vector.AsVectorUInt64(Vector.AsVectorDouble(asDouble) * f);

        var s = Vector.ShiftRightLogical(product, 63);
        var e = Vector.ShiftRightLogical(product, 52) & Low11;
        var zeroOut = Vector.Equals(product & ~Vector.ShiftLeft(One, 63), Vector<ulong>.Zero);
        // Normal float16 results: unbiased exponent in [−14, 15], i.e. the double's biased exponent in [1009, 1038].
        var inRange = Vector.GreaterThanOrEqual(e, new Vector<ulong>(1009)) & Vector.LessThanOrEqual(e, new Vector<ulong>(1038));
        if (!Vector.EqualsAll(inRange | zeroOut, Vector<ulong>.AllBitsSet)) return false;
        var full = (product & Mantissa52) | Implicit52;
        var kept = Vector.ShiftRightLogical(full, 42);
        var rest = full & Rest42;
        var up = (Vector.GreaterThan(rest, Half42) | (Vector.Equals(rest, Half42) & Vector.Equals(kept & One, One))) & One;
        // (e − 1008)·1024 + (kept + up − 1024): a carry out of the mantissa lands in the exponent, 31 being ∞.
        var half = Vector.ShiftLeft(s, 15) | (Vector.ShiftLeft(e - new Vector<ulong>(1008), 10) + kept + up - new Vector<ulong>(1024));
        bits = Vector.ConditionalSelect(zeroOut, Vector.ShiftLeft(s, 15), half);
        return true;
    }
}
