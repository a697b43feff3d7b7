using System.Numerics;
using System.Runtime.InteropServices;
using Google.Protobuf;
using NormFold.Graph;
using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.Affine;

/// <summary>New weights of the affine folds, and the check that folded values stay finite in their stored type.</summary>
internal static class FoldedValues
{
    /// <summary>Index of the first value that rounds to ±∞ or NaN in <paramref name="type"/>, or null.</summary>
    public static int? FirstNotFinite(ReadOnlySpan<double> values, int type)
    {
        for (int i = 0; i < values.Length; i++)
            if (!IsFinite(values[i], type)) return i;
        return null;
    }

    /// <summary>Null when every value is finite in <paramref name="type"/>; else a refusal naming the first that is not.</summary>
    public static Match.Refused? NotFinite(string what, int type, double[] values) =>
        FirstNotFinite(values, type) is { } i
            ? Match.Refuse(SkipReason.FoldedValueNotFinite, $"{what}[{i}] = {values[i]:G6} is not finite as {ElementType.Name(type)}")
            : null;

    internal static bool IsFinite(double v, int type) => type switch
    {
        ElementType.Float => float.IsFinite((float)v),
        ElementType.Float16 => Half.IsFinite(Rounding.ToHalf(v)),
        ElementType.BFloat16 => double.IsFinite(Rounding.FromBFloat16Bits(Rounding.ToBFloat16Bits(v))),
        _ => double.IsFinite(v),
    };

    /// <summary>Index of the first element of W·s (rounded to W's type) that is not finite where W's is, or null.
    /// Only factors above 1 in magnitude can overflow, so only then is W read: first to bound max|W|·max|s| (one pass over
    /// the stored bytes, no copy), and only when the bound overflows is W·s computed.</summary>
    public static long? ScaledWeightNotFinite(OnnxModel model, TensorProto w, ChannelLayout layout, double[] s)
    {
        if (s.All(f => Math.Abs(f) <= 1)) return null;
        // W·s will be a deferred scaling that checks its own elements as it computes them (ChannelScaling.Prepare).
        if (model.CheckFiniteWhenComputed && !model.IsDeferred(w) && !model.RawMemory(w).IsEmpty) return null;
        if (IsFinite(MaxAbs(model, w) * s.Max(Math.Abs), w.DataType)) return null;
        var source = model.ReadDoubles(w);
        var scaled = ChannelScaling.Scale(model, w, layout, s);
        var result = TensorData.ReadDoubles(new TensorProto { Name = w.Name, DataType = w.DataType, Dims = { w.Dims } }, scaled);
        for (long i = 0; i < result.Length; i++)
            if (!double.IsFinite(result[i]) && double.IsFinite(source[i])) return i;
        return null;
    }

    /// <summary>W' = W·s per channel as a new initializer, and its record (computed while saving when the editor defers
    /// weight arithmetic: never held in memory).</summary>
    public static ScaledWeight ScaledWeight(GraphEditor editor, TensorProto weight, ChannelLayout layout, double[] s, string suffix)
    {
        var model = editor.Index.Model;
        var tensor = new TensorProto { DataType = weight.DataType, Dims = { weight.Dims } };
        if (editor.DeferWeightArithmetic && ChannelScaling.Prepare(model, weight, layout, s) is { } deferred)
            model.Defer(tensor, deferred);
        else
            tensor.RawData = UnsafeByteOperations.UnsafeWrap(ChannelScaling.Scale(model, weight, layout, s));
        return new ScaledWeight(weight.Name, editor.AddInitializer(tensor, weight.Name + suffix), layout, s);
    }

    /// <summary>Input 1 of <paramref name="node"/> becomes W·s unless s is all 1; the record and name are added.</summary>
    public static void ScaleInput(GraphEditor editor, NodeProto node, TensorProto weight, ChannelLayout layout, double[] s,
        List<string> created, List<WeightRecord> records)
    {
        if (s.All(v => v == 1.0)) return;
        var scaled = ScaledWeight(editor, weight, layout, s, "_affinefold");
        editor.SetInput(node, 1, scaled.Result);
        created.Add(scaled.Result);
        records.Add(scaled);
    }
    /// <summary>max|W| over the stored elements; NaN when one is NaN. Read a chunk at a time on every core
    /// (FileBytes.Reduce): the pass does not make a mapped weight resident. Taken from <see cref="Prefetch"/>'s results
    /// while the tensor still holds the bytes they were computed from.</summary>
    static double MaxAbs(OnnxModel model, TensorProto t)
    {
        lock (model.MaxAbsCache)
            if (model.MaxAbsCache.TryGetValue(t, out var known) && ReferenceEquals(known.Source, t.RawData) && !model.IsDeferred(t))
                return known.Max;
        var raw = model.RawMemory(t);
        if (raw.IsEmpty && TensorData.ElementCount(t) > 0)
            return model.ReadDoubles(t).Aggregate(0.0, (m, v) => MaxOrNaN(m, Math.Abs(v)));
        int type = t.DataType;
        return FileBytes.Reduce(raw, chunk => MaxAbs(chunk, type), MaxOrNaN, 0.0);
    }

    /// <summary>The larger of two magnitudes, NaN when either is (IEEE 754 maximum).</summary>
    static double MaxOrNaN(double a, double b) => double.IsNaN(a) || double.IsNaN(b) ? double.NaN : Math.Max(a, b);

    /// <summary>
    /// max|W| of the weights of every Conv, ConvTranspose, Gemm and MatMul that a BatchNormalization reads, all at once on
    /// every core (the chunks of all of them in one parallel loop), before the rules fold one BN after another: the
    /// finite-result pre-checks then read no weight, and their reading is spread over the cores. Inline raw_data in a
    /// float type only; the rest is read when asked, as before.
    /// </summary>
    internal static void Prefetch(GraphIndex index)
    {
        var model = index.Model;
        var weights = new List<TensorProto>();
        var seen = new HashSet<TensorProto>(ReferenceEqualityComparer.Instance);
        foreach (var node in index.Graph.Node)
            if (node.OpType is "Conv" or "ConvTranspose" or "Gemm" or "MatMul" && node.Domain.Length == 0 && node.Input.Count > 1
                && node.Output.Count > 0 && index.Consumers(node.Output[0]).Any(c => c.OpType == "BatchNormalization" && MayScaleUp(index, c))
                && index.Initializers.TryGetValue(node.Input[1], out var w) && w.HasRawData && !OnnxModel.IsExternal(w) && !model.IsDeferred(w)
                && w.DataType is ElementType.Float or ElementType.Double or ElementType.Float16 or ElementType.BFloat16
                && w.RawData.Length % ElementType.Size(w.DataType) == 0 && seen.Add(w))
                weights.Add(w);
        foreach (var group in weights.GroupBy(w => w.DataType))
        {
            var list = group.ToList();
            var max = FileBytes.Reduce([.. list.Select(w => w.RawData.Memory)], chunk => MaxAbs(chunk, group.Key), MaxOrNaN, 0.0);
            lock (model.MaxAbsCache)
                for (int i = 0; i < list.Count; i++) model.MaxAbsCache[list[i]] = (list[i].RawData, max[i]);
        }
    }

    /// <summary>Whether the BN may scale a channel by more than 1 in magnitude (only then is W read): some γ² > var + ε,
    /// from γ and var alone (a guess for reading ahead, not a check: the rule reads the BN in full).</summary>
    static bool MayScaleUp(GraphIndex index, NodeProto bn)
    {
        if (bn.Input.Count < 5 || !index.TryGetConstant(bn.Input[1], out var gammaTensor)
            || !index.TryGetConstant(bn.Input[4], out var varianceTensor))
            return false;
        var gamma = index.Model.ReadDoubles(gammaTensor);
        var variance = index.Model.ReadDoubles(varianceTensor);
        double epsilon = Attributes.Float(bn, "epsilon", 1e-5f);
        if (gamma.Length != variance.Length) return false;
        for (int c = 0; c < gamma.Length; c++)
            if (!(gamma[c] * gamma[c] <= variance[c] + epsilon)) return true;
        return false;
    }

    /// <summary>max|v| from the largest sign-cleared bit pattern: for IEEE 754 values of one type the patterns order as
    /// the magnitudes do, and every NaN's lies above infinity's. An integer max, so a vector at a time.</summary>
    internal static double MaxAbs(ReadOnlySpan<byte> raw, int type)
    {
        switch (type)
        {
            case ElementType.Float:
                uint f = MaxMasked(MemoryMarshal.Cast<byte, uint>(raw), 0x7FFF_FFFFu, uint.MaxValue);
                return f > 0x7F80_0000u ? double.NaN : BitConverter.UInt32BitsToSingle(f);
            case ElementType.Double:
                ulong d = MaxMasked(MemoryMarshal.Cast<byte, ulong>(raw), 0x7FFF_FFFF_FFFF_FFFFul, ulong.MaxValue);
                return d > 0x7FF0_0000_0000_0000ul ? double.NaN : BitConverter.UInt64BitsToDouble(d);
            case ElementType.Float16:
                ushort h = MaxMasked(MemoryMarshal.Cast<byte, ushort>(raw), (ushort)0x7FFF, ushort.MaxValue);
                return h > 0x7C00 ? double.NaN : (double)BitConverter.UInt16BitsToHalf(h);
            default: // bfloat16
                ushort b = MaxMasked(MemoryMarshal.Cast<byte, ushort>(raw), (ushort)0x7FFF, ushort.MaxValue);
                return b > 0x7F80 ? double.NaN : Rounding.FromBFloat16Bits(b);
        }
    }

    /// <summary>max|v| over the finite elements only (0 when there are none): the ±∞ and NaN patterns are skipped.</summary>
    internal static double MaxFiniteAbs(ReadOnlySpan<byte> raw, int type)
    {
        switch (type)
        {
            case ElementType.Float:
                return BitConverter.UInt32BitsToSingle(MaxMasked(MemoryMarshal.Cast<byte, uint>(raw), 0x7FFF_FFFFu, 0x7F80_0000u));
            case ElementType.Double:
                return BitConverter.UInt64BitsToDouble(MaxMasked(MemoryMarshal.Cast<byte, ulong>(raw), 0x7FFF_FFFF_FFFF_FFFFul, 0x7FF0_0000_0000_0000ul));
            case ElementType.Float16:
                return (double)BitConverter.UInt16BitsToHalf(MaxMasked(MemoryMarshal.Cast<byte, ushort>(raw), (ushort)0x7FFF, (ushort)0x7C00));
            default: // bfloat16
                return Rounding.FromBFloat16Bits(MaxMasked(MemoryMarshal.Cast<byte, ushort>(raw), (ushort)0x7FFF, (ushort)0x7F80));
        }
    }

    /// <summary>The largest v &amp; mask below <paramref name="below"/> (patterns at or above it are skipped), or 0.</summary>
    static T MaxMasked<T>(ReadOnlySpan<T> values, T mask, T below) where T : unmanaged, IBinaryInteger<T>
    {
        T max = T.Zero;
        int i = 0, w = Vector<T>.Count;
        if (Vector.IsHardwareAccelerated && values.Length >= 4 * w)
        {
            var m = new Vector<T>(mask);
            var limit = new Vector<T>(below);
            Vector<T> a = Vector<T>.Zero, b = a, c = a, d = a;
            for (; i <= values.Length - 4 * w; i += 4 * w)
            {
                a = Vector.Max(a, Kept(new Vector<T>(values.Slice(i)) & m, limit));
                b = Vector.Max(b, Kept(new Vector<T>(values.Slice(i + w)) & m, limit));
                c = Vector.Max(c, Kept(new Vector<T>(values.Slice(i + 2 * w)) & m, limit));
                d = Vector.Max(d, Kept(new Vector<T>(values.Slice(i + 3 * w)) & m, limit));
            }
            a = Vector.Max(Vector.Max(a, b), Vector.Max(c, d));
            for (int k = 0; k < w; k++) max = T.Max(max, a[k]);
        }
        for (; i < values.Length; i++)
        {
            T v = values[i] & mask;
            if (v < below) max = T.Max(max, v);
        }
        return max;
    }

    static Vector<T> Kept<T>(Vector<T> v, Vector<T> below) where T : unmanaged, IBinaryInteger<T> =>
        Vector.ConditionalSelect(Vector.LessThan(v, below), v, Vector<T>.Zero);
}
