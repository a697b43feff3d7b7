using System.Numerics;
using NormFold.Tensors;

namespace NormFold.Tests.Tensors;

public class RoundingTests
{
    /// <summary>Nearest representable value by brute force over the format's neighbours (ties to even).</summary>
    static double NearestHalf(double x)
    {
        Half h = (Half)(float)x; // a starting point within an ulp or two
        double best = double.NaN, bestErr = double.PositiveInfinity;
        ushort bits = BitConverter.HalfToUInt16Bits(h);
        for (int d = -3; d <= 3; d++)
        {
            var c = BitConverter.UInt16BitsToHalf((ushort)(bits + d));
            if (Half.IsNaN(c) || Half.IsInfinity(c)) continue;
            double err = Math.Abs((double)c - x);
            if (err < bestErr || (err == bestErr && (BitConverter.HalfToUInt16Bits(c) & 1) == 0)) { best = (double)c; bestErr = err; }
        }
        return best;
    }

    [Fact]
    public void Half_rounding_is_correct_for_random_and_halfway_values()
    {
        var rng = new Random(7);
        for (int i = 0; i < 200_000; i++)
        {
            double x = (rng.NextDouble() * 2 - 1) * Math.Pow(2, rng.Next(-20, 16));
            Assert.Equal(NearestHalf(x), (double)Rounding.ToHalf(x));
        }
        // Exactly halfway between two halves, and a hair above: a double→float→half cast gets the latter wrong.
        double lo = 1.0, ulp = Math.Pow(2, -10);
        Assert.Equal(1.0, (double)Rounding.ToHalf(lo + ulp / 2));                  // tie → even
        Assert.Equal(1.0 + ulp, (double)Rounding.ToHalf(lo + ulp / 2 + 1e-12));    // above the tie → up
        Assert.Equal(1.0, (double)(Half)(float)(lo + ulp / 2 + 1e-12));            // the double rounding we avoid
    }

    [Fact]
    public void Half_overflow_subnormals_and_specials()
    {
        Assert.Equal(65504.0, (double)Rounding.ToHalf(65519.99));
        Assert.True(Half.IsPositiveInfinity(Rounding.ToHalf(65520)));
        Assert.Equal(Math.Pow(2, -24), (double)Rounding.ToHalf(Math.Pow(2, -24) * 0.75));
        Assert.Equal(0.0, (double)Rounding.ToHalf(Math.Pow(2, -26)));
        Assert.True(Half.IsNaN(Rounding.ToHalf(double.NaN)));
        Assert.True(Half.IsNegative(Rounding.ToHalf(-0.0)));
    }

    [Fact]
    public void Bfloat16_rounds_to_nearest_even_once()
    {
        double ulp = Math.Pow(2, -7);
        Assert.Equal(1.0, Rounding.FromBFloat16Bits(Rounding.ToBFloat16Bits(1 + ulp / 2)));
        Assert.Equal(1 + ulp, Rounding.FromBFloat16Bits(Rounding.ToBFloat16Bits(1 + ulp / 2 + 1e-12)));
        Assert.Equal(1 + 2 * ulp, Rounding.FromBFloat16Bits(Rounding.ToBFloat16Bits(1 + 1.5 * ulp)));
        Assert.Equal(0x7FC0, Rounding.ToBFloat16Bits(double.NaN));
        var rng = new Random(3);
        for (int i = 0; i < 100_000; i++)
        {
            double x = (rng.NextDouble() * 2 - 1) * Math.Pow(2, rng.Next(-100, 100));
            double r = Rounding.FromBFloat16Bits(Rounding.ToBFloat16Bits(x));
            Assert.True(Math.Abs(r - x) <= Math.Abs(x) * Math.Pow(2, -8) * 1.0000001, $"{x} → {r}");
        }
    }

    [Fact]
    public void Float_rounding_matches_the_hardware_cast()
    {
        var rng = new Random(5);
        for (int i = 0; i < 100_000; i++)
        {
            double x = (rng.NextDouble() * 2 - 1) * Math.Pow(2, rng.Next(-140, 120));
            Assert.Equal((double)(float)x, Rounding.ToFormat(x, 23, -126, 127));
        }
    }
}

public class FastRoundingTests
{
    [Fact]
    public void Bit_level_rounding_agrees_with_the_reference_algorithm_everywhere()
    {
        var rng = new Random(11);
        var cases = new List<double> { 0, -0.0, 65504, 65519.99, 65520, 1e-8, 5.96e-8, 2.98e-8, 2.9802322387695312e-8, 6.1e-5, 6.097555160522461e-05, 1.5, 2.5 };
        for (int i = 0; i < 300_000; i++) cases.Add((rng.NextDouble() * 2 - 1) * Math.Pow(2, rng.Next(-30, 20)));
        // Exact ties between neighbouring halves, and just above/below them.
        for (int i = 0; i < 20_000; i++)
        {
            double h = (double)BitConverter.UInt16BitsToHalf((ushort)rng.Next(0, 0x7BFF));
            double next = (double)BitConverter.UInt16BitsToHalf((ushort)(BitConverter.HalfToUInt16Bits((Half)h) + 1));
            double tie = (h + next) / 2;
            cases.AddRange([tie, Math.BitIncrement(tie), Math.BitDecrement(tie), -tie]);
        }
        foreach (double x in cases)
        {
            Assert.Equal(Rounding.ToFormat(x, 10, -14, 15), (double)Rounding.ToHalf(x));
            double bf = Rounding.FromBFloat16Bits(Rounding.ToBFloat16Bits(x * 1e30));
            Assert.Equal(Rounding.ToFormat(x * 1e30, 7, -126, 127), bf);
        }
    }
}

public class HalfVectorTests
{
    [Theory]
    [InlineData(1.0001)]
    [InlineData(0.37)]
    [InlineData(123.456)]
    [InlineData(-2.5e-3)]
    [InlineData(0.0)]
    [InlineData(3000.0)] // pushes some products past 65504: those blocks take the scalar path
    public void Vector_path_equals_rounding_each_element_once(double factor)
    {
        var rng = new Random(17);
        var src = new ushort[4096];
        for (int i = 0; i < src.Length; i++)
            // Weight-like magnitudes (2^-7 … 4), zeros of both signs, and every 500th element anywhere in the normal range.
            src[i] = (ushort)(i % 97 == 0 ? 0 : i % 89 == 0 ? 0x8000 : (i % 500 == 0 ? rng.Next(0x0400, 0x7BFF) : rng.Next(0x2000, 0x4400)) | (rng.Next(2) << 15));
        var dst = new ushort[src.Length];
        int vectorised = HalfVector.ScaleRun(src, dst, factor);
        for (int i = 0; i < src.Length; i++)
        {
            var expected = Rounding.ToHalf(Rounding.FromHalf(BitConverter.UInt16BitsToHalf(src[i])) * factor);
            Assert.Equal(BitConverter.HalfToUInt16Bits(expected), dst[i]);
        }
        if (factor is > 0.1 and < 200 && Vector.IsHardwareAccelerated) Assert.True(vectorised > src.Length / 2); // the vector path did most
    }

    /// <summary>Every float16 value (all 65536 bit patterns) times factors chosen to land on float16 midpoints, near the
    /// overflow and underflow edges, and at random: the vector path's bits equal rounding each element once.</summary>
    [Theory]
    [InlineData(1.0 + 1.0 / 2048)]          // 1.x·(1 + 2^-11): many products sit exactly on a midpoint
    [InlineData(1.5)]
    [InlineData(1.0 / 3)]
    [InlineData(-0.999999999)]
    [InlineData(65504.0 / 60000)]          // results around 65504
    [InlineData(1e-5)]                      // results around float16's subnormal edge
    [InlineData(3.0517578125e-05)]          // 2^-15
    [InlineData(0.7071067811865476)]
    public void Every_float16_value_scales_as_the_scalar_rounding_does(double factor)
    {
        var src = Enumerable.Range(0, 1 << 16).Select(i => (ushort)i).ToArray();
        var dst = new ushort[src.Length];
        HalfVector.ScaleRun(src, dst, factor);
        for (int i = 0; i < src.Length; i++)
        {
            var expected = Rounding.ToHalf(Rounding.FromHalf(BitConverter.UInt16BitsToHalf(src[i])) * factor);
            var e = BitConverter.HalfToUInt16Bits(expected);
            if (Half.IsNaN(expected)) Assert.True(Half.IsNaN(BitConverter.UInt16BitsToHalf(dst[i])), $"0x{src[i]:X4}");
            else Assert.True(e == dst[i], $"0x{src[i]:X4} × {factor}: expected 0x{e:X4}, got 0x{dst[i]:X4}");
        }
    }

    [Fact]
    public void Subnormal_inputs_leave_the_block_to_the_scalar_path()
    {
        var src = Enumerable.Repeat((ushort)0x3C00, 64).ToArray();
        src[5] = 0x0001; // smallest subnormal
        var dst = new ushort[64];
        Assert.True(HalfVector.ScaleRun(src, dst, 2.0) < 64);
        Assert.Equal(0x0002, dst[5]); // done exactly by the scalar path
        Assert.Equal(0x4000, dst[0]);
    }
}

public class DeferredScalingTests
{
    static byte[] Bytes<T>(T[] values) where T : unmanaged => System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();

    /// <summary>Any bit pattern — NaNs, infinities, subnormals, values whose product overflows or underflows float —
    /// scaled by the vector path gives the scalar cast's bits, for every way of cutting the tensor into chunks.</summary>
    [Theory]
    [InlineData(1.0001)]
    [InlineData(-3.7e-20)]
    [InlineData(6.1e37)]
    public void Float_weights_scaled_by_vectors_and_in_chunks_equal_the_scalar_cast(double factor)
    {
        var rng = new Random(5);
        var src = new float[3 * 111_111]; // 1.3 MB: streamed in two chunks
        for (int i = 0; i < src.Length; i++) src[i] = BitConverter.Int32BitsToSingle(rng.Next() ^ (rng.Next(2) << 31));
        double[] s = [factor, 1.0 / factor, factor * 0.5];
        var scaling = new DeferredScaling(Bytes(src), ElementType.Float, new ChannelLayout.Rows(), s);
        var expected = new float[src.Length];
        for (int i = 0; i < src.Length; i++) expected[i] = (float)(src[i] * s[i / 111_111]);
        var all = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(scaling.Materialize()).ToArray();
        Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), all.Select(BitConverter.SingleToInt32Bits));
        // Chunks that start and end inside runs, as a streamed save cuts them.
        var pieces = new byte[src.Length * 4];
        for (int first = 0; first < src.Length; first += 77_777)
            scaling.Produce(first, pieces.AsSpan(first * 4, Math.Min(77_777, src.Length - first) * 4));
        Assert.Equal(Bytes(expected), pieces);
        var streamed = new MemoryStream();
        scaling.WriteTo(streamed);
        Assert.Equal(Bytes(expected), streamed.ToArray());
    }

    [Fact]
    public void A_weight_with_no_channels_scales_to_nothing()
    {
        var scaling = new DeferredScaling(ReadOnlyMemory<byte>.Empty, ElementType.Float, new ChannelLayout.Columns(), []);
        Assert.Empty(scaling.Materialize());
        var s = new MemoryStream();
        scaling.WriteTo(s);
        Assert.Equal(0, s.Length);
    }

    [Fact]
    public void Column_layout_chunks_continue_the_channel_cycle()
    {
        var src = Enumerable.Range(0, 5 * 7).Select(i => (double)i + 0.25).ToArray();
        double[] s = [1, 2, 3, 4, 5, 6, 7];
        var scaling = new DeferredScaling(Bytes(src), ElementType.Double, new ChannelLayout.Columns(), s);
        var pieces = new byte[src.Length * 8];
        for (int first = 0; first < src.Length; first += 4)
            scaling.Produce(first, pieces.AsSpan(first * 8, Math.Min(4, src.Length - first) * 8));
        var got = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, double>(pieces).ToArray();
        Assert.Equal(src.Select((v, i) => v * s[i % 7]), got);
    }
}

public class ChunkedWriteTests
{
    /// <summary>Chunks written at their offsets on several cores land where a plain sequential write puts them, between
    /// whatever the stream had buffered before and what comes after.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(3 * (1 << 20) + 12)]
    public void A_file_gets_the_same_bytes_as_a_memory_stream(int length)
    {
        var payload = new byte[length];
        new Random(length).NextBytes(payload);
        void Write(Stream s)
        {
            s.Write("head"u8);
            NormFold.Onnx.FileBytes.WriteChunked(s, length, (chunk, offset) => payload.AsSpan(offset, chunk.Length).CopyTo(chunk));
            s.Write("tail"u8);
        }
        var memory = new MemoryStream();
        Write(memory);
        string path = Path.Combine(TestSupport.TempDir(), "chunks.bin");
        using (var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20)) Write(file);
        Assert.Equal(memory.ToArray(), File.ReadAllBytes(path));
    }
}
