using System.Runtime.InteropServices;
using NormFold.Onnx;
using NormFold.Onnx.Proto;

namespace NormFold.Tensors;

/// <summary>Which output channel each element of a weight tensor belongs to.</summary>
public abstract record ChannelLayout
{
    /// <summary>Row-major [M, …]: element i belongs to channel i / (count / M). Conv weights, Gemm B with transB = 1.</summary>
    public sealed record Rows : ChannelLayout;
    /// <summary>Row-major [K, N]: element i belongs to channel i % N. MatMul B, Gemm B with transB = 0.</summary>
    public sealed record Columns : ChannelLayout;
    /// <summary>ConvTranspose [Cin, M/g, k…]: element (i, j, …) belongs to channel (i / (Cin/g))·(M/g) + j.</summary>
    public sealed record TransposedConv(long InputChannels, long OutputsPerGroup, long Groups) : ChannelLayout;
}

/// <summary>
/// W'[i] = W[i]·s[channel(i)], computed in double from the stored elements and rounded once to the stored type,
/// streaming from the source bytes into the new tensor's bytes: no intermediate array of doubles.
/// </summary>
public static class ChannelScaling
{
    /// <param name="into">Where to write the result, or null for a new array. May be the source's own bytes: each
    /// element depends only on the element at the same index.</param>
    public static ArraySegment<byte> Scale(OnnxModel model, TensorProto weight, ChannelLayout layout, double[] s, ArraySegment<byte>? into = null)
    {
        int type = weight.DataType;
        long count = TensorData.ElementCount(weight);
        var runs = Runs(count, layout, s);
        var raw = model.RawMemory(weight);
        if (raw.IsEmpty && count > 0)
        {
            // Typed fields (float_data, …): rare for weights; go through doubles.
            var values = model.ReadDoubles(weight);
            if (layout is ChannelLayout.Columns) for (int i = 0; i < values.Length; i++) values[i] *= s[i % s.Length];
            else foreach (var (start, length, f) in runs) for (int i = start; i < start + length; i++) values[i] *= f;
            return TensorData.Encode(type, values);
        }
        if (raw.Length != count * ElementType.Size(type))
            throw new ModelFormatException($"tensor '{weight.Name}' holds {raw.Length} bytes, its dims say {count} {ElementType.Name(type)} elements");
        var result = into ?? new ArraySegment<byte>(new byte[raw.Length]);
        if (result.Count != raw.Length) throw new ArgumentException($"destination holds {result.Count} bytes, tensor {weight.Name} {raw.Length}");
        switch (type)
        {
            case ElementType.Float: Run<float, FloatOp>(raw, result, layout, runs, s); break;
            case ElementType.Double: Run<double, DoubleOp>(raw, result, layout, runs, s); break;
            case ElementType.Float16: Run<Half, HalfOp>(raw, result, layout, runs, s); break;
            case ElementType.BFloat16: Run<ushort, BFloat16Op>(raw, result, layout, runs, s); break;
            default: throw new ArgumentException($"cannot scale element type {ElementType.Name(type)}");
        }
        return result;
    }

    interface IScale<T> { static abstract T Apply(T v, double f); }
    struct FloatOp : IScale<float> { public static float Apply(float v, double f) => (float)(v * f); }
    struct DoubleOp : IScale<double> { public static double Apply(double v, double f) => v * f; }
    struct HalfOp : IScale<Half> { public static Half Apply(Half v, double f) => Rounding.ToHalf(Rounding.FromHalf(v) * f); }
    struct BFloat16Op : IScale<ushort> { public static ushort Apply(ushort v, double f) => Rounding.ToBFloat16Bits(Rounding.FromBFloat16Bits(v) * f); }

    /// <summary>Elements per parallel chunk: large weights are split across cores, small ones are not worth it.</summary>
    const int Chunk = 1 << 18;

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    static void Run<T, TOp>(ReadOnlyMemory<byte> raw, ArraySegment<byte> result, ChannelLayout layout, (int Start, int Length, double F)[] runs, double[] s)
        where T : unmanaged where TOp : struct, IScale<T>
    {
        int count = raw.Length / System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        int chunks = Math.Max(1, count / Chunk);
        if (layout is ChannelLayout.Columns)
        {
            int n = s.Length, rows = count / n;
            Parallel.For(0, chunks, c =>
            {
                var src = MemoryMarshal.Cast<byte, T>(raw.Span);
                var dst = MemoryMarshal.Cast<byte, T>(result.AsSpan());
                for (long row = (long)rows * c / chunks, end = (long)rows * (c + 1) / chunks; row < end; row++)
                    for (int j = 0, at = (int)row * n; j < n; j++) dst[at + j] = TOp.Apply(src[at + j], s[j]);
            });
            return;
        }
        Parallel.For(0, Math.Min(chunks, runs.Length), c =>
        {
            var src = MemoryMarshal.Cast<byte, T>(raw.Span);
            var dst = MemoryMarshal.Cast<byte, T>(result.AsSpan());
            int parts = Math.Min(chunks, runs.Length);
            for (long k = (long)runs.Length * c / parts, end = (long)runs.Length * (c + 1) / parts; k < end; k++)
            {
                var (start, length, f) = runs[k];
                if (typeof(T) == typeof(Half)) // vectorised, same results as HalfOp
                    HalfVector.ScaleRun(MemoryMarshal.Cast<T, ushort>(src.Slice(start, length)), MemoryMarshal.Cast<T, ushort>(dst.Slice(start, length)), f);
                else
                    for (int i = start, stop = start + length; i < stop; i++) dst[i] = TOp.Apply(src[i], f);
            }
        });
    }

    /// <summary>Runs of consecutive elements that share one channel (none for the column layout).</summary>
    static (int Start, int Length, double F)[] Runs(long count, ChannelLayout layout, double[] s)
    {
        switch (layout)
        {
            case ChannelLayout.Rows:
                int perRow = (int)(count / s.Length);
                return Enumerable.Range(0, s.Length).Select(m => (m * perRow, perRow, s[m])).ToArray();
            case ChannelLayout.TransposedConv t:
                long inPerGroup = t.InputChannels / t.Groups;
                int kernel = (int)(count / (t.InputChannels * t.OutputsPerGroup));
                var runs = new (int, int, double)[t.InputChannels * t.OutputsPerGroup];
                for (long i = 0; i < t.InputChannels; i++)
                    for (long j = 0; j < t.OutputsPerGroup; j++)
                        runs[i * t.OutputsPerGroup + j] = ((int)((i * t.OutputsPerGroup + j) * kernel), kernel, s[(i / inPerGroup) * t.OutputsPerGroup + j]);
                return runs;
            default:
                return [];
        }
    }
}
