using System.Runtime.InteropServices;
using NormFold.Tensors;

namespace NormFold.Verification;

/// <summary>A tensor value by name: ONNX element type, shape, and its elements as raw little-endian bytes (string
/// tensors: <see cref="Strings"/>, and no bytes).</summary>
internal sealed record NamedTensor(string Name, int ElementType, long[] Shape, ReadOnlyMemory<byte> Data)
{
    /// <summary>The elements of a string tensor, in order; null for every other type.</summary>
    public string[]? Strings { get; init; }

    public long Count => Shape.Aggregate(1L, (a, b) => a * b);

    public string ShapeText => "[" + string.Join(",", Shape) + "]";

    public bool IsFloatingPoint => Tensors.ElementType.IsFoldable(ElementType);

    /// <summary>Elements as double (every numeric type and bool).</summary>
    public double[] ToDoubles()
    {
        var span = Data.Span;
        var result = new double[Count];
        switch ((Onnx.Proto.TensorProto.Types.DataType)ElementType)
        {
            case Onnx.Proto.TensorProto.Types.DataType.Float: Convert(MemoryMarshal.Cast<byte, float>(span), result, v => v); break;
            case Onnx.Proto.TensorProto.Types.DataType.Double: MemoryMarshal.Cast<byte, double>(span).CopyTo(result); break;
            case Onnx.Proto.TensorProto.Types.DataType.Float16: Convert(MemoryMarshal.Cast<byte, Half>(span), result, v => (double)v); break;
            case Onnx.Proto.TensorProto.Types.DataType.Bfloat16: Convert(MemoryMarshal.Cast<byte, ushort>(span), result, Rounding.FromBFloat16Bits); break;
            case Onnx.Proto.TensorProto.Types.DataType.Int8: Convert(MemoryMarshal.Cast<byte, sbyte>(span), result, v => v); break;
            case Onnx.Proto.TensorProto.Types.DataType.Uint8:
            case Onnx.Proto.TensorProto.Types.DataType.Bool: Convert<byte>(span, result, v => v); break;
            case Onnx.Proto.TensorProto.Types.DataType.Int16: Convert(MemoryMarshal.Cast<byte, short>(span), result, v => v); break;
            case Onnx.Proto.TensorProto.Types.DataType.Uint16: Convert(MemoryMarshal.Cast<byte, ushort>(span), result, v => v); break;
            case Onnx.Proto.TensorProto.Types.DataType.Int32: Convert(MemoryMarshal.Cast<byte, int>(span), result, v => v); break;
            case Onnx.Proto.TensorProto.Types.DataType.Uint32: Convert(MemoryMarshal.Cast<byte, uint>(span), result, v => v); break;
            case Onnx.Proto.TensorProto.Types.DataType.Int64: Convert(MemoryMarshal.Cast<byte, long>(span), result, v => v); break;
            case Onnx.Proto.TensorProto.Types.DataType.Uint64: Convert(MemoryMarshal.Cast<byte, ulong>(span), result, v => v); break;
            default: throw new InvalidModelException($"output '{Name}': element type {Tensors.ElementType.Name(ElementType)} cannot be compared");
        }
        return result;
    }

    static void Convert<T>(ReadOnlySpan<T> source, double[] target, Func<T, double> f)
    {
        for (int i = 0; i < target.Length; i++) target[i] = f(source[i]);
    }

    /// <summary>A tensor of a floating-point type from doubles (each rounded once).</summary>
    public static NamedTensor FromDoubles(string name, int elementType, long[] shape, ReadOnlySpan<double> values) =>
        new(name, elementType, shape, TensorData.Encode(elementType, values));
}
