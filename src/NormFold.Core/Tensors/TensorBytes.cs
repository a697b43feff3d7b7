using System.Runtime.InteropServices;
using NormFold.Onnx.Proto;
using T = NormFold.Onnx.Proto.TensorProto.Types.DataType;

namespace NormFold.Tensors;

/// <summary>A TensorProto's elements as raw little-endian bytes, whichever field holds them.</summary>
internal static class TensorBytes
{
    public static byte[] ToRaw(TensorProto t)
    {
        long count = TensorData.ElementCount(t);
        int size = ElementType.Size(t.DataType);
        if (size == 0 || t.DataType == (int)T.String)
            throw new FormatException($"tensor '{t.Name}': element type {ElementType.Name(t.DataType)} is not supported here");
        if (t.HasRawData)
        {
            if (t.RawData.Length != count * size)
                throw new FormatException($"tensor '{t.Name}' holds {t.RawData.Length} bytes, expected {count * size}");
            return t.RawData.ToByteArray();
        }
        var bytes = new byte[count * size];
        var span = bytes.AsSpan();
        int have;
        switch ((T)t.DataType)
        {
            case T.Float: have = t.FloatData.Count; if (have == count) t.FloatData.ToArray().AsSpan().CopyTo(MemoryMarshal.Cast<byte, float>(span)); break;
            case T.Double: have = t.DoubleData.Count; if (have == count) t.DoubleData.ToArray().AsSpan().CopyTo(MemoryMarshal.Cast<byte, double>(span)); break;
            case T.Int64: have = t.Int64Data.Count; if (have == count) t.Int64Data.ToArray().AsSpan().CopyTo(MemoryMarshal.Cast<byte, long>(span)); break;
            case T.Uint64: have = t.Uint64Data.Count; if (have == count) t.Uint64Data.ToArray().AsSpan().CopyTo(MemoryMarshal.Cast<byte, ulong>(span)); break;
            case T.Uint32:
                have = t.Uint64Data.Count;
                if (have == count) for (int i = 0; i < count; i++) MemoryMarshal.Cast<byte, uint>(span)[i] = (uint)t.Uint64Data[i];
                break;
            default:
                // int32, int16, int8, uint16, uint8, bool, float16, bfloat16: one int32_data entry per element.
                have = t.Int32Data.Count;
                if (have == count)
                    for (int i = 0; i < count; i++)
                        BitConverter.GetBytes(t.Int32Data[i]).AsSpan(0, size).CopyTo(span.Slice(i * size, size));
                break;
        }
        if (have != count) throw new FormatException($"tensor '{t.Name}' holds {have} elements, its dims say {count}");
        return bytes;
    }
}
