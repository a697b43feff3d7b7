using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Google.Protobuf;
using NormFold.Onnx.Proto;

namespace NormFold.Tensors;

/// <summary>
/// Reads tensor elements of the floating-point types as double, and writes double arrays back into a new
/// TensorProto of a given stored type, rounding each element exactly once.
/// </summary>
internal static class TensorData
{
    /// <summary>Product of the dims; a FormatException naming the tensor for a negative dim or a product past int64.</summary>
    public static long ElementCount(TensorProto t)
    {
        long n = 1;
        var dims = t.Dims; // index loops: a foreach over a RepeatedField allocates
        for (int i = 0; i < dims.Count; i++)
            if (dims[i] < 0) throw new FormatException($"tensor '{t.Name}': dimension {dims[i]} in [{string.Join(", ", dims)}] is negative");
        for (int i = 0; i < dims.Count; i++)
        {
            long d = dims[i];
            if (d == 0) return 0;
            if (n > long.MaxValue / d) throw new FormatException($"tensor '{t.Name}': dims [{string.Join(", ", dims)}] hold more than {long.MaxValue} elements");
            n *= d;
        }
        return n;
    }

    /// <summary>Element values as double. <paramref name="raw"/> supplies bytes for external data.</summary>
    public static double[] ReadDoubles(TensorProto t, ReadOnlySpan<byte> raw)
    {
        long count = ElementCount(t);
        if (count > Array.MaxLength) throw new FormatException($"tensor '{t.Name}' has too many elements ({count})");
        var result = new double[count];
        int type = t.DataType;
        if (!ElementType.IsFoldable(type))
            throw new FormatException($"tensor '{t.Name}' has element type {ElementType.Name(type)}, not a floating-point type");

        if (!raw.IsEmpty || t.HasRawData || t.DataLocation == TensorProto.Types.DataLocation.External)
        {
            int size = ElementType.Size(type);
            if (raw.Length != count * size)
                throw new FormatException($"tensor '{t.Name}' holds {raw.Length} bytes of data, expected {count * size} for {count} {ElementType.Name(type)} elements");
            switch (type)
            {
                case ElementType.Float:
                    var floats = MemoryMarshal.Cast<byte, float>(raw);
                    for (int i = 0; i < result.Length; i++) result[i] = floats[i];
                    break;
                case ElementType.Double:
                    MemoryMarshal.Cast<byte, double>(raw).CopyTo(result);
                    break;
                case ElementType.Float16:
                    var halves = MemoryMarshal.Cast<byte, Half>(raw);
                    for (int i = 0; i < result.Length; i++) result[i] = Rounding.FromHalf(halves[i]);
                    break;
                default:
                    var bf = MemoryMarshal.Cast<byte, ushort>(raw);
                    for (int i = 0; i < result.Length; i++) result[i] = Rounding.FromBFloat16Bits(bf[i]);
                    break;
            }
            return result;
        }

        switch (type)
        {
            case ElementType.Float:
                CheckCount(t, t.FloatData.Count, count);
                for (int i = 0; i < result.Length; i++) result[i] = t.FloatData[i];
                break;
            case ElementType.Double:
                CheckCount(t, t.DoubleData.Count, count);
                for (int i = 0; i < result.Length; i++) result[i] = t.DoubleData[i];
                break;
            case ElementType.Float16:
                CheckCount(t, t.Int32Data.Count, count);
                for (int i = 0; i < result.Length; i++) result[i] = (double)BitConverter.UInt16BitsToHalf((ushort)t.Int32Data[i]);
                break;
            default:
                CheckCount(t, t.Int32Data.Count, count);
                for (int i = 0; i < result.Length; i++) result[i] = Rounding.FromBFloat16Bits((ushort)t.Int32Data[i]);
                break;
        }
        return result;
    }

    static void CheckCount(TensorProto t, int have, long want)
    {
        if (have != want)
            throw new FormatException($"tensor '{t.Name}' holds {have} elements, its dims say {want}");
    }

    /// <summary>A new tensor of <paramref name="dataType"/> with the given values, each rounded once, in raw_data.</summary>
    public static TensorProto Create(string name, int dataType, IReadOnlyList<long> dims, ReadOnlySpan<double> values)
    {
        var t = new TensorProto { Name = name, DataType = dataType };
        t.Dims.AddRange(dims);
        t.RawData = UnsafeByteOperations.UnsafeWrap(Encode(dataType, values));
        return t;
    }

    public static byte[] Encode(int dataType, ReadOnlySpan<double> values)
    {
        int size = ElementType.Size(dataType);
        var bytes = new byte[values.Length * size];
        switch (dataType)
        {
            case ElementType.Float:
                var f = MemoryMarshal.Cast<byte, float>(bytes.AsSpan());
                for (int i = 0; i < values.Length; i++) f[i] = (float)values[i]; // correctly rounded
                break;
            case ElementType.Double:
                values.CopyTo(MemoryMarshal.Cast<byte, double>(bytes.AsSpan()));
                break;
            case ElementType.Float16:
                var h = MemoryMarshal.Cast<byte, Half>(bytes.AsSpan());
                for (int i = 0; i < values.Length; i++) h[i] = Rounding.ToHalf(values[i]);
                break;
            case ElementType.BFloat16:
                var b = MemoryMarshal.Cast<byte, ushort>(bytes.AsSpan());
                for (int i = 0; i < values.Length; i++) b[i] = Rounding.ToBFloat16Bits(values[i]);
                break;
            default:
                throw new ArgumentException($"cannot write element type {ElementType.Name(dataType)}");
        }
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("NormFold needs a little-endian machine");
        return bytes;
    }

    /// <summary>Integer elements (int32/int64 tensors: shapes, axes) as long.</summary>
    public static long[] ReadInt64s(TensorProto t, ReadOnlySpan<byte> raw)
    {
        bool isLong = t.DataType == (int)TensorProto.Types.DataType.Int64;
        if (!isLong && t.DataType != (int)TensorProto.Types.DataType.Int32)
            throw new FormatException($"tensor '{t.Name}' has element type {ElementType.Name(t.DataType)}, not an integer type");
        long count = ElementCount(t);
        int size = isLong ? 8 : 4;
        bool hasRaw = !raw.IsEmpty || t.HasRawData || t.DataLocation == TensorProto.Types.DataLocation.External;
        // The data must match the dims before anything is read (a Reshape shape of dims [4] holding 2 values).
        if (hasRaw && (count > int.MaxValue / size || raw.Length != count * size))
            throw new FormatException($"tensor '{t.Name}' holds {raw.Length} bytes of data, expected {count * size} for {count} {ElementType.Name(t.DataType)} elements");
        if (!hasRaw) CheckCount(t, isLong ? t.Int64Data.Count : t.Int32Data.Count, count);
        var result = new long[count];
        for (int i = 0; i < count; i++)
            result[i] = hasRaw ? (isLong ? BinaryPrimitives.ReadInt64LittleEndian(raw[(i * 8)..]) : BinaryPrimitives.ReadInt32LittleEndian(raw[(i * 4)..]))
                : isLong ? t.Int64Data[i] : t.Int32Data[i];
        return result;
    }
}
