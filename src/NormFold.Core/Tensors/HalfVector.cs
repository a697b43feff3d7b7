using System.Numerics;

namespace NormFold.Tensors;

/// <summary>
/// float16 weights times a double factor, rounded once back to float16, Vector&lt;uint&gt; lanes at a time (the same
/// result as <see cref="Rounding.ToHalf"/>, which tests assert on every float16 value).
/// y = h·f is computed in double and narrowed to float (z); float16 midpoints are floats, and rounding is monotonic, so
/// y and z lie on the same side of every midpoint unless z *is* one. Hence round16(y) = round16(z) whenever z is not a
/// midpoint — and for a normal float16 result, rounding z is adding its bit 12 to its top bits. Blocks with a midpoint,
/// or inputs or results outside float16's normal range (zeros aside), are left to the scalar path.
/// </summary>
internal static class HalfVector
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
        for (; done <= src.Length - block; done += block)
        {
            Vector.Widen(new Vector<ushort>(src.Slice(done, block)), out var lo, out var hi);
            if (!TryScale(ref lo, f) || !TryScale(ref hi, f))
            {
                for (int i = done; i < done + block; i++) dst[i] = Scalar(src[i], factor);
                continue;
            }
            Vector.Narrow(lo, hi).CopyTo(dst.Slice(done, block));
            vectorised += block;
        }
        return vectorised;
    }

    static readonly Vector<uint> Sign16 = new(0x8000), Magnitude16 = new(0x7FFF), Mantissa16 = new(0x3FF), Exponent16 = new(0x1F);
    static readonly Vector<uint> Magnitude32 = new(0x7FFFFFFF), Below16 = new(0x1FFF), Midpoint = new(0x1000), One = new(1);
    static readonly Vector<uint> MinNormal16 = new(0x38800000), Max16 = new(0x477FE000), Rebias = new(112u << 23);

    /// <summary>float16 bits (one per lane) → float → double, times f, → float → float16 bits, in place; false if a
    /// lane needs the scalar path.</summary>
    static bool TryScale(ref Vector<uint> bits, Vector<double> f)
    {
        var exponent = Vector.ShiftRightLogical(bits, 10) & Exponent16;
        var isZero = Vector.Equals(bits & Magnitude16, Vector<uint>.Zero);
        var normal = Vector.GreaterThan(exponent, Vector<uint>.Zero) & Vector.LessThan(exponent, Exponent16);
        if (!Vector.EqualsAll(isZero | normal, Vector<uint>.AllBitsSet)) return false; // subnormal, ∞ or NaN
        var sign = Vector.ShiftLeft(bits & Sign16, 16);
        var x = sign | Vector.ConditionalSelect(isZero, Vector<uint>.Zero,
            Vector.ShiftLeft(exponent + new Vector<uint>(112), 23) | Vector.ShiftLeft(bits & Mantissa16, 13));
        Vector.Widen(Vector.AsVectorSingle(x), out var d0, out var d1);
        var z = Vector.AsVectorUInt32(Vector.Narrow(d0 * f, d1 * f));

        var magnitude = z & Magnitude32;
        var zeroOut = Vector.Equals(magnitude, Vector<uint>.Zero);
        var inRange = Vector.GreaterThanOrEqual(magnitude, MinNormal16) & Vector.LessThan(magnitude, Max16)
                      & ~Vector.Equals(magnitude & Below16, Midpoint);
        if (!Vector.EqualsAll(inRange | zeroOut, Vector<uint>.AllBitsSet)) return false;
        // Rebias the exponent (127 → 15), keep 10 mantissa bits, round by bit 12 (no ties: z is no midpoint); a carry
        // out of the mantissa lands in the exponent, which stays below ∞ since z < 65504.
        var half = Vector.ShiftRightLogical(magnitude - Rebias, 13) + (Vector.ShiftRightLogical(magnitude, 12) & One);
        bits = Vector.ShiftRightLogical(z, 16) & Sign16 | Vector.ConditionalSelect(zeroOut, Vector<uint>.Zero, half);
        return true;
    }
}
