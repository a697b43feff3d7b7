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
    /// <summary>Conv [M, C/g, k…] along its input channels (a fold into the consumer): element (m, k, …) belongs to
    /// input channel (m / (M/g))·(C/g) + k.</summary>
    public sealed record ConvInputs(long OutputChannels, long InputsPerGroup, long Groups) : ChannelLayout;
}

/// <summary>
/// W'[i] = W[i]·s[channel(i)], computed in double from the stored elements and rounded once to the stored type,
/// streaming from the source bytes into the destination: no intermediate array of doubles.
/// </summary>
internal static class ChannelScaling
{
    /// <summary>W' as a new array, computed now (on every core for large weights).</summary>
    public static ArraySegment<byte> Scale(OnnxModel model, TensorProto weight, ChannelLayout layout, double[] s)
    {
        if (Prepare(model, weight, layout, s) is { } scaling) return scaling.Materialize();
        // Typed fields (float_data, …): rare for weights; go through doubles.
        var values = model.ReadDoubles(weight);
        var runs = DeferredScaling.Runs.Of(values.Length, layout, s);
        if (layout is ChannelLayout.Columns) for (int i = 0; i < values.Length; i++) values[i] *= s[i % s.Length];
        else for (int r = 0; r < runs.Count; r++) for (int i = r * runs.Length; i < (r + 1) * runs.Length; i++) values[i] *= runs.Factor(s, r);
        return TensorData.Encode(weight.DataType, values);
    }

    /// <summary>W' as a computation over W's raw bytes, to run later (or null when W uses typed fields).</summary>
    internal static DeferredScaling? Prepare(OnnxModel model, TensorProto weight, ChannelLayout layout, double[] s)
    {
        int type = weight.DataType;
        if (type is not (ElementType.Float or ElementType.Double or ElementType.Float16 or ElementType.BFloat16))
            throw new ArgumentException($"cannot scale element type {ElementType.Name(type)}");
        long count = TensorData.ElementCount(weight);
        var raw = model.RawMemory(weight);
        if (raw.IsEmpty && count > 0) return null;
        if (raw.Length != count * ElementType.Size(type))
            throw new InvalidModelException($"tensor '{weight.Name}' holds {raw.Length} bytes, its dims say {count} {ElementType.Name(type)} elements");
        return new DeferredScaling(raw, type, layout, s) { CheckFinite = model.CheckFiniteWhenComputed };
    }
}

/// <summary>A deferred W·s (made with <see cref="DeferredScaling.CheckFinite"/>) found an element finite in W whose
/// product is not finite in W's type: the fold that made it would have been refused. Not an input error: the caller
/// (<see cref="Folding.Optimistically"/>) folds again with the pre-check.</summary>
internal sealed class ScaledWeightOverflow() : Exception("a folded weight is not finite in its stored type");

/// <summary>W' = W·s per channel over W's raw bytes, computed on demand for any range of elements: all at once
/// (<see cref="Materialize"/>) or a chunk at a time straight into an output stream (<see cref="WriteTo"/>).</summary>
internal sealed class DeferredScaling
{
    readonly ReadOnlyMemory<byte> _source;
    readonly int _type, _size;
    readonly bool _columns;
    readonly double[] _s;
    readonly Runs _runs;

    public DeferredScaling(ReadOnlyMemory<byte> source, int type, ChannelLayout layout, double[] s)
    {
        _source = source;
        _type = type;
        _size = ElementType.Size(type);
        _columns = layout is ChannelLayout.Columns;
        _s = s;
        _runs = Runs.Of(source.Length / _size, layout, s);
    }

    public int Length => _source.Length;

    /// <summary>Before scaling by a factor above 1 in magnitude, check that no finite element's product rounds to ±∞
    /// (throws <see cref="ScaledWeightOverflow"/>): the finite-result pre-check, done on the bytes as they are computed.</summary>
    public bool CheckFinite { get; init; }

    /// <summary>Elements per parallel chunk.</summary>
    const int ParallelChunk = 1 << 18;

    public byte[] Materialize()
    {
        var result = GC.AllocateUninitializedArray<byte>(Length);
        int count = Length / _size, chunks = Math.Max(1, count / ParallelChunk);
        Onnx.FileBytes.ParallelFor(chunks, () => 0, (c, _) =>
        {
            int first = (int)((long)count * c / chunks), end = (int)((long)count * (c + 1) / chunks);
            Produce(first, result.AsSpan(first * _size, (end - first) * _size));
        }, _ => { });
        return result;
    }

    /// <summary>A chunk at a time: read the source chunk into a warm buffer, scale it there, write it (chunks on
    /// every core at once when the output is a file). No memory the size of the tensor is touched.</summary>
    public void WriteTo(Stream output) => Onnx.FileBytes.WriteChunked(output, Length, Fill);

    /// <summary>Bytes [offset, offset + chunk.Length) of W' into <paramref name="chunk"/> (offset a multiple of the
    /// element size): the source bytes read into it, scaled in place.</summary>
    public void Fill(Span<byte> chunk, int offset)
    {
        Onnx.FileBytes.CopyTo(_source, offset, chunk);
        Produce(offset / _size, chunk, chunk);
    }

    /// <summary>Elements [first, first + destination.Length / size) of W' into <paramref name="destination"/>.</summary>
    public void Produce(int first, Span<byte> destination) =>
        Produce(first, _source.Span.Slice(first * _size, destination.Length), destination);

    /// <summary>The same from a copy of those source elements (which may be <paramref name="destination"/> itself).</summary>
    void Produce(int first, ReadOnlySpan<byte> src, Span<byte> destination)
    {
        switch (_type)
        {
            case ElementType.Float: Range<float, FloatOp>(first, src, destination); break;
            case ElementType.Double: Range<double, DoubleOp>(first, src, destination); break;
            case ElementType.Float16: Range<Half, HalfOp>(first, src, destination); break;
            default: Range<ushort, BFloat16Op>(first, src, destination); break;
        }
    }

    interface IScale<T> { static abstract T Apply(T v, double f); }
    struct FloatOp : IScale<float> { public static float Apply(float v, double f) => (float)(v * f); }
    struct DoubleOp : IScale<double> { public static double Apply(double v, double f) => v * f; }
    struct HalfOp : IScale<Half> { public static Half Apply(Half v, double f) => Rounding.ToHalf(Rounding.FromHalf(v) * f); }
    struct BFloat16Op : IScale<ushort> { public static ushort Apply(ushort v, double f) => Rounding.ToBFloat16Bits(Rounding.FromBFloat16Bits(v) * f); }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    void Range<T, TOp>(int first, ReadOnlySpan<byte> source, Span<byte> destination) where T : unmanaged where TOp : struct, IScale<T>
    {
        var src = MemoryMarshal.Cast<byte, T>(source);
        var dst = MemoryMarshal.Cast<byte, T>(destination);
        if (src.IsEmpty) return; // also a weight with no channels at all
        if (CheckFinite) ThrowIfOverflows(first, MemoryMarshal.AsBytes(src));
        if (_columns)
        {
            int n = _s.Length, j = first % n;
            for (int i = 0; i < src.Length; i++)
            {
                dst[i] = TOp.Apply(src[i], _s[j]);
                if (++j == n) j = 0;
            }
            return;
        }
        // The run holding element `first`, then run by run.
        for (int k = RunAt(first), at = 0; at < src.Length; k++)
        {
            int start = k * _runs.Length;
            double f = _runs.Factor(_s, k);
            int from = Math.Max(start, first) - first, to = Math.Min(start + _runs.Length - first, src.Length);
            if (typeof(T) == typeof(Half)) // vectorised, same results as HalfOp
                HalfVector.ScaleRun(MemoryMarshal.Cast<T, ushort>(src[from..to]), MemoryMarshal.Cast<T, ushort>(dst[from..to]), f);
            else if (typeof(T) == typeof(float)) // vectorised, same results as FloatOp
                ScaleFloats(MemoryMarshal.Cast<T, float>(src[from..to]), MemoryMarshal.Cast<T, float>(dst[from..to]), f);
            else
                for (int i = from; i < to; i++) dst[i] = TOp.Apply(src[i], f);
            at = to;
        }
    }

    /// <summary>The <see cref="CheckFinite"/> check over the whole source, a chunk at a time, computing nothing.</summary>
    public void CheckAllFinite()
    {
        if (!CheckFinite) return;
        using var buffer = Onnx.FileBytes.ChunkBuffer.Rent();
        for (int offset = 0; offset < Length; offset += Onnx.FileBytes.Chunk)
        {
            var chunk = buffer.Span(Math.Min(Onnx.FileBytes.Chunk, Length - offset));
            Onnx.FileBytes.CopyTo(_source, offset, chunk);
            ThrowIfOverflows(offset / _size, chunk);
        }
    }

    /// <summary>Throws <see cref="ScaledWeightOverflow"/> when some finite element of <paramref name="source"/> (elements
    /// first… of W) times its factor is not finite once rounded to the type. Rounding is monotonic and symmetric, so per
    /// run the largest finite |v| decides; the column layout is bounded by max|s| first and checked element by element
    /// only when that bound overflows.</summary>
    void ThrowIfOverflows(int first, ReadOnlySpan<byte> source)
    {
        int count = source.Length / _size;
        if (_columns)
        {
            double sMax = _s.Max(Math.Abs);
            if (sMax <= 1 || Rewriting.Affine.FoldedValues.IsFinite(Rewriting.Affine.FoldedValues.MaxFiniteAbs(source, _type) * sMax, _type)) return;
            for (int i = 0; i < count; i++)
            {
                var element = source.Slice(i * _size, _size);
                double v = Rewriting.Affine.FoldedValues.MaxFiniteAbs(element, _type);
                if (!Rewriting.Affine.FoldedValues.IsFinite(v * Math.Abs(_s[(first + i) % _s.Length]), _type)) throw new ScaledWeightOverflow();
            }
            return;
        }
        for (int k = RunAt(first), at = 0; at < count; k++)
        {
            int start = k * _runs.Length;
            double f = _runs.Factor(_s, k);
            int from = Math.Max(start, first) - first, to = Math.Min(start + _runs.Length - first, count);
            if (Math.Abs(f) > 1 && !Rewriting.Affine.FoldedValues.IsFinite(
                    Rewriting.Affine.FoldedValues.MaxFiniteAbs(source[(from * _size)..(to * _size)], _type) * Math.Abs(f), _type))
                throw new ScaledWeightOverflow();
            at = to;
        }
    }

    /// <summary>Index of the run holding element <paramref name="first"/>.</summary>
    int RunAt(int first) => first / _runs.Length;

    /// <summary>(float)((double)v·f) a vector at a time: widening is exact and narrowing rounds to nearest even, as the
    /// scalar cast does, so the results are the same bits.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    static void ScaleFloats(ReadOnlySpan<float> src, Span<float> dst, double f)
    {
        int i = 0;
        if (System.Numerics.Vector.IsHardwareAccelerated)
        {
            var factor = new System.Numerics.Vector<double>(f);
            for (int w = System.Numerics.Vector<float>.Count; i <= src.Length - w; i += w)
            {
                System.Numerics.Vector.Widen(new System.Numerics.Vector<float>(src.Slice(i, w)), out var lo, out var hi);
                System.Numerics.Vector.Narrow(lo * factor, hi * factor).CopyTo(dst.Slice(i, w));
            }
        }
        for (; i < src.Length; i++) dst[i] = FloatOp.Apply(src[i], f);
    }

    /// <summary>W's elements as <see cref="Count"/> runs of <see cref="Length"/> consecutive elements that share one factor:
    /// run r is elements [r·Length, (r + 1)·Length), scaled by s[(r / P / Q)·P + r mod P] (<see cref="Factor"/>). Rows: one
    /// run per output channel (P = Count, Q = 1: s[r]). ConvTranspose [C_in, M/g, k…] scaled per output channel: run
    /// (i, j) = i·(M/g) + j takes s[(i / (C_in/g))·(M/g) + j]. Conv [M, C/g, k…] scaled per input channel: run (m, j) =
    /// m·(C/g) + j takes s[(m / (M/g))·(C/g) + j]. Computed, not stored: a forward fold into a large Conv has a run per
    /// kernel.</summary>
    internal readonly record struct Runs(int Length, int Count, int P, long Q)
    {
        public double Factor(double[] s, int r) => s[(int)(r / P / Q) * P + r % P];

        public static Runs Of(long count, ChannelLayout layout, double[] s)
        {
            if (count == 0) return new(1, 0, 1, 1); // an empty weight (zero channels or a zero-size kernel): nothing to scale
            switch (layout)
            {
                case ChannelLayout.Rows:
                    return new((int)(count / s.Length), s.Length, s.Length, 1);
                case ChannelLayout.TransposedConv t:
                    int perGroup = (int)t.OutputsPerGroup;
                    return new((int)(count / (t.InputChannels * t.OutputsPerGroup)), (int)(t.InputChannels * t.OutputsPerGroup), perGroup, t.InputChannels / t.Groups);
                case ChannelLayout.ConvInputs c:
                    int inputs = (int)c.InputsPerGroup;
                    return new((int)(count / (c.OutputChannels * c.InputsPerGroup)), (int)(c.OutputChannels * c.InputsPerGroup), inputs, c.OutputChannels / c.Groups);
                default: // Columns: scaled element by element, not by runs
                    return new(1, 0, 1, 1);
            }
        }
    }
}
